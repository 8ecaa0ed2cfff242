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
    if len(pa.compute.unique(keys)) != len(keys):
        raise DataError("duplicate keys; an identifier map needs one row per image", file=str(path))
    return table
