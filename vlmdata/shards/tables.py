"""The index and records tables: staged as temp files, published after the shards.

Both follow from the plan alone (offsets come from sizes, records from the gate). The planned
writer stages them once the shards are written and the plan's rows and samples are freed (so
their largest column, held while written, does not come on top of the plan: issue 23), and
commits them at the end, records then the index: readers go by the index, so it is published
last and never points at a missing shard.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.column_spill import SpilledColumn
from vlmdata.core.parquet_pages import ColumnSlices
from vlmdata.core.parquet_splice import DEFAULT_GROUP_ROWS, PIECE_BYTES, SplicedParquetWriter
from vlmdata.core.storage import Location
from vlmdata.shards.output import index_table
from vlmdata.shards.records import RECORDS_FILE, records_table

INDEX_FILE = layout.INDEX


def stage_tables(
    out: Location,
    index_rows: list[dict[str, Any]] | ArrowRows | None,
    records: list[dict[str, Any]] | ArrowRows | None,
    extras: list[str],
    params: dict[str, Any],
) -> dict[str, Path]:
    """Both tables (those not None) written to local temp files for `publish_tables`
    (records first)."""
    staged: dict[str, Path] = {}
    try:
        for rel, rows, make in (
            (RECORDS_FILE, records, lambda r: records_table(r, extras)),
            (INDEX_FILE, index_rows, lambda r: index_table(r, extras, params)),
        ):
            if rows is None:
                continue
            staged[rel] = out.temp_for(rel)
            if isinstance(rows, ArrowRows):
                rows.write_parquet(staged[rel], compression="zstd")
            else:
                pq.write_table(make(rows), staged[rel], compression="zstd")
    except BaseException:
        drop_staged(staged)
        raise
    return staged


def publish_tables(out: Location, staged: dict[str, Path]) -> None:
    """Commit the staged tables in order (records, then the index)."""
    for rel in list(staged):
        out.commit(staged.pop(rel), rel)


def drop_staged(staged: dict[str, Path]) -> None:
    for tmp in staged.values():
        tmp.unlink(missing_ok=True)
    staged.clear()


class ArrowRows:
    """Rows appended one at a time, kept as Arrow columns (a Python dict per row for at most
    CHUNK_ROWS rows): what the planned writer keeps of every record and index row instead
    of a list of dicts (issue 23). A column's chunks beyond MEMORY_BYTES wait in an Arrow IPC
    file of its own; `table()` rebuilds one contiguous array per column a chunk at a time
    (core/column_spill.py's `contiguous`), so the table is held once, when it is written, and
    the Parquet file is byte-identical to one written from `pa.Table.from_pylist` of all the
    rows. `close()` removes what waits on disk."""

    CHUNK_ROWS = 4096
    # a column's chunks held in memory before they go to its file. The index has ~25
    # columns and records ~10, each up to this: 256 KB, not 1 MB, takes ~25 MB off a
    # 10^6-row repack's peak (RESULTS.md, "download with 60-byte captions")
    MEMORY_BYTES = 1 << 18
    GROUP_ROWS = DEFAULT_GROUP_ROWS  # Parquet row groups: pq.write_table's default
    PIECE_BYTES = PIECE_BYTES  # a string column of a group past this goes in pieces

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._rows: list[dict[str, Any]] = []
        self._columns: list[SpilledColumn] | None = None
        self._dir: str | None = None
        self._count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._rows.append(row)  # from_pylist reads the schema's keys (missing: null)
        self._count += 1
        if len(self._rows) >= self.CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self._rows:
            return
        batch = pa.RecordBatch.from_pylist(self._rows, schema=self.schema)
        self._rows = []
        if self._columns is None:
            self._dir = tempfile.mkdtemp(prefix="vlmdata-rows-")
            self._columns = [SpilledColumn(field, Path(self._dir) / f"col{i}.arrows",
                                           self.MEMORY_BYTES)
                             for i, field in enumerate(self.schema)]  # fmt: skip
        for column, array in zip(self._columns, batch.columns, strict=True):
            column.append(array)

    def __len__(self) -> int:
        return self._count

    def table(self) -> pa.Table:
        """Every row as one table (one chunk per column); the rows are handed over: a second
        call gives an empty table."""
        self._flush()
        if self._columns is None:
            return pa.Table.from_pylist([], schema=self.schema)
        try:
            arrays = [column.take() for column in self._columns]
        finally:
            self.close()
        return pa.Table.from_arrays(arrays, schema=self.schema)

    def write_parquet(self, path: str | Path, **options: Any) -> None:
        """The rows as Parquet, the bytes of `pq.write_table(self.table(), path,
        row_group_size=GROUP_ROWS, **options)`, holding one column of one row group at a time
        (core/parquet_splice.py): at 10^6 index rows the whole group would be ~460 MB. The rows
        are handed over, as by `table()`."""
        self._flush()
        if not self._count:
            pq.write_table(self.table(), path, row_group_size=self.GROUP_ROWS, **options)
            return
        try:
            pieces = self.PIECE_BYTES
            with SplicedParquetWriter(path, self.schema, piece_bytes=pieces, **options) as writer:
                for start in range(0, self._count, self.GROUP_ROWS):
                    rows = min(self.GROUP_ROWS, self._count - start)
                    writer.write_group(rows, self._group_columns(start, rows))
        finally:
            self.close()

    def _group_columns(self, start: int, rows: int) -> Iterator[ColumnSlices]:
        """Each column's rows [start, start + rows) as row ranges read in order, one column
        at a time (its size: the column's share for these rows)."""
        for column in self._columns or ():
            share = column.nbytes * rows // max(self._count, 1)
            yield ColumnSlices(column.field.type, rows, share, _offset(column, start))

    def close(self) -> None:
        """Drop the rows and what waits on disk."""
        for column in self._columns or ():
            column.discard()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._columns, self._dir, self._rows = None, None, []


def _offset(column: SpilledColumn, start: int) -> Callable[[int, int], pa.Array]:
    """Rows [a, b) of the group that starts at row `start` of `column`."""
    return lambda a, b: column.read(start + a, start + b)
