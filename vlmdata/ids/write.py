"""ids.parquet written a row group and a column at a time, byte-identical to one
`pq.write_table` of the whole table (what build-ids did before).

The position schemes need nothing of the source but its keys and splits, copied into the map:
those columns are read again, a chunk at a time, while their row group is written
(`source.column_chunks` cuts them as `pq.read_table` does, so the pages are the same), and the
other columns are sliced from the arrays build-ids made. One column of one row group is held
(`core/parquet_splice.py`), not the table.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from vlmdata.core.atomic import atomic_path
from vlmdata.core.parquet_splice import DEFAULT_GROUP_ROWS, SplicedParquetWriter
from vlmdata.ids.schemes import PositionIds
from vlmdata.ids.source import column_chunks


class ArrayColumn:
    """An array (or chunked array) handed out `rows` at a time, in order."""

    def __init__(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.array, self.type, self._at = array, array.type, 0

    def take(self, rows: int) -> pa.Array | pa.ChunkedArray:
        part = self.array.slice(self._at, rows)
        self._at += rows
        return part


class SourceColumn:
    """A column of a Parquet file read a chunk at a time; `take(rows)` gives the next rows as
    the chunks `pq.read_table` would have held (cut at `rows` like a table slice)."""

    def __init__(self, path: Path, name: str, type_: pa.DataType) -> None:
        self.type = type_
        self._chunks: Iterator[pa.Array] = column_chunks(path, name)
        self._left: pa.Array | None = None  # the part of a chunk the last take did not need

    def take(self, rows: int) -> pa.ChunkedArray:
        parts, need = [], rows
        while need > 0:
            chunk = self._left if self._left is not None else next(self._chunks, None)
            self._left = None
            if chunk is None:
                raise ValueError(f"the source has fewer rows than the {rows} asked for")
            if len(chunk) > need:
                chunk, self._left = chunk.slice(0, need), chunk.slice(need)
            if len(chunk):
                parts.append(chunk)
            need -= len(chunk)
        return pa.chunked_array(parts, self.type)


Column = ArrayColumn | SourceColumn | PositionIds


def write_map(
    output: str | os.PathLike, columns: dict[str, Column], rows: int, metadata: dict[str, str]
) -> None:
    """Write the map's columns (each `rows` long) as `pq.write_table(table, output,
    compression="zstd")` would: row groups of at most 1,048,576 rows, one empty group when
    there are no rows; atomically."""
    schema = pa.schema(
        [(name, col.type) for name, col in columns.items()],
        metadata={k: v.encode() for k, v in metadata.items()},
    )
    sizes = [min(DEFAULT_GROUP_ROWS, rows - s) for s in range(0, rows, DEFAULT_GROUP_ROWS)]
    with atomic_path(output) as tmp:
        writer = SplicedParquetWriter(tmp, schema, compression="zstd")
        try:
            for size in sizes or [0]:
                writer.write_group(size, (col.take(size) for col in columns.values()))
            writer.close()
        except BaseException:
            writer.abort()
            raise
