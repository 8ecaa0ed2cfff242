"""A streaming, atomic Parquet writer: rows (dicts) in bounded memory, a complete file or none.

Used by the manifest (docs/DESIGN.md, contract 1) and by readers' side outputs (entities,
text-only rows).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmdata.core.atomic import temp_path_for
from vlmdata.core.column_spill import SpilledColumn, spill_path
from vlmdata.core.parquet_pages import ColumnSlices
from vlmdata.core.parquet_splice import PIECE_BYTES, SplicedParquetWriter

CHUNK_ROWS = 4096  # dict rows become an Arrow batch this often
# a row group of at most this many Arrow bytes is written in one go, not a column at a time
# (one scratch writer a group instead of one a column: oven-kb's 4,096-row entity groups)
TOGETHER_BYTES = 8 << 20


class RowsWriter:
    """Rows to Parquet, one row group per `batch_rows` rows; the file appears (renamed) on
    `close()` only. Rows wait as Python dicts for at most CHUNK_ROWS rows, then as Arrow
    chunks per column (`column_spill`: on disk past 4 MB a column), and each row group is
    written a column at a time (`parquet_splice`), each column rebuilt as one contiguous array
    only when its turn comes, a big string column a piece at a time (`parquet_pages`): the
    file is byte-identical to writing all `batch_rows` rows at once while memory holds one
    piece of one column of the row group, at write time only.
    """

    PIECE_BYTES = PIECE_BYTES  # a string column past this is written in pieces this big

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        batch_rows: int = 8192,
        empty_group: bool = False,
    ):
        """`empty_group`: with no rows, write one empty row group, as one `pq.write_table` of
        an empty table does (for writers replacing such a call byte for byte)."""
        self.path = Path(path)
        self._empty_group = empty_group
        self.schema = schema
        self._tmp = temp_path_for(self.path)
        self._writer = SplicedParquetWriter(self._tmp, schema, piece_bytes=self.PIECE_BYTES)
        self._rows: list[dict[str, Any]] = []
        self._columns = [SpilledColumn(f, spill_path(self._tmp, j)) for j, f in enumerate(schema)]
        self._buffered = 0  # rows in _columns (never more than batch_rows)
        self._batch_rows = batch_rows
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= CHUNK_ROWS or self._buffered + len(self._rows) >= self._batch_rows:
            self._to_arrow()

    def _to_arrow(self) -> None:
        if self._rows:
            batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
            self._rows = []
            self._add(batch.columns, batch.num_rows)

    def _add(self, arrays: list[pa.Array], rows: int) -> None:
        """Buffer the rows; each time `batch_rows` are buffered, they become a row group."""
        start = 0
        while start < rows:
            take = min(rows - start, self._batch_rows - self._buffered)
            for column, array in zip(self._columns, arrays, strict=True):
                column.append(array.slice(start, take) if take < len(array) else array)
            self._buffered += take
            start += take
            if self._buffered >= self._batch_rows:
                self._flush()

    def write_table(self, table: pa.Table) -> None:
        """Append rows already in the schema's columns; row groups stay `batch_rows` rows."""
        self._to_arrow()
        table = table.select(self.schema.names).cast(self.schema)
        self.count += table.num_rows
        for batch in table.to_batches():
            self._add(batch.columns, batch.num_rows)

    def _flush(self) -> None:
        """Write the buffered rows as one row group, a column at a time (each read back from
        its chunks only when the writer asks for it, and dropped once written)."""
        self._to_arrow()
        if not self._buffered:
            return
        rows, self._buffered = self._buffered, 0
        together = sum(column.nbytes for column in self._columns) <= TOGETHER_BYTES
        self._writer.write_group(rows, self._sources(), together=together)

    def _sources(self) -> Iterator[ColumnSlices]:
        for column in self._columns:
            try:
                yield column.slices()
            finally:
                column.discard()

    def close(self) -> None:
        """Write what is buffered and rename the file into place (on failure: no file)."""
        try:
            self._flush()
            if self._empty_group and self.count == 0:
                self._writer.write_table(self.schema.empty_table())
            self._writer.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file: nothing appears at `path`, even if closing fails (disk full)."""
        try:
            self._writer.abort()
        except OSError:
            pass
        finally:
            for column in self._columns:
                column.discard()
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()
