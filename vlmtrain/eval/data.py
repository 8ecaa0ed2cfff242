"""Reading what an evaluation compares against: the shard index, prediction and question files.

References come from OUT/index/index.parquet (one row per image, `texts` = its captions or queries),
so evaluation needs no second copy of the data set. Prediction files are the formats the
benchmarks' own tools use (COCO results JSON, VQA results JSON, OVEN JSONL, LLaVA JSONL).
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
    """Rows of OUT's index (a polars DataFrame), optionally one split, in index order."""
    import polars as pl

    path = index_path(data_dir)
    df = pl.read_parquet(path, columns=columns)
    if split is not None:
        if "split" not in df.columns:
            raise DataError("index has no split column", file=str(path))
        have = sorted(set(df["split"].drop_nulls().to_list()))
        df = df.filter(pl.col("split") == split)
        if df.height == 0:
            raise DataError(f"no rows with split == {split!r} (the index has {have[:8]}): pass "
                            "--split with one of them", file=str(path))  # fmt: skip
    return df


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
