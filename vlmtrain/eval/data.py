"""Reading what an evaluation compares against: the shards' records, prediction and question files.

References come from OUT/records/records.parquet, the one place records are stored (read by
`vlmdata.shards.load_records`, the training readers' table): one row per stored image, its
first record's fields keyed by the image key (`texts` = its captions or queries), so evaluation
needs no second copy of the data set and never counts an --every-text copy as an image.
Prediction files are the formats the benchmarks' own tools use (COCO results JSON, VQA results
JSON, OVEN JSONL, LLaVA JSONL).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmtrain.data.jsonl import iter_jsonl as iter_jsonl  # the strict reader, for eval tasks


def index_path(data_dir: str | os.PathLike) -> Path:
    path = Path(data_dir) / layout.INDEX
    if not path.exists():
        raise DataError(f"no index/index.parquet in {data_dir} (run `vlmdata shard` first)")
    return path


def load_index(data_dir: str | os.PathLike, split: str | None = "test", columns=None):
    """One row per stored image (a polars DataFrame), optionally of one split, in index order:
    the image's first record's fields with `key` = the image key (what the index's metadata
    columns hold, from records.parquet)."""
    import polars as pl

    from vlmdata.shards import load_records

    path = index_path(data_dir)  # DATA must be a shard folder
    records = load_records(data_dir)
    first = records.unique("image_key", keep="first", maintain_order=True)
    df = first.drop("key").rename({"image_key": "key"})
    if split is None:  # the index's order: splits in first-seen order (a shard never mixes)
        order = {s: i for i, s in enumerate(df["split"].unique(maintain_order=True).to_list())}
        rank = pl.Series([order[s] for s in df["split"].to_list()])
        df = (
            df.with_columns(rank.alias("_split")).sort("_split", maintain_order=True).drop("_split")
        )
    else:
        if "split" not in df.columns:
            raise DataError("index has no split column", file=str(path))
        have = sorted(set(df["split"].drop_nulls().to_list()))
        df = df.filter(pl.col("split") == split)
        if df.height == 0:
            raise DataError(f"no rows with split == {split!r} (the index has {have[:8]}): pass "
                            "--split with one of them", file=str(path))  # fmt: skip
    return df if columns is None else df.select(columns)


def references_by_key(data_dir: str | os.PathLike, split: str = "test") -> dict[str, list[str]]:
    """{key: [texts]} for one split (captions for caption/retrieval evaluation)."""
    df = load_index(data_dir, split, columns=["key", "split", "texts"])
    return {
        k: list(t or []) for k, t in zip(df["key"].to_list(), df["texts"].to_list(), strict=True)
    }


def read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", file=str(path), line=e.lineno) from e


def read_records(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """Records from a JSON list or a JSONL file, each with a 1-based position for messages."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return list(iter_jsonl(path))
    obj = read_json(path)
    if isinstance(obj, dict):  # e.g. {"annotations": [...]} or {"questions": [...]}
        raise DataError("expected a JSON list of records", file=str(path))
    out = []
    for i, rec in enumerate(obj, start=1):
        if not isinstance(rec, dict):
            raise DataError(f"record {i} is not a JSON object", file=str(path))
        out.append((i, rec))
    return out


def require(rec: dict, fields: tuple[str, ...], path: str | os.PathLike, line: int) -> None:
    """DataError naming the file, record and missing fields."""
    missing = [f for f in fields if f not in rec]
    if missing:
        raise DataError(f"record lacks {missing}", file=str(path), line=line)


def one_answer_source(checkpoint: Any, model_bundle: Any, predictions: Any) -> None:
    """Answers come from a model (checkpoint or loaded bundle) or from a file, never both."""
    if (checkpoint is None and model_bundle is None) == (predictions is None):
        raise DataError("give exactly one of --checkpoint or --predictions")
