"""ids.parquet written a row group and a column at a time, byte-identical to one
`pq.write_table` of the whole table (what build-ids did before).

The position schemes need nothing of the source but its keys and splits, copied into the map:
those columns are read again, a chunk at a time, while their row group is written
(`source.column_chunks` cuts them as `pq.read_table` does, so the pages are the same). Keys,
splits and position identifiers are handed over as `ColumnSlices` (`SourceSlices`,
`PositionSlices`), so a big one (the 10^6-row group's keys, 23 MB of Arrow) is written in
pieces of ~8 MB (`core/parquet_pages.py`) instead of whole: measured at 10^6 rows, numeric,
183 -> 173 MB peak RSS. Tokens are held narrow and made int32 when their column is written
(`TokensColumn`). One column of one row group is held (`core/parquet_splice.py`), not the
table.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.atomic import atomic_path
from vlmdata.core.heap import release_free_heap
from vlmdata.core.parquet_pages import ColumnSlices
from vlmdata.core.parquet_source import chunk_bytes
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


class PositionSlices:
    """`PositionIds` handed over a row group at a time as `ColumnSlices` (`part` of them), so
    the spliced writer writes a big group's identifiers in pieces (`core/parquet_pages.py`):
    at 10^6 numeric ids the column is 15 MB of Arrow, written whole it was build-ids' peak
    once the keys went in pieces."""

    type = pa.string()

    def __init__(self, ids: PositionIds) -> None:
        self._ids, self._at = ids, 0

    def take(self, rows: int) -> ColumnSlices:
        start, ids = self._at, self._ids
        self._at += rows

        def read(a: int, b: int) -> pa.Array:
            return ids.part(start + a, start + b)

        return ColumnSlices(self.type, rows, rows * ids.row_bytes(), read)


class SourceSlices:
    """A column of a Parquet file handed over a row group at a time as `ColumnSlices`, so
    the spliced writer may write a big one in pieces (`core/parquet_pages.py`): the group's
    rows [a, b) as the chunks `pq.read_table` would have held, cut at a and b (`_Group`)."""

    def __init__(self, path: Path, name: str, type_: pa.DataType) -> None:
        self.type = type_
        self._chunks: Iterator[pa.Array] = column_chunks(path, name)
        self._left: pa.Array | None = None  # the part of a chunk the last group did not need
        self._pulled = self._given = 0  # rows read from the file / handed out in groups
        self._row_bytes = _row_bytes(path, name)

    def take(self, rows: int) -> ColumnSlices:
        if self._pulled != self._given:  # the group (not kept: see `_Group`) was not all read
            raise ValueError(f"{self._given - self._pulled} rows of the last group not read")
        self._given += rows
        group = _Group(self, rows)
        return ColumnSlices(self.type, rows, int(rows * self._row_bytes), group.rows_of)

    def pull(self, most: int) -> pa.Array:
        """The next chunk of the file, at most `most` rows of it (the rest kept for later)."""
        chunk = self._left if self._left is not None else next(self._chunks, None)
        self._left = None
        if chunk is None:
            raise ValueError("the source has fewer rows than were asked for")
        if len(chunk) > most:
            chunk, self._left = chunk.slice(0, most), chunk.slice(most)
        self._pulled += len(chunk)
        return chunk


class _Group:
    """One group's rows of a `SourceSlices`, read in order: the chunks from the earliest row
    still asked for are kept (a piece starts again at its last kept page's first row), and
    all go when the writer drops the group's ColumnSlices (nothing outlives its column)."""

    def __init__(self, source: SourceSlices, rows: int) -> None:
        self._source, self.rows, self.read = source, rows, 0
        self._held: deque[tuple[int, pa.Array]] = deque()  # (first row in the group, chunk)

    def rows_of(self, lo: int, hi: int) -> pa.ChunkedArray:
        while self._held and self._held[0][0] + len(self._held[0][1]) <= lo:
            self._held.popleft()
        while self.read < hi:
            chunk = self._source.pull(self.rows - self.read)
            if len(chunk):
                self._held.append((self.read, chunk))
            self.read += len(chunk)
        parts = []
        for at, chunk in self._held:
            a, b = max(lo, at), min(hi, at + len(chunk))
            if a < b:
                parts.append(chunk.slice(a - at, b - a))
        return pa.chunked_array(parts, self._source.type)


def _row_bytes(path: Path, name: str) -> float:
    """About the Arrow bytes a row of column `name` takes: its Parquet chunks' uncompressed
    sizes over the rows, plus an offset (it only decides whether to write in pieces)."""
    meta = pq.read_metadata(path)
    size = sum(chunk_bytes(meta, g, name) for g in range(meta.num_row_groups))
    return size / max(meta.num_rows, 1) + 4


Column = ArrayColumn | NullColumn | TokensColumn | SourceSlices | PositionSlices


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
                writer.write_group(size, (_taken(col, size) for col in columns.values()))
            writer.close()
        except BaseException:
            writer.abort()
            raise


def _taken(column: Column, rows: int) -> pa.Array | pa.ChunkedArray | ColumnSlices:
    """`column.take(rows)` after handing the heap's free pages back: the writer's scratch
    writes of the column before leave them resident (at 10^6 string ids, trimmed before the
    tokens column, the peak: 265-269 -> 261 MB)."""
    release_free_heap()
    return column.take(rows)
