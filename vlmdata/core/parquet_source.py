"""A Parquet file's columns handed over as `ColumnSlices` cut where `pq.read_table` cuts them.

Appending an earlier stage's rejects file used to be `writer.add_table(pq.read_table(path))`:
the whole file in memory. The bytes the writer then writes depend on where that table's chunks
end (pyarrow restarts its mini-batches, and so its page cuts, at every chunk: parquet_pages).
`pq.read_table` reads through pyarrow's dataset scanner, whose batches are READ_BATCH_ROWS
rows of one row group: its chunks end at every row group's end and every READ_BATCH_ROWS rows
inside one (checked in tests/test_parquet_source.py against pq.read_table itself). Here a row
range of one column is read in batches of about BATCH_BYTES and handed over as a ChunkedArray cut at
those same edges, so the spliced writer writes the same bytes while holding one piece.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.parquet_pages import ColumnSlices

READ_BATCH_ROWS = 131_072  # pyarrow's dataset scanner's default batch_size (pq.read_table)
# bytes read at a time, about: a batch's peak in pyarrow's reader is ~3x its values (its
# builders double), so a fixed row count held 28 MB for 4,096 rows of 2 KB records
BATCH_BYTES = 1 << 20


class ParquetSource:
    """The columns of `schema` in the Parquet file at `path`, by name, each cast to the
    schema's type (as `pq.read_table(path).select(names).cast(schema)` gives them)."""

    def __init__(self, path: str | os.PathLike, schema: pa.Schema) -> None:
        self.path, self.schema = Path(path), schema
        # buffered reads: unbuffered, pyarrow loads a whole column chunk to read a batch
        self.file = pq.ParquetFile(self.path, buffer_size=1 << 20, pre_buffer=False)
        names = self.file.schema_arrow.names
        missing = [name for name in schema.names if name not in names]
        if missing:
            self.file.close()
            raise ValueError(f"{self.path}: no column {', '.join(missing)} (has {names})")
        meta = self.file.metadata
        self._group_rows = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
        self._group_starts = np.cumsum([0, *self._group_rows])
        self.rows = int(self._group_starts[-1])

    def close(self) -> None:
        self.file.close()

    def __enter__(self) -> ParquetSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def batches(self, name: str) -> Iterator[pa.Array]:
        """Column `name` from the first row to the last, a batch at a time."""
        for batch in self._batches(name, 0):
            yield batch.array

    def columns(self, start: int, stop: int) -> Iterator[ColumnSlices]:
        """Rows [start, stop) of every column of the schema, in its order (each read only
        when the writer asks for it)."""
        if not 0 <= start <= stop <= self.rows:
            raise ValueError(f"{self.path}: rows [{start}, {stop}) of {self.rows}")
        for field in self.schema:
            yield self._slices(field, start, stop)

    def _slices(self, field: pa.Field, start: int, stop: int) -> ColumnSlices:
        window = _Window(self._batches(field.name, start))

        def read(a: int, b: int) -> pa.ChunkedArray:
            parts = window.rows(start + a, start + b)
            return pa.chunked_array([_as(p, field.type) for p in parts], field.type)

        return ColumnSlices(field.type, stop - start, self._nbytes(field.name, start, stop), read)

    def _batches(self, name: str, start: int) -> Iterator[_Batch]:
        """The batches of column `name` from the row group holding `start` on."""
        first = int(np.searchsorted(self._group_starts, start, side="right")) - 1
        for g in range(max(first, 0), len(self._group_rows)):
            begin = at = int(self._group_starts[g])
            rows = self._batch_rows(g, name)
            batches = self.file.iter_batches(
                rows, row_groups=[g], columns=[name], use_threads=False
            )
            for batch in batches:
                span = (g, (at - begin) // READ_BATCH_ROWS)
                if (at + batch.num_rows - 1 - begin) // READ_BATCH_ROWS != span[1]:
                    raise RuntimeError(f"{self.path}: a batch of {batch.num_rows} rows at row "
                                       f"{at} crosses a span of {READ_BATCH_ROWS}")  # fmt: skip
                yield _Batch(at, span, batch.column(0))
                at += batch.num_rows

    def _batch_rows(self, group: int, name: str) -> int:
        """Rows of about BATCH_BYTES in this column chunk: a power of two, so that batches
        from the group's start never cross a READ_BATCH_ROWS edge."""
        per_row = max(self._chunk_bytes(group, name) / max(self._group_rows[group], 1), 1.0)
        rows = max(int(BATCH_BYTES / per_row), 1)
        return min(1 << (rows.bit_length() - 1), READ_BATCH_ROWS)

    def _nbytes(self, name: str, start: int, stop: int) -> int:
        """About the Arrow bytes of rows [start, stop): the column chunks' uncompressed sizes,
        pro rata (it only decides whether the writer goes a piece at a time)."""
        total = 0.0
        for g, rows in enumerate(self._group_rows):
            lo, hi = int(self._group_starts[g]), int(self._group_starts[g + 1])
            overlap = min(hi, stop) - max(lo, start)
            if overlap > 0:
                total += self._chunk_bytes(g, name) * overlap / rows
        return int(total) + 4 * (stop - start)

    def _chunk_bytes(self, group: int, name: str) -> int:
        return chunk_bytes(self.file.metadata, group, name)


def chunk_bytes(meta: pq.FileMetaData, group: int, name: str) -> int:
    """Uncompressed bytes of column `name` in row group `group`: its Parquet leaves (one for
    a flat or list column), found by path, not by the Arrow field's index."""
    rg = meta.row_group(group)
    return sum(rg.column(i).total_uncompressed_size for i in range(rg.num_columns)
               if rg.column(i).path_in_schema.split(".")[0] == name)  # fmt: skip


@dataclass
class _Batch:
    at: int  # its first row in the file
    span: tuple[int, int]  # (row group, READ_BATCH_ROWS span of it): pq.read_table's chunk
    array: pa.Array

    @property
    def end(self) -> int:
        return self.at + len(self.array)


class _Window:
    """Batches of one column in order, kept from the earliest row still asked for: ranges
    come in order of their start (ColumnSlices), so rows before one are never read again."""

    def __init__(self, batches: Iterator[_Batch]) -> None:
        self._batches = batches
        self._held: deque[_Batch] = deque()

    def rows(self, start: int, stop: int) -> list[pa.Array]:
        """Rows [start, stop) as arrays, one per chunk of pq.read_table's that they touch.
        The batches held are merged into one array per chunk first (then freed), so the
        rows are held once while the writer works on them."""
        if start >= stop:
            return []
        while self._held and self._held[0].end <= start:
            self._held.popleft()
        while not self._held or self._held[-1].end < stop:
            try:
                batch = next(self._batches)
            except StopIteration:
                raise ValueError(f"rows [{start}, {stop}) past the file's end") from None
            if batch.end > start:  # a range may start deep in a row group: skip to it
                self._held.append(batch)
        first = self._held[0]
        if first.at < start:  # only its rows from `start` are kept (and copied when merged)
            first.array, first.at = first.array.slice(start - first.at), start
        self._merge()
        return [b.array.slice(0, min(stop, b.end) - b.at) for b in self._held if b.at < stop]

    def _merge(self) -> None:
        """One batch per pq.read_table chunk among those held."""
        merged: deque[_Batch] = deque()
        while self._held:
            run = [self._held.popleft()]
            while self._held and self._held[0].span == run[0].span:
                run.append(self._held.popleft())
            merged.append(_Batch(run[0].at, run[0].span, _concat([b.array for b in run])))
            del run
        self._held = merged


def _as(array: pa.Array, type_: pa.DataType) -> pa.Array:
    """`array` cast to `type_` if it is not of it (`cast` imports pyarrow.compute: ~9 MB
    of RSS that a process writing no piece does not need)."""
    return array if array.type == type_ else array.cast(type_)


def _concat(parts: list[pa.Array]) -> pa.Array:
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
