"""Where build-ids reads its images from: a shards directory's index, or a manifest.

The identifier map's row order is the order of these rows (the index's order, which is the
manifest's order less the rejected images), so row i of ids.parquet is sample i of the index.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.parquet_source import READ_BATCH_ROWS

COLUMNS = ("key", "split", "texts", "image_id", "path")
HASH_SEED = 0x5EED_0001


def source_path(out: str | os.PathLike) -> Path:
    """OUT's index if present, else its manifest; OUT may also be a .parquet file."""
    out = Path(out)
    if out.is_file():
        return out
    for name in (layout.INDEX, layout.MANIFEST):
        if (out / name).is_file():
            return out / name
    raise FileNotFoundError(f"{out}: no {layout.INDEX} or {layout.MANIFEST} (run `vlmdata shard`)")


def read_images(out: str | os.PathLike, texts: bool = True) -> pa.Table:
    """Columns key, split, texts (and image_id, path when present) of every image, in index
    order; only key and split when `texts` is False. (The position schemes hold none of them:
    `checked_source`.)"""
    path = _checked_columns(out)
    names = pq.read_schema(path).names
    wanted = COLUMNS if texts else ("key", "split")
    table = pq.read_table(path, columns=[c for c in wanted if c in names])
    keys = table.column("key")
    if keys.null_count:
        raise DataError("null key", file=str(path))
    if has_duplicates(keys):
        raise DataError("duplicate keys; an identifier map needs one row per image", file=str(path))
    return table


def checked_source(out: str | os.PathLike) -> tuple[Path, int]:
    """(source file, rows) after `read_images`' checks, streamed: the keys are read a chunk
    at a time and never held (the position schemes need no column of the source in memory)."""
    path = _checked_columns(out)
    rows = pq.read_metadata(path).num_rows

    def keys() -> Iterator[pa.Array]:
        for chunk in column_chunks(path, "key"):
            if chunk.null_count:
                raise DataError("null key", file=str(path))
            yield chunk

    if _repeats(keys, rows):
        raise DataError("duplicate keys; an identifier map needs one row per image", file=str(path))
    return path, rows


def column_chunks(path: Path, column: str) -> Iterator[pa.Array]:
    """The chunks of `pq.read_table(path, columns=[column])`'s column, one at a time: each row
    group cut into READ_BATCH_ROWS rows as the dataset scan does (tests/ids/test_ids_write.py checks
    it against read_table). Read a row group at a time: the scan's read-ahead threads held
    ~40 MB more at 10^6 rows."""
    with pq.ParquetFile(path) as f:
        for group in range(f.num_row_groups):
            batches = f.iter_batches(READ_BATCH_ROWS, row_groups=[group], columns=[column],
                                     use_threads=False)  # fmt: skip
            for batch in batches:
                yield batch.column(0)


def _checked_columns(out: str | os.PathLike) -> Path:
    path = source_path(out)
    names = pq.read_schema(path).names
    missing = [c for c in ("key", "split", "texts") if c not in names]
    if missing:
        raise DataError(f"missing columns {missing}", file=str(path))
    return path


def has_duplicates(keys: pa.ChunkedArray, slice_rows: int = 65536) -> bool:
    """Whether a string repeats: 64-bit hashes sorted (8 bytes a key, not a hash table of the
    strings), and the strings behind equal hashes compared, so the answer is exact."""

    def slices() -> Iterator[pa.Array]:
        for start in range(0, len(keys), slice_rows):
            yield keys.slice(start, slice_rows).combine_chunks()

    return _repeats(slices, len(keys))


def _repeats(chunks: Callable[[], Iterable[pa.Array]], rows: int) -> bool:
    """`has_duplicates` over `rows` keys that come as chunks (a fresh pass per call: a second
    pass fetches the few keys whose hashes are equal)."""
    import numpy as np
    import polars as pl

    hashes = np.empty(rows, dtype=np.uint64)
    at = 0
    for chunk in chunks():
        hashes[at : at + len(chunk)] = pl.Series(chunk).hash(HASH_SEED).to_numpy()
        at += len(chunk)
    if at != rows:
        raise ValueError(f"{at} keys where {rows} were expected")
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return False
    same_hash: list[str] = []  # equal hashes: rare, compared exactly
    at = 0
    for chunk in chunks():
        rows_here = np.flatnonzero(np.isin(hashes[at : at + len(chunk)], repeated))
        same_hash += chunk.take(pa.array(rows_here)).to_pylist()
        at += len(chunk)
    return len(set(same_hash)) != len(same_hash)
