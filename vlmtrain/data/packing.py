"""Sequence packing: several short examples per row, attention kept within each example.

Why: GRACE's examples are ~30-75 tokens; padded to the longest in a 64-example batch, about 40%
of the LM's work is on padding. Packed rows carry the same tokens with almost none.

A packed batch has the fields of a padded one (`input_ids`, `labels`, `attention_mask`, which
marks real tokens, `pixel_values`) plus `position_ids` that restart at 0 with every example: the
model turns them into a block-diagonal causal mask (vlmtrain.model.vlm), so no token attends
across examples and each example sees exactly the positions it would see alone.
"""

from __future__ import annotations

from typing import Any

import torch

from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.errors import ConfigError


def segment_lengths(positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lengths of the examples in packed rows, row by row (an example starts at position 0)."""
    real = mask.bool()
    starts = (positions == 0) & real
    seg = starts.long().cumsum(1) - 1
    if bool((seg[real] < 0).any()):
        raise ValueError("packed row: real tokens before the first position 0")
    per_row = starts.sum(1)
    offsets = per_row.cumsum(0) - per_row
    ids = (seg + offsets[:, None])[real]
    return torch.bincount(ids, minlength=int(per_row.sum()))


def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """First-fit decreasing: example indices per row, each row's total <= row_length (an example
    longer than that gets a row of its own). Deterministic: ties keep the input order."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(max(0, row_length - lengths[i]))
    return rows


def pack_examples(items: list[dict[str, Any]], row_length: int) -> dict[str, Any]:
    """A packed micro-batch of recipe examples (see the module doc).

    Every example keeps its tokens, labels and image; its first label is not supervised (it never
    is unpadded either: position 0 predicts nothing), so no row learns across examples.
    Per-example lists (`key`, `kind`, ...) stay in example order; the images are in row-major
    placeholder order, as the model splices them.
    """
    pad = items[0]["pad_id"]
    lengths = [len(it["input_ids"]) for it in items]
    rows = pack_rows(lengths, row_length)
    width = max(sum(lengths[i] for i in row) for row in rows)
    shape = (len(rows), width)
    input_ids = torch.full(shape, pad, dtype=torch.long)
    labels = torch.full(shape, IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(shape, dtype=torch.long)
    positions = torch.zeros(shape, dtype=torch.long)
    example_index = torch.full(shape, -1, dtype=torch.long)  # which item a token is (-1: pad)
    images = []
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            n, it = lengths[i], items[i]
            input_ids[r, at : at + n] = torch.tensor(it["input_ids"])
            labels[r, at + 1 : at + n] = torch.tensor(it["labels"][1:], dtype=torch.long)
            mask[r, at : at + n] = 1
            positions[r, at : at + n] = torch.arange(n)
            example_index[r, at : at + n] = i
            if it.get("pixel_values") is not None:
                images.append(it["pixel_values"])
            at += n
        positions[r, at:] = torch.arange(width - at)  # the tail: a padding "example" of its own
    return {
        "key": [it["key"] for it in items],
        "kind": [it["kind"] for it in items],
        "input_ids": input_ids,
        "labels": labels,
        "attention_mask": mask,
        "position_ids": positions,
        "example_index": example_index,
        "pixel_values": torch.stack(images) if images else None,
    }


def block_causal_mask(
    position_ids: torch.Tensor, attn_implementation: str, dtype: torch.dtype
) -> torch.Tensor | None:
    """The (rows, 1, L, L) mask of packed rows: causal within each example, nothing across.

    Examples are the runs that start at position 0 (the padding tail is one too, so no query
    row is empty). A bool mask (True = attend) for SDPA, an additive one for eager attention;
    None for flash / flex attention, which Hugging Face builds from `position_ids` itself
    (varlen kernels: no L x L mask at all).
    """
    if attn_implementation not in ("sdpa", "eager"):
        return None
    seg = (position_ids == 0).long().cumsum(1)
    same = seg[:, :, None] == seg[:, None, :]
    n = position_ids.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=position_ids.device).tril()
    allowed = (same & causal)[:, None]
    if attn_implementation == "sdpa":
        return allowed
    additive = torch.zeros(allowed.shape, dtype=dtype, device=position_ids.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min)


def packing_decision(recipe, packing: bool | str, row_length: int) -> tuple[int | None, str]:
    """(row length the recipe's collate packs to, or None; a line for the run's log) per
    `data.packing`. Decides only: the trainer builds the packed recipe (`recipe.packed`)."""
    if packing is False:
        return None, "packing: off (data.packing=false)"
    if not recipe.packable:
        why = getattr(recipe, "unpackable_reason", "its loss reads per-row hidden states")
        if packing is True:
            raise ConfigError(
                f"data.packing=true, but the {recipe.name} recipe cannot pack rows ({why}); "
                "use data.packing=auto or false"
            )
        return None, f"packing: off ({recipe.name}: {why})"
    return row_length, f"packing: rows of up to {row_length} tokens, attention within each example"
