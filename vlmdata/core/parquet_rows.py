"""A streaming, atomic Parquet writer: rows (dicts) in bounded memory, a complete file or none.

Used by the manifest (docs/DESIGN.md, contract 1) and by readers' side outputs (entities,
text-only rows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.atomic import temp_path_for

CHUNK_ROWS = 4096  # dict rows become an Arrow batch this often (a multiple of 1024, see below)


class RowsWriter:
    """Rows to Parquet, one row group per `batch_rows` rows; the file appears (renamed) on
    `close()` only. Rows wait as Python dicts for at most CHUNK_ROWS rows, then as Arrow
    batches (compact: a 1.6 KB LLaVA conversation is 1.6 KB, not a dict of Python objects);
    a row group is written from their concatenation (one chunk), so the file is byte-identical
    to writing all `batch_rows` dicts at once.
    """

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
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[list[pa.Array]] = [[] for _ in schema.names]  # Arrow chunks
        self._buffered = 0  # rows in _columns
        self._batch_rows = batch_rows
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= CHUNK_ROWS:
            self._to_arrow()
        if self._buffered + len(self._rows) >= self._batch_rows:
            self._flush()

    def _to_arrow(self) -> None:
        if self._rows:
            batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
            self._add(batch.columns, batch.num_rows)
            self._rows = []

    def _add(self, arrays: list[pa.Array], rows: int) -> None:
        for chunks, array in zip(self._columns, arrays, strict=True):
            chunks.append(array)
        self._buffered += rows

    def write_table(self, table: pa.Table) -> None:
        """Append rows already in the schema's columns; row groups stay `batch_rows` rows."""
        self._to_arrow()
        table = table.select(self.schema.names).cast(self.schema)
        for batch in table.to_batches():
            self._add(batch.columns, batch.num_rows)
        self.count += table.num_rows
        if self._buffered >= self._batch_rows:
            self._flush(whole_groups=True)

    def _flush(self, whole_groups: bool = False) -> None:
        """Write the buffered rows as row groups of `batch_rows` (the tail too unless
        `whole_groups`), each from one contiguous chunk (concatenated a column at a time, so
        the buffer is held about once, not twice)."""
        self._to_arrow()
        if not self._buffered:
            return
        arrays = []
        for j, field in enumerate(self.schema):
            chunks, self._columns[j] = self._columns[j], []
            arrays.append(pa.concat_arrays(chunks) if chunks else pa.array([], field.type))
            del chunks
        table = pa.Table.from_arrays(arrays, schema=self.schema)
        del arrays
        self._buffered = 0
        while table.num_rows >= self._batch_rows or (table.num_rows and not whole_groups):
            self._writer.write_table(table.slice(0, self._batch_rows))
            table = table.slice(self._batch_rows)
        if table.num_rows:  # copied, so the written groups' buffers are freed
            tail = [pa.concat_arrays(c.chunks) for c in table.columns]
            self._add([pa.concat_arrays([a, a.slice(0, 0)]) for a in tail], table.num_rows)

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
            self._writer.close()
        except OSError:
            pass
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()
