"""OVEN entity recognition by a checkpoint: the autover prompt, then the entity's name decoded
under the entity trie (or among each example's own candidates), mapped back to an entity id.
"""

from __future__ import annotations

from collections.abc import Sequence

from vlmdata.core.errors import DataError
from vlmdata.core.tokenizer import pad_id
from vlmtrain.eval.generation import (
    ModelBundle,
    check_recipe_eos,
    generate_tokens,
    load_model,
    recipe_of,
    trie_eos,
    unpack,
)


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
    from vlmdata.trie import Trie
    from vlmdata.trie.mask import TrieLogitsProcessor
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg, "autover")
    ctx = RecipeContext.for_model(model)
    full = trie if isinstance(trie, Trie) else Trie.load(trie)
    check_recipe_eos(full, recipe, ctx)
    eos = trie_eos(full)
    ent = entity_ids(entities)
    samples = oven_samples(data_dir, data_ids)
    prompts = [recipe.prompt(ctx, s["meta"].get("question") or "").input_ids for s in samples]
    pixels = [ctx.pixel_values(s) for s in samples]
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


def entity_ids(entities) -> list[str]:
    """The entity ids of an entities.parquet, in row order (the trie's rows)."""
    import polars as pl

    return pl.read_parquet(entities, columns=["entity_id"])["entity_id"].to_list()


def oven_samples(data_dir, data_ids: Sequence[str]) -> list[dict]:
    """The samples of OVEN shards' records, by data_id (a missing one is a DataError)."""
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
