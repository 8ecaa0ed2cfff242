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

import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.storage import Location
from vlmdata.shards.output import index_table
from vlmdata.shards.records import RECORDS_FILE, records_table

INDEX_FILE = layout.INDEX


def stage_tables(
    out: Location,
    index_rows: list[dict[str, Any]],
    records: list[dict[str, Any]],
    extras: list[str],
    params: dict[str, Any],
) -> dict[str, Path]:
    """Both tables written to local temp files for `publish_tables` (records first)."""
    staged: dict[str, Path] = {}
    try:
        for rel, make in (
            (RECORDS_FILE, lambda: records_table(records, extras)),
            (INDEX_FILE, lambda: index_table(index_rows, extras, params)),
        ):
            staged[rel] = out.temp_for(rel)
            pq.write_table(make(), staged[rel], compression="zstd")
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
