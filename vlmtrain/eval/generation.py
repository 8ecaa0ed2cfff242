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


def pick_device(device: str | None = None) -> str:
    """`device`, or "cuda" when a GPU is visible, else "cpu"."""
    import torch

    return device or ("cuda" if torch.cuda.is_available() else "cpu")


def load_model(checkpoint: str | os.PathLike, device: str | None = None):
    """(model in eval mode on `device`, tokenizer, TrainConfig) from a run or export directory."""
    from vlmtrain.train.checkpoint import load_checkpoint

    model, tokenizer, cfg = load_checkpoint(checkpoint)
    model.to(pick_device(device)).eval()
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


# ---- task-specific decoding (prompts come from the recipe the checkpoint trained with) --------


def image_prompt(recipe, ctx, text: str = ""):
    """Prompt ids for an image (+ text): the caption recipe's own prompt, else image then text."""
    from vlmtrain.recipes.base import SequenceBuilder

    if recipe.name == "caption" and not text:
        return recipe.prompt(ctx).input_ids
    seq = SequenceBuilder(ctx).image()
    return (seq.text(text) if text else seq).input_ids


def _pixels(ctx, samples):
    return [ctx.pixel_values(s) for s in samples]


def caption_images(
    checkpoint,
    data_dir,
    keys: Sequence[str],
    *,
    beams: int = 1,
    max_new_tokens: int = 30,
    batch_size: int = 16,
    model_bundle=None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """{key: caption} by greedy (beams=1) or beam decoding of the recipe's caption prompt."""
    from vlmdata.shards import ShardReader
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = model_bundle or load_model(checkpoint, device)
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    samples = [reader.get(k) for k in keys]
    prompts = [image_prompt(recipe, ctx) for _ in samples]
    outs = generate_tokens(
        model, prompts, images=_pixels(ctx, samples), batch_size=batch_size, progress=progress,
        num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return {k: decode_text(tok, o[0]) for k, o in zip(keys, outs, strict=True)}


def answer_questions(
    checkpoint,
    data_dir,
    items: Sequence[tuple[int, dict]],
    *,
    prompt: str,
    max_new_tokens: int = 10,
    batch_size: int = 16,
    model_bundle=None,
    device: str | None = None,
    progress: bool = False,
) -> dict[int, str]:
    """{question_id: answer} for VQA questions ({image_id, question}), greedy decoding.

    The image is the index row whose `image_id` equals the question's (COCO ids).
    """
    from vlmdata.core.errors import DataError
    from vlmdata.shards import ShardReader
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = model_bundle or load_model(checkpoint, device)
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    if "image_id" not in reader.index.columns:
        raise DataError(f"{data_dir}: index has no image_id column to find VQA images by")
    key_of = {
        str(i): k
        for i, k in zip(
            reader.index["image_id"].to_list(), reader.index["key"].to_list(), strict=True
        )
        if i is not None
    }
    samples, prompts = [], []
    for qid, q in items:
        key = key_of.get(str(q["image_id"]))
        if key is None:
            raise DataError(f"question {qid}: image_id {q['image_id']} is not in {data_dir}")
        samples.append(reader.get(key))
        text = prompt.format(question=q["question"])
        if recipe.name == "llava" and getattr(recipe, "stage", 1) == 2:
            prompts.append(llava_prompt(recipe, ctx, q["question"]))
        else:
            prompts.append(image_prompt(recipe, ctx, text))
    outs = generate_tokens(
        model, prompts, images=_pixels(ctx, samples), batch_size=batch_size, progress=progress,
        num_beams=1, do_sample=False, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return {qid: decode_text(tok, o[0]) for (qid, _), o in zip(items, outs, strict=True)}


def llava_prompt(recipe, ctx, question: str) -> list[int]:
    """Stage-2 Vicuna prompt ids with the `<image>` mark expanded to the model's slots."""
    from vlmtrain.recipes.base import SequenceBuilder

    image_str = ctx.tokenizer.convert_ids_to_tokens(ctx.image_token_id)
    if image_str not in question:
        question = f"{image_str}\n{question}"
    ids = ctx.tokenizer(recipe.prompt_text(question), add_special_tokens=False)["input_ids"]
    seq = SequenceBuilder(ctx)
    for t in ids:
        if t == ctx.image_token_id:
            seq.image()
        else:
            seq.tokens([t], train=False)
    return seq.input_ids


def recognise_entities(
    checkpoint,
    data_dir,
    data_ids: Sequence[str],
    *,
    trie,
    entities,
    candidates=None,
    beams: int = 5,
    max_new_tokens: int = 32,
    batch_size: int = 8,
    model_bundle=None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """{data_id: entity_id}: autover prompt, then the entity name decoded under the trie.

    With `candidates` (JSONL {data_id, candidates: [entity_id]}) each example decodes in the
    sub-trie of its own candidates (AutoVER's retrieval-augmented constraint), one at a time.
    """
    import polars as pl

    from vlmdata.core.errors import DataError
    from vlmdata.shards import ShardReader
    from vlmdata.trie import Trie
    from vlmtrain.eval.data import iter_jsonl
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = model_bundle or load_model(checkpoint, device)
    recipe = recipe_of(cfg, "autover")
    ctx = RecipeContext.for_model(model)
    full = trie if isinstance(trie, Trie) else Trie.load(trie)
    ent = pl.read_parquet(entities, columns=["entity_id"])["entity_id"].to_list()
    row_of_entity = {e: i for i, e in enumerate(ent)}
    reader = ShardReader(data_dir)
    if "data_id" not in reader.index.columns:
        raise DataError(f"{data_dir}: index has no data_id column (not OVEN shards?)")
    key_of = dict(
        zip(reader.index["data_id"].to_list(), reader.index["key"].to_list(), strict=True)
    )
    samples = []
    for d in data_ids:
        if d not in key_of:
            raise DataError(f"data_id {d} is not in {data_dir}")
        samples.append(reader.get(key_of[d]))
    prompts = [recipe.prompt(ctx, s["meta"].get("question") or "").input_ids for s in samples]
    pixels = _pixels(ctx, samples)
    pad = tok.pad_token_id
    kwargs = dict(num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens)
    if candidates is None:
        outs = generate_tokens(
            model, prompts, images=pixels, batch_size=batch_size, progress=progress,
            processor_for=lambda width, _idx: full.logits_processor(width, pad_id=pad), **kwargs,
        )  # fmt: skip
        tries = [full] * len(prompts)
    else:
        cands = {rec["data_id"]: rec.get("candidates") or [] for _, rec in iter_jsonl(candidates)}
        outs, tries = [], []
        for d, p, px in zip(data_ids, prompts, pixels, strict=True):
            rows = [row_of_entity[e] for e in cands.get(d, []) if e in row_of_entity]
            sub = full.subset(rows) if rows else full
            outs += generate_tokens(
                model, [p], images=[px], batch_size=1,
                processor_for=lambda width, _idx, t=sub: t.logits_processor(width, pad_id=pad),
                **kwargs,
            )  # fmt: skip
            tries.append(sub)
    preds = {}
    for d, o, t in zip(data_ids, outs, tries, strict=True):
        row = t.lookup(o[0])
        preds[d] = ent[row] if row is not None else ""
    return preds
