"""The partitioned plan's scratch folder (cluster_plan.py): small numpy and Parquet pieces that
the engine's tasks write and read, named by stage, partition and the task that wrote them.

Every file is written under a temp name and renamed, so a task the engine retries (Spark,
Ray) leaves whole files only. numpy files hold plain numeric dtypes and are loaded with
`allow_pickle=False`; rows with strings travel as Parquet.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PLAN_DIR_ENV = "VLMDATA_PLAN_DIR"  # a folder every executor can reach (default: local temp)

IK = np.dtype([("row", "<i8"), ("hi", "<u8"), ("lo", "<u8")])  # a row's image key hash
PAIR = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("ik_hi", "<u8"), ("ik_lo", "<u8")])
EDGE = np.dtype([("a_hi", "<u8"), ("a_lo", "<u8"), ("b_hi", "<u8"), ("b_lo", "<u8")])
LABEL = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("bucket", "<i8")])
HASH = np.dtype([("hi", "<u8"), ("lo", "<u8")])


@dataclass(frozen=True)
class Scratch:
    """Where one plan's pieces live, and how rows are cut: slices of `slice_rows` manifest rows
    (row order) and `buckets` hash partitions (by a key's 128-bit hash)."""

    root: str
    slice_rows: int
    buckets: int

    @classmethod
    def make(cls, slice_rows: int, buckets: int) -> Scratch:
        parent = os.environ.get(PLAN_DIR_ENV) or None
        if parent is not None:
            Path(parent).mkdir(parents=True, exist_ok=True)
        root = tempfile.mkdtemp(prefix="vlmdata-cluster-plan-", dir=parent)
        return cls(root, slice_rows, buckets)

    def path(self, *parts: str) -> Path:
        return Path(self.root, *parts)

    def bucket_of(self, hi: np.ndarray) -> np.ndarray:
        """The hash partition of each 128-bit hash (by its high word)."""
        return (hi % np.uint64(self.buckets)).astype(np.int64)


def save_array(path: Path, array: np.ndarray) -> None:
    """A numpy piece, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        np.save(f, array, allow_pickle=False)
    os.replace(tmp, path)


def save_table(path: Path, table: pa.Table) -> None:
    """A Parquet piece, written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)


def pieces(folder: Path, suffix: str) -> list[Path]:
    """The pieces in `folder` with that suffix, in the order of their numbers."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.suffix == suffix and not p.name.startswith(".")]
    return sorted(found, key=lambda p: int(p.stem[1:]))  # s12 after s2: by the number


def load_arrays(folder: Path, dtype: np.dtype) -> np.ndarray:
    """Every numpy piece in `folder`, joined in the order of their numbers."""
    parts = [np.load(p, allow_pickle=False) for p in pieces(folder, ".npy")]
    return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)


def load_tables(folder: Path, columns: list[str] | None = None) -> pa.Table | None:
    """Every Parquet piece in `folder` (those columns, or all), joined in the order of their
    numbers (None: none)."""
    parts = [pq.read_table(p, columns=columns) for p in pieces(folder, ".parquet")]
    return pa.concat_tables(parts) if parts else None


def split_by_bucket(values: np.ndarray, buckets: np.ndarray, n: int) -> list[np.ndarray]:
    """`values` cut into one array per bucket number 0..n-1 (row order kept in each)."""
    order = np.argsort(buckets, kind="stable")
    bounds = np.searchsorted(buckets[order], np.arange(n + 1))
    return [values[order[bounds[b] : bounds[b + 1]]] for b in range(n)]


REF, REF_SHARD = "__ref", "__ref_shard"  # a row's image ref: a path, or (raw shard, key)


def ref_arrays(refs: list) -> tuple[pa.Array, pa.Array]:
    """Refs as two columns: the path or key, and the raw shard (null for a path)."""
    raw = [isinstance(r, tuple) for r in refs]
    names = [r[1] if is_raw else r for r, is_raw in zip(refs, raw, strict=True)]
    shards = [r[0] if is_raw else None for r, is_raw in zip(refs, raw, strict=True)]
    return pa.array(names, type=pa.string()), pa.array(shards, type=pa.int32())


def refs_of(names: list, shards: list) -> list:
    """The refs `ref_arrays` stored (a download's raw refs as (shard, key) tuples)."""
    return [n if s is None else (s, n) for n, s in zip(names, shards, strict=True)]
