"""`vlmtrain eval retrieval-generative`: GRACE text->image retrieval by constrained decoding.

Every text of every test image is a query (Flickr30k: 1k images -> 5k queries). The query goes
into the grace recipe's own query->id prompt (`GraceRecipe.prompt`, the one it trained on),
beam search runs over the test-set trie (10 beams, 10 returned), each returned sequence maps
back through `trie.lookup` -> ids.parquet row -> image key, and Recall@K asks whether the
query's own image is among the first K distinct images. Decoding defaults are GRACE's
(`evaluate_t2id`: 10 beams, 10 returned, length_penalty -2.0). The report also gives
`grace_recall@K`, the same beams counted as GRACE's script counts them (`grace_counting_recall`),
to set beside the paper's tables.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from vlmdata.core.errors import DataError
from vlmdata.core.tokenizer import pad_id
from vlmtrain.eval.data import load_index
from vlmtrain.eval.generation import ModelBundle, check_recipe_eos, trie_eos
from vlmtrain.eval.metrics.recall import (
    grace_counting_recall,
    ranked_list_ranks,
    recall_from_ranks,
)
from vlmtrain.eval.options import GRACE_LENGTH_PENALTY, GenerativeRetrievalOptions, check_options
from vlmtrain.eval.report import Report, pick_examples


@dataclass(frozen=True)
class Query:
    text: str
    key: str  # the image the query describes


def split_queries(data_dir: str | os.PathLike, split: str = "test") -> list[Query]:
    """Every text of every `split` image, in index order (image-major)."""
    df = load_index(data_dir, split, columns=["key", "split", "texts"])
    out = [
        Query(t, k)
        for k, ts in zip(df["key"].to_list(), df["texts"].to_list(), strict=True)
        for t in ts or []
    ]
    if not out:
        raise DataError(f"the {split} images of {data_dir} have no texts to use as queries")
    return out


def read_id_keys(ids_path: str | os.PathLike) -> tuple[list[str], dict[str, str]]:
    """(row -> key list, key -> identifier) from ids.parquet."""
    import polars as pl

    df = pl.read_parquet(ids_path, columns=None)
    for col in ("key", "identifier"):
        if col not in df.columns:
            raise DataError(f"missing column {col!r}", file=str(ids_path))
    keys = df["key"].to_list()
    return keys, dict(zip(keys, df["identifier"].to_list(), strict=True))


def read_ids_scheme(ids_path: str | os.PathLike) -> str:
    """The scheme recorded in ids.parquet's metadata ("" when absent)."""
    import pyarrow.parquet as pq

    meta = pq.read_schema(ids_path).metadata or {}
    return meta.get(b"scheme", b"").decode()


def check_trie_matches_recipe(trie, recipe, ctx, row_keys, identifiers, keys) -> None:
    """Every query target must be a trie path leading to its own row, else decoding cannot
    reach it (trie built with another tokenizer, prefix, eos or split)."""
    built = (trie.header.get("meta") or {}).get("prefix")
    if built is not None and built != recipe.id_prefix:
        raise DataError(
            f"the trie was built with --prefix {built!r} but the recipe's id_prefix is "
            f"{recipe.id_prefix!r}: its paths are not the sequences the model was trained on"
        )
    check_recipe_eos(trie, recipe, ctx)
    row_of = {k: i for i, k in enumerate(row_keys)}
    for key in keys:
        if key not in identifiers:
            raise DataError(f"test image {key!r} has no identifier in ids.parquet")
        target = recipe.target(ctx, identifiers[key])
        row = trie.lookup(target)
        if row != row_of[key]:
            raise DataError(
                f"the trie does not hold {key!r}'s identifier {identifiers[key]!r} as the recipe "
                f"tokenizes it ({target}); lookup gave row {row}. Rebuild it with `vlmdata "
                f"build-trie --split test --prefix {recipe.id_prefix!r}` and the model's tokenizer"
            )


def retrieve_generative(
    model,
    recipe,
    trie,
    row_keys: Sequence[str],
    queries: Sequence[Query],
    *,
    beams: int = 10,
    returns: int = 10,
    batch_size: int = 16,
    length_penalty: float = GRACE_LENGTH_PENALTY,
    progress: bool = False,
) -> list[list[str | None]]:
    """Per query, the ranked image keys of the returned beams (None: a beam off the trie)."""
    from vlmdata.trie.mask import TrieLogitsProcessor
    from vlmtrain.eval.generation import generate_tokens
    from vlmtrain.recipes.base import RecipeContext
    from vlmtrain.recipes.grace import QUERY2ID

    if returns > beams:
        raise ValueError(f"cannot return {returns} sequences from {beams} beams")
    ctx = RecipeContext.for_model(model)
    prompts = [recipe.prompt(ctx, QUERY2ID, q.text).input_ids for q in queries]
    pad = pad_id(model.tokenizer)
    outs = generate_tokens(
        model,
        prompts,
        batch_size=batch_size,
        num_return_sequences=returns,
        processor_for=lambda width, _idx: TrieLogitsProcessor(trie, width, pad_id=pad),
        eos_id=trie_eos(trie),
        progress=progress,
        num_beams=beams,
        do_sample=False,
        max_new_tokens=max(1, len(trie.level_starts) - 1),
        length_penalty=length_penalty,
    )
    ranked = []
    for seqs in outs:
        rows = [trie.lookup(s) for s in seqs]
        ranked.append([None if r is None else row_keys[r] for r in rows])
    return ranked


def run_generative_retrieval(
    o: GenerativeRetrievalOptions, *, model_bundle: ModelBundle | None = None
) -> Report:
    """Recall@K of text->image generative retrieval on the `split` images; `save_predictions`:
    each query's returned beams as JSONL (vlmtrain.eval.ranked_predictions).

    `model_bundle` (a `ModelBundle`) skips loading `checkpoint` (tests, notebooks). Decoding
    stops at the trie's eos, whatever token that is.
    """
    check_options(o, GenerativeRetrievalOptions, "run_generative_retrieval")
    if o.returns > o.beams:  # before any file or model: beam search keeps `beams` sequences
        raise DataError(f"--returns {o.returns} is more than --beams {o.beams}: beam search "
                        f"returns at most one sequence per beam")  # fmt: skip
    from vlmdata.trie import Trie
    from vlmtrain.eval.generation import load_model, recipe_of
    from vlmtrain.recipes.base import RecipeContext

    trie = Trie.load(o.trie_path)  # before the model: a bad file fails in milliseconds
    bundle = model_bundle or load_model(o.checkpoint, o.device)
    trained = getattr(getattr(bundle.cfg, "recipe", None), "name", None)
    if trained not in (None, "grace"):
        raise DataError(
            f"{o.checkpoint or 'the model'} was trained with the {trained} recipe: "
            "retrieval-generative decodes GRACE identifiers (recipe grace); an embedding "
            "model (fromage) is scored by `vlmtrain eval retrieval-embedding`"
        )
    model, recipe = bundle.model, recipe_of(bundle.cfg, "grace")
    row_keys, identifiers = read_id_keys(o.ids_path)
    queries = split_queries(o.data_dir, o.split)
    if o.limit is not None:
        queries = queries[: o.limit]
    image_keys = sorted({q.key for q in queries})
    check_trie_matches_recipe(
        trie, recipe, RecipeContext.for_model(model), row_keys, identifiers, image_keys
    )
    ranked = retrieve_generative(
        model, recipe, trie, row_keys, queries, beams=o.beams, returns=o.returns,
        batch_size=o.batch_size, length_penalty=o.length_penalty, progress=o.progress,
    )  # fmt: skip
    ranks = ranked_list_ranks(ranked, [q.key for q in queries])
    recall = recall_from_ranks(ranks, o.ks)
    if o.save_predictions is not None:
        from vlmtrain.eval.ranked_predictions import generative_rows, write_ranked_predictions

        rows = generative_rows([q.text for q in queries], [q.key for q in queries], ranked, ranks)
        write_ranked_predictions(o.save_predictions, rows)
    semantic = read_ids_scheme(o.ids_path) == "semantic"
    paper, counted = grace_counting_recall(
        ranked, [q.key for q in queries], [q.text for q in queries], o.ks, semantic=semantic
    )
    report = Report(
        task="retrieval-generative",
        config={
            "split": o.split,
            "beams": o.beams,
            "returns": o.returns,
            "batch_size": o.batch_size,
            "length_penalty": o.length_penalty,
            "limit": o.limit,
            "trie": str(o.trie_path),
            "ids": str(o.ids_path),
        },
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir),
    )
    for k in o.ks:
        report.add(f"recall@{k}", recall[k], len(queries))
    report.examples = pick_examples([q.text for q in queries], [[q.key] for q in queries], ranked)
    for k in o.ks:
        report.add(f"grace_recall@{k}", paper[k], counted["queries"])
    n_beams = sum(len(r) for r in ranked)
    report.details = {
        "queries": len(queries),
        "images": len(image_keys),
        "trie_sequences": len(trie),
        "off_trie_beams": sum(1 for r in ranked for x in r if x is None),
        "returned_beams": n_beams,
        "grace_counting": counted,
    }
    return report
