"""Batched decoding for evaluation: prompts (+ images) in, token sequences out.

Prompts are sorted by length before batching so a batch pads little, and results come back in
the caller's order. `VLM.generate` left-aligns right-padded prompts itself and feeds the prompt
ids to logits processors first, so a trie's `prompt_length` is the padded batch width.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vlmdata.core.tokenizer import pad_id
from vlmtrain.recipes.base import pad_sequences

DEFAULT_VQA_PROMPT = "Question: {question} Answer:"


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


def decoding_options(recipe, **given: Any) -> dict[str, Any]:
    """Decoding settings: those given (not None), else the caption recipe's `decoding` and
    `image_attention`, else the defaults (greedy, 30 new tokens, causal)."""
    from vlmtrain.recipes.caption import DECODING

    base = {**DECODING, "image_attention": "causal"}
    if recipe.name == "caption":
        base = {**recipe.decoding, "image_attention": recipe.image_attention}
    return {k: (v if v is not None else base[k]) for k, v in given.items()}


def decode_text(tokenizer, tokens: Sequence[int]) -> str:
    return tokenizer.decode(list(tokens), skip_special_tokens=True).strip()


def _progress(items, enabled: bool):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc="decoding", unit="batch")


# ---- task-specific decoding (prompts come from the recipe the checkpoint trained with) --------


def image_prompt(recipe, ctx, text: str = ""):
    """Prompt ids for an image (+ text): the caption recipe's own prompt (or its <s> and image
    slots, in its order, then the text), else image then text."""
    from vlmtrain.recipes.base import SequenceBuilder

    if recipe.name == "caption":
        return (recipe.start(ctx).text(text) if text else recipe.prompt(ctx)).input_ids
    seq = SequenceBuilder(ctx).image()
    return (seq.text(text) if text else seq).input_ids


def _pixels(ctx, samples):
    return [ctx.pixel_values(s) for s in samples]


def caption_images(
    checkpoint,
    data_dir,
    keys: Sequence[str],
    *,
    beams: int | None = None,
    max_new_tokens: int | None = None,
    length_penalty: float | None = None,
    image_attention: str | None = None,
    batch_size: int = 16,
    model_bundle=None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """{key: caption} by greedy (beams=1) or beam decoding of the recipe's caption prompt;
    unset options take the recipe's (`decoding_options`)."""
    from vlmdata.shards import ShardReader
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = _unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    samples = [reader.get(k) for k in keys]
    prompts = [image_prompt(recipe, ctx) for _ in samples]
    opts = decoding_options(
        recipe, beams=beams, max_new_tokens=max_new_tokens, length_penalty=length_penalty,
        image_attention=image_attention,
    )  # fmt: skip
    outs = generate_tokens(
        model, prompts, images=_pixels(ctx, samples), batch_size=batch_size, progress=progress,
        num_beams=opts["beams"], do_sample=False, max_new_tokens=opts["max_new_tokens"],
        length_penalty=opts["length_penalty"], image_attention=opts["image_attention"],
    )  # fmt: skip
    return {k: decode_text(tok, o[0]) for k, o in zip(keys, outs, strict=True)}


def answer_questions(
    checkpoint,
    data_dir,
    items: Sequence[tuple[int, dict]],
    *,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
    beams: int | None = None,
    length_penalty: float | None = None,
    batch_size: int = 16,
    model_bundle=None,
    device: str | None = None,
    progress: bool = False,
) -> dict[int, str]:
    """{question_id: answer} for VQA questions ({image_id, question}).

    The caption recipe's checkpoints decode with its own question prompt (or `prompt`), image
    attention and `decoding` (unset options); other recipes put the question into `prompt`
    (default "Question: {question} Answer:"), greedy with 10 new tokens unless set.

    The image is the one a record with the question's `image_id` (COCO ids) points at: VQAv2
    shards hold one record per question, several per image, and each image once.
    """
    from vlmdata.core.errors import DataError
    from vlmdata.shards import ShardReader, load_records
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = _unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    records = load_records(data_dir)
    if "image_id" not in records.columns:
        raise DataError(f"{data_dir}: records have no image_id column to find VQA images by")
    key_of = {
        str(i): k
        for i, k in zip(records["image_id"], records["image_key"], strict=True)
        if i is not None
    }
    samples, prompts = [], []
    for qid, q in items:
        key = key_of.get(str(q["image_id"]))
        if key is None:
            raise DataError(f"question {qid}: image_id {q['image_id']} is not in {data_dir}")
        samples.append(reader.get(key))
        if recipe.name == "caption":
            prompts.append(recipe.prompt(ctx, q["question"], prompt).input_ids)
        else:
            text = (prompt or DEFAULT_VQA_PROMPT).format(question=q["question"])
            prompts.append(question_prompt(recipe, ctx, q["question"], text))
    opts = decoding_options(recipe, beams=beams, length_penalty=length_penalty,
                            max_new_tokens=max_new_tokens, image_attention=None)  # fmt: skip
    if recipe.name != "caption" and max_new_tokens is None:
        opts["max_new_tokens"] = 10
    outs = generate_tokens(
        model, prompts, images=_pixels(ctx, samples), batch_size=batch_size, progress=progress,
        num_beams=opts["beams"], do_sample=False, max_new_tokens=opts["max_new_tokens"],
        length_penalty=opts["length_penalty"], image_attention=opts["image_attention"],
    )  # fmt: skip
    return {qid: decode_text(tok, o[0]) for (qid, _), o in zip(items, outs, strict=True)}


def question_prompt(recipe, ctx, question: str, text: str | None = None) -> list[int]:
    """Prompt ids for an image and a question: LLaVA stage 2's chat prompt of the question,
    else `image_prompt` of `text` (default: the question itself)."""
    if recipe.name == "llava" and getattr(recipe, "stage", 1) == 2:
        return llava_prompt(recipe, ctx, question)
    return image_prompt(recipe, ctx, question if text is None else text)


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


def _unpack(bundle: ModelBundle) -> tuple[Any, Any, Any]:
    return bundle.model, bundle.tokenizer, bundle.cfg


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
    model_bundle: ModelBundle | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """{data_id: entity_id}: autover prompt, then the entity name decoded under the trie.

    With `candidates` (JSONL {data_id, candidates: [entity_id]}) each example decodes among its
    own candidates (AutoVER's retrieval-augmented constraint): a batch's candidate sets become
    one forest (`vlmdata.trie.forest`), so examples still decode `batch_size` at a time.
    Examples without candidates (no line, or an empty list) decode over the whole trie.
    Generation stops at the trie's eos.
    """
    from vlmdata.core.errors import DataError
    from vlmdata.trie import Trie
    from vlmdata.trie.mask import TrieLogitsProcessor
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = _unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg, "autover")
    ctx = RecipeContext.for_model(model)
    full = trie if isinstance(trie, Trie) else Trie.load(trie)
    check_recipe_eos(full, recipe, ctx)
    eos = trie_eos(full)
    ent = _entity_ids(entities)
    samples = _oven_samples(data_dir, data_ids)
    prompts = [recipe.prompt(ctx, s["meta"].get("question") or "").input_ids for s in samples]
    pixels = _pixels(ctx, samples)
    pad = pad_id(tok)
    kwargs = dict(num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens, eos_id=eos)
    if candidates is None or isinstance(candidates, dict):  # a dict: {data_id: entity ids}
        cands = None if candidates is None else candidate_rows(candidates, ent)
    else:
        cands = read_candidates(candidates, ent)
    boxed = [i for i, d in enumerate(data_ids) if cands is not None and cands.get(d)]
    free = sorted(set(range(len(data_ids))) - set(boxed))
    rows: dict[int, int | None] = {}
    if free:
        outs = generate_tokens(
            model, [prompts[i] for i in free], images=[pixels[i] for i in free],
            batch_size=batch_size, progress=progress,
            processor_for=lambda width, _idx: TrieLogitsProcessor(full, width, pad_id=pad),
            **kwargs,
        )  # fmt: skip
        rows.update({i: full.lookup(o[0]) for i, o in zip(free, outs, strict=True)})
    if boxed:
        sets = [cands[data_ids[i]] for i in boxed]
        rows.update(_decode_in_candidates(
            model, full, boxed, sets, [prompts[i] for i in boxed], [pixels[i] for i in boxed],
            pad=pad, batch_size=batch_size, progress=progress, **kwargs,
        ))  # fmt: skip
    if any(r is not None and not 0 <= r < len(ent) for r in rows.values()):
        raise DataError("the trie holds rows beyond the entities file: built from another one?")
    return {d: (ent[rows[i]] if rows[i] is not None else "") for i, d in enumerate(data_ids)}


def _decode_in_candidates(model, full, items, sets, prompts, pixels, *, pad, batch_size,
                          progress, **kwargs) -> dict[int, int | None]:  # fmt: skip
    """{item: looked-up row} decoding each item among its own rows, a forest per batch."""
    from vlmdata.trie.forest import batch_subset

    forests: dict[int, tuple] = {}

    def processor(width: int, idx: list[int]):
        forest = batch_subset(full, [sets[i] for i in idx])
        for j, i in enumerate(idx):
            forests[i] = (forest, j)
        return forest.logits_processor(width, pad_id=pad)

    outs = generate_tokens(
        model, prompts, images=pixels, batch_size=batch_size, progress=progress,
        processor_for=processor, **kwargs,
    )  # fmt: skip
    out = {}
    for k, (item, o) in enumerate(zip(items, outs, strict=True)):
        forest, j = forests[k]
        out[item] = forest.lookup(j, o[0])
    return out


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


def _entity_ids(entities) -> list[str]:
    import polars as pl

    return pl.read_parquet(entities, columns=["entity_id"])["entity_id"].to_list()


def _oven_samples(data_dir, data_ids: Sequence[str]) -> list[dict]:
    from vlmdata.core.errors import DataError
    from vlmdata.shards import RecordReader

    reader = RecordReader(data_dir)  # OVEN records share images: one record per data_id
    if "data_id" not in reader.records.columns:
        raise DataError(f"{data_dir}: records have no data_id column (not OVEN shards?)")
    key_of = dict(zip(reader.records["data_id"], reader.records["key"], strict=True))
    missing = [d for d in data_ids if d not in key_of]
    if missing:
        raise DataError(f"{len(missing)} data_ids are not in {data_dir} (e.g. {missing[:3]})")
    return [reader.get(key_of[d]) for d in data_ids]


def candidate_rows(candidates: dict, entity_ids: Sequence[str]) -> dict[str, list[int]]:
    """{data_id: entity rows} of {data_id: entity ids} (retrieved from the same entities file)."""
    row_of = {e: i for i, e in enumerate(entity_ids)}
    return {d: [row_of[e] for e in ids] for d, ids in candidates.items()}


def read_candidates(path, entity_ids: Sequence[str]) -> dict[str, list[int]]:
    """{data_id: entity rows} from JSONL {data_id, candidates: [entity_id]}; an entity id the
    entities file lacks is an error (its name could never be decoded)."""
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.data import iter_jsonl

    row_of = {e: i for i, e in enumerate(entity_ids)}
    out: dict[str, list[int]] = {}
    for line, rec in iter_jsonl(path):
        if "data_id" not in rec or not isinstance(rec.get("candidates"), list):
            raise DataError("record needs data_id and a candidates list", file=str(path),
                            line=line)  # fmt: skip
        unknown = [e for e in rec["candidates"] if e not in row_of]
        if unknown:
            raise DataError(f"candidates {unknown[:3]} are not in the entities file",
                            file=str(path), line=line)  # fmt: skip
        if rec["data_id"] in out:
            raise DataError(f"second candidate list for {rec['data_id']}", file=str(path),
                            line=line)  # fmt: skip
        out[rec["data_id"]] = [row_of[e] for e in rec["candidates"]]
    return out
