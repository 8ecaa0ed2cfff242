"""The index and records tables: staged as temp files, published after the shards.

Both follow from the plan alone (offsets come from sizes, records from the gate), so the
planned writer makes them on a thread while the shards are being written (Arrow's encoding
and the file write release the GIL) and only commits them at the end, records then the
index: readers go by the index, so it is published last and never points at a missing shard.
"""

from __future__ import annotations

import shutil
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.column_spill import SpilledColumn
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
            pq.write_table(_table(rows, make), staged[rel], compression="zstd")
    except BaseException:
        drop_staged(staged)
        raise
    return staged


def _table(rows: list[dict[str, Any]] | ArrowRows, make) -> pa.Table:
    return rows.table() if isinstance(rows, ArrowRows) else make(rows)


def publish_tables(out: Location, staged: dict[str, Path]) -> None:
    """Commit the staged tables in order (records, then the index)."""
    for rel in list(staged):
        out.commit(staged.pop(rel), rel)


def drop_staged(staged: dict[str, Path]) -> None:
    for tmp in staged.values():
        tmp.unlink(missing_ok=True)
    staged.clear()


class SideTables:
    """`stage_tables` running on its own thread; `result()` waits, `drop()` cleans up."""

    def __init__(self, out: Location, *args: Any) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="vlmdata-tables")
        self._future: Future = self._pool.submit(stage_tables, out, *args)
        self._pool.shutdown(wait=False)

    def result(self) -> dict[str, Path]:
        return self._future.result()

    def drop(self) -> None:
        """After a failure elsewhere: wait for the thread, then remove what it staged."""
        try:
            drop_staged(self._future.result())
        except BaseException:
            pass  # its own failure already cleaned up; the first error is the one to report


class ArrowRows:
    """Rows appended one at a time, kept as Arrow columns (a Python dict per row for at most
    CHUNK_ROWS rows): what the planned writer keeps of every record and index row instead
    of a list of dicts (issue 23). Each column's chunks wait on disk past 16 MB
    (core/column_spill.py); `table()` rebuilds one contiguous array per column, so the table
    is held once, when it is written, and the Parquet file is byte-identical to one written
    from `pa.Table.from_pylist` of all the rows. `close()` removes what waits on disk."""

    CHUNK_ROWS = 4096

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._rows: list[dict[str, Any]] = []
        self._columns: list[SpilledColumn] | None = None
        self._dir: str | None = None
        self._count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._rows.append({k: row.get(k) for k in self.schema.names})
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
            self._columns = [SpilledColumn(field, Path(self._dir) / f"col{i}.arrows")
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

    def close(self) -> None:
        """Drop the rows and what waits on disk."""
        for column in self._columns or ():
            column.discard()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._columns, self._dir, self._rows = None, None, []
