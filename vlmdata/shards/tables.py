"""The index and records tables: staged as temp files, published after the shards.

Both follow from the plan alone (offsets come from sizes, records from the gate), so the
planned writer makes them on a thread while the shards are being written (Arrow's encoding
and the file write release the GIL) and only commits them at the end, records then the
index: readers go by the index, so it is published last and never points at a missing shard.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.storage import Location
from vlmdata.shards.output import index_table
from vlmdata.shards.records import RECORDS_FILE, records_table

INDEX_FILE = layout.INDEX


def stage_tables(
    out: Location,
    index_rows: list[dict[str, Any]] | ArrowRows,
    records: list[dict[str, Any]] | ArrowRows,
    extras: list[str],
    params: dict[str, Any],
) -> dict[str, Path]:
    """Both tables written to local temp files for `publish_tables` (records first)."""
    staged: dict[str, Path] = {}
    try:
        for rel, make in (
            (RECORDS_FILE, lambda: _table(records, lambda r: records_table(r, extras))),
            (INDEX_FILE, lambda: _table(index_rows, lambda r: index_table(r, extras, params))),
        ):
            staged[rel] = out.temp_for(rel)
            pq.write_table(make(), staged[rel], compression="zstd")
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
    """Rows appended one at a time, held as Arrow record batches (a Python dict per row for at
    most CHUNK_ROWS rows): what the planned writer keeps of every record and index row instead
    of a list of dicts (issue 23). `table()` is one chunk per column, so the Parquet file is
    byte-identical to one written from `pa.Table.from_pylist` of all the rows."""

    CHUNK_ROWS = 4096

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self._rows: list[dict[str, Any]] = []
        self._batches: list[pa.RecordBatch] = []
        self._count = 0

    def append(self, row: dict[str, Any]) -> None:
        self._rows.append({k: row.get(k) for k in self.schema.names})
        self._count += 1
        if len(self._rows) >= self.CHUNK_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._batches.append(pa.RecordBatch.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def __len__(self) -> int:
        return self._count

    def column(self, name: str) -> pa.ChunkedArray:
        self._flush()
        return self.table().column(name)

    def table(self) -> pa.Table:
        self._flush()
        if not self._batches:
            return pa.Table.from_pylist([], schema=self.schema)
        table = pa.Table.from_batches(self._batches, schema=self.schema).combine_chunks()
        self._batches = table.to_batches()  # held once, not as chunks and as their copy
        return table
