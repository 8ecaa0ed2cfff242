"""Where build-ids reads its images from: a shards directory's index, or a manifest.

The identifier map's row order is the order of these rows (the index's order, which is the
manifest's order less the rejected images), so row i of ids.parquet is sample i of the index.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.errors import DataError

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
    order; only key and split when `texts` is False (position schemes: less to hold)."""
    path = source_path(out)
    names = pq.read_schema(path).names
    missing = [c for c in ("key", "split", "texts") if c not in names]
    if missing:
        raise DataError(f"missing columns {missing}", file=str(path))
    wanted = COLUMNS if texts else ("key", "split")
    table = pq.read_table(path, columns=[c for c in wanted if c in names])
    keys = table.column("key")
    if keys.null_count:
        raise DataError("null key", file=str(path))
    if has_duplicates(keys):
        raise DataError("duplicate keys; an identifier map needs one row per image", file=str(path))
    return table


def has_duplicates(keys: pa.ChunkedArray, slice_rows: int = 65536) -> bool:
    """Whether a string repeats: 64-bit hashes sorted (8 bytes a key, not a hash table of the
    strings), and the strings behind equal hashes compared, so the answer is exact."""
    import numpy as np
    import polars as pl

    hashes = np.empty(len(keys), dtype=np.uint64)
    for start in range(0, len(keys), slice_rows):
        part = pl.Series(keys.slice(start, slice_rows).combine_chunks())
        hashes[start : start + len(part)] = part.hash(HASH_SEED).to_numpy()
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return False
    rows = np.flatnonzero(np.isin(hashes, repeated))  # equal hashes: rare, compared exactly
    same_hash = keys.take(pa.array(rows)).to_pylist()
    return len(set(same_hash)) != len(same_hash)
