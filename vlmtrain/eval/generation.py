"""Batched decoding for evaluation: prompts (+ images) in, token sequences out.

Prompts are sorted by length before batching so a batch pads little, and results come back in
the caller's order. `VLM.generate` left-aligns right-padded prompts itself and feeds the prompt
ids to logits processors first, so a trie's `prompt_length` is the padded batch width.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch

from vlmtrain.recipes.base import pad_sequences


def load_model(checkpoint: str | os.PathLike):
    """(model in eval mode, tokenizer, TrainConfig) from a run or export directory."""
    from vlmtrain.checkpoint import load_checkpoint

    model, tokenizer, cfg = load_checkpoint(checkpoint)
    model.eval()
    return model, tokenizer, cfg


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
    progress: bool = False,
    **generate_kwargs: Any,
) -> list[list[list[int]]]:
    """Per prompt, `num_return_sequences` generated token lists (new tokens, cut at eos).

    `processor_for(prompt_length, batch_indices)` returns a LogitsProcessor for one batch (a
    trie mask needs the padded prompt width). Images go with prompts holding `<image>` slots.
    """
    from transformers import LogitsProcessorList

    eos = model.tokenizer.eos_token_id
    pad = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else eos
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
        if processor_for is not None:
            kwargs["logits_processor"] = LogitsProcessorList([processor_for(ids.shape[1], idx)])
        out = model.generate(
            ids, mask, pixel_values=pixels, num_return_sequences=num_return_sequences, **kwargs
        )
        out = out.view(len(idx), num_return_sequences, -1).cpu().tolist()
        for j, i in enumerate(idx):
            results[i] = [cut_at_eos(seq, eos) for seq in out[j]]
    return results


def decode_text(tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode(list(tokens), skip_special_tokens=True).strip()


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="decoding", unit="batch")
