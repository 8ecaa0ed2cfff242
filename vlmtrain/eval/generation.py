"""Batched decoding for evaluation: prompts (+ images) in, token sequences out.

Prompts are sorted by length before batching so a batch pads little, and results come back in
the caller's order. `VLM.generate` left-aligns right-padded prompts itself and feeds the prompt
ids to logits processors first, so a trie's `prompt_length` is the padded batch width.
Generic only: which prompt a recipe's checkpoint is asked with, and how a task reads the tokens
back, live with the task (vlmtrain.eval.tasks: prompts.py, caption.py, vqa.py, oven_decoding.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlmdata.core.tokenizer import pad_id
from vlmtrain.recipes.base import pad_sequences


@dataclass(frozen=True)
class ModelBundle:
    """A loaded model with what decoding needs next to it (tests and notebooks pass their own
    to the tasks' `model_bundle=` instead of a checkpoint)."""

    model: Any  # vlmtrain.model.vlm.VLM, in eval mode
    tokenizer: Any  # its tokenizer (model.tokenizer)
    cfg: Any  # the TrainConfig it was trained with (recipe name and options)


def pick_device(device: str | None = None) -> str:
    """`device` (checked: a GPU that is not here is a clear error), or "cuda" when a GPU is
    visible, else "cpu"."""
    import torch

    from vlmdata.core.device import check_device

    return check_device(device) if device else ("cuda" if torch.cuda.is_available() else "cpu")


def load_model(checkpoint: str | os.PathLike, device: str | None = None) -> ModelBundle:
    """The model (eval mode, on `device`), tokenizer and TrainConfig of a run or export dir."""
    from vlmtrain.train.checkpoint import load_checkpoint

    model, tokenizer, cfg = load_checkpoint(checkpoint)
    model.to(pick_device(device)).eval()
    return ModelBundle(model, tokenizer, cfg)


def recipe_of(cfg, name: str | None = None):
    """The recipe the checkpoint was trained with (its options included), or `name`'s."""
    from vlmtrain.recipes import get_recipe

    recipe_cfg = getattr(cfg, "recipe", None)
    if recipe_cfg is not None and (name is None or recipe_cfg.name == name):
        return get_recipe(recipe_cfg.name, **dict(recipe_cfg.options))
    if name is None:
        raise ValueError("no recipe name in the checkpoint's config")
    return get_recipe(name)


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (stable, so equal inputs batch identically)."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def cut_at_eos(seq: Sequence[int], eos_id: int) -> list[int]:
    """Tokens up to and including the first eos (the rest is padding of finished beams)."""
    out = []
    for t in seq:
        out.append(int(t))
        if t == eos_id:
            break
    return out


@torch.no_grad()
def generate_tokens(
    model,
    prompts: Sequence[list[int]],
    *,
    images: Sequence[torch.Tensor | None] | None = None,
    batch_size: int = 16,
    num_return_sequences: int = 1,
    processor_for: Callable[[int, list[int]], Any] | None = None,
    eos_id: int | None = None,
    progress: bool = False,
    image_attention: str = "causal",
    **generate_kwargs: Any,
) -> list[list[list[int]]]:
    """Per prompt, `num_return_sequences` generated token lists (new tokens, cut at eos).

    `processor_for(prompt_length, batch_indices)` returns a LogitsProcessor for one batch (a
    trie mask needs the padded prompt width). Images go with prompts holding `<image>` slots.
    `eos_id` (default: the tokenizer's) both stops generation and cuts its output: decoding
    under a trie passes the trie's own eos, which may be another token (GRACE's
    `<|endofchunk|>`). `image_attention="bidirectional"` decodes under GIT's block mask
    (vlmtrain.eval.beam: num_beams, length_penalty and max_new_tokens are read from the kwargs).
    """
    from transformers import LogitsProcessorList

    eos = model.tokenizer.eos_token_id if eos_id is None else int(eos_id)
    pad = pad_id(model.tokenizer)
    device = next(model.parameters()).device
    results: list[list[list[int]]] = [[] for _ in prompts]
    batches = length_sorted_batches([len(p) for p in prompts], batch_size)
    for idx in _progress(batches, progress):
        ids = pad_sequences([prompts[i] for i in idx], pad).to(device)
        mask = pad_sequences([[1] * len(prompts[i]) for i in idx], 0).to(device)
        pixels = None
        if images is not None:
            batch_images = [images[i] for i in idx if images[i] is not None]
            pixels = torch.stack(batch_images).to(device) if batch_images else None
        kwargs = dict(generate_kwargs)
        if image_attention != "causal":  # GIT's block mask: HF generate cannot take it
            rows = _image_block_rows(model, ids, mask, pixels, eos, num_return_sequences,
                                     processor_for, kwargs)  # fmt: skip
            for j, i in enumerate(idx):
                results[i] = [cut_at_eos(rows[j], eos)]
            continue
        if processor_for is not None:
            kwargs["logits_processor"] = LogitsProcessorList([processor_for(ids.shape[1], idx)])
        out = model.generate(
            ids, mask, pixel_values=pixels, num_return_sequences=num_return_sequences,
            eos_token_id=eos, **kwargs,
        )  # fmt: skip
        out = out.view(len(idx), num_return_sequences, -1).cpu().tolist()
        for j, i in enumerate(idx):
            results[i] = [cut_at_eos(seq, eos) for seq in out[j]]
    return results


def _image_block_rows(model, ids, mask, pixels, eos, n_return, processor_for, kwargs):
    """One batch decoded by vlmtrain.eval.beam (GIT's attention): the best row per prompt."""
    from vlmtrain.eval.beam import image_block_generate

    if n_return != 1 or processor_for is not None or kwargs.get("do_sample"):
        raise ValueError("bidirectional image attention decodes one beam-search answer per "
                         "prompt: no sampling, logits processors or several sequences")  # fmt: skip
    return image_block_generate(
        model, ids, mask, pixels, eos_id=eos, num_beams=int(kwargs.get("num_beams", 1)),
        length_penalty=float(kwargs.get("length_penalty", 1.0)),
        max_new_tokens=int(kwargs.get("max_new_tokens", 30)),
    )  # fmt: skip


def decode_text(tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode(list(tokens), skip_special_tokens=True).strip()


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="decoding", unit="batch")


def trie_eos(trie) -> int:
    """The trie's eos id: decoding under the trie stops and cuts there (one eos everywhere)."""
    from vlmdata.core.errors import DataError

    if trie.eos_id is None:
        raise DataError("the trie has no eos id: rebuild it with `vlmdata build-trie`")
    return int(trie.eos_id)


def check_recipe_eos(trie, recipe, ctx) -> None:
    """The recipe's targets must end with the trie's eos (the token decoding stops at), else
    a DataError saying how to make them agree."""
    from vlmdata.core.errors import DataError

    eos, ends = trie_eos(trie), recipe.target(ctx, "x")[-1]
    if ends != eos:
        name = ctx.tokenizer.convert_ids_to_tokens
        raise DataError(
            f"the trie ends identifiers with {name(eos)!r} (id {eos}) but the recipe's targets "
            f"end with {name(ends)!r} (id {ends}): build the trie with the eos the model was "
            "trained with (`vlmdata build-trie --eos`), or train with the recipe option "
            "eos_token set to the trie's"
        )


def unpack(bundle: ModelBundle) -> tuple[Any, Any, Any]:
    """(model, tokenizer, cfg) of a bundle."""
    return bundle.model, bundle.tokenizer, bundle.cfg
