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

import numpy as np
import pyarrow as pa

from vlmdata.core.atomic import atomic_path
from vlmdata.core.parquet_splice import DEFAULT_GROUP_ROWS, SplicedParquetWriter
from vlmdata.ids.schemes import PositionIds
from vlmdata.ids.source import column_chunks


class ArrayColumn:
    """An array (or chunked array) handed out `rows` at a time, in order; dropped once all
    of it is handed out (it was held through the later columns' writes)."""

    def __init__(self, array: pa.Array | pa.ChunkedArray) -> None:
        self.array: pa.Array | pa.ChunkedArray | None = array
        self.type, self._at, self._rows = array.type, 0, len(array)

    def take(self, rows: int) -> pa.Array | pa.ChunkedArray:
        if self.array is None:
            raise ValueError("the column was handed out already")
        part = self.array.slice(self._at, rows)
        self._at += rows
        if self._at >= self._rows:
            self.array = None
        return part


class NullColumn:
    """A column of nulls made `rows` at a time: `pa.nulls` of all rows held its offsets
    (4 bytes a row) through the other columns' writes."""

    def __init__(self, type_: pa.DataType) -> None:
        self.type = type_

    def take(self, rows: int) -> pa.Array:
        return pa.nulls(rows, type=self.type)


class TokensColumn:
    """Each identifier's tokens as list<int32>, held narrow (tokens and lengths in the
    narrowest unsigned dtype that holds them: uint16 and uint8 for a 32k vocabulary, a third
    of int32 tokens and offsets) and made int32 `rows` at a time, when their turn comes
    (at 10^6 identifiers the int32 arrays were held through the key column's write, the
    peak). `missing`: True where an identifier is None (semantic: a null list), or None."""

    type = pa.list_(pa.int32())

    def __init__(self, flat: np.ndarray, lengths: np.ndarray, missing: np.ndarray | None) -> None:
        self._flat, self._lengths, self._missing = flat, lengths, missing
        self._at = self._token_at = 0

    def take(self, rows: int) -> pa.ListArray:
        lengths = self._lengths[self._at : self._at + rows]
        offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
        np.cumsum(lengths, dtype=np.int32, out=offsets[1:])
        end = self._token_at + int(offsets[-1])
        values = self._flat[self._token_at : end].astype(np.int32)
        missing = None if self._missing is None else self._missing[self._at : self._at + rows]
        mask = None if missing is None else pa.array(missing)
        self._at += len(lengths)
        self._token_at = end
        if self._at >= len(self._lengths):  # all handed out
            self._flat = self._lengths = self._missing = None
        return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, pa.int32()), mask=mask)


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


Column = ArrayColumn | NullColumn | TokensColumn | SourceColumn | PositionIds


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
