"""The rows a shard plan is made of, read in batches and re-read by row number.

The planned writer reads its rows several times (image keys; placement; every sample's records
for KEY.json; first records for the index and the jobs) and never holds them all as Python
objects (issue 23): a manifest is held as its Arrow table and turned into Records a batch at a
time (`ManifestRecords`); download's row lists are wrapped as they are (`ListRows`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from vlmdata.core.record import Record, columns_of, records_from_arrow, stored_under

Columns = tuple[str, ...]  # the manifest columns a record was read with (KEY.json's fields)
Placing = tuple[Record, Columns]  # a record and the manifest columns it was read with

_COLUMNS: dict[Columns, Columns] = {}  # one tuple object per set of columns seen


def placing(row: Mapping[str, Any]) -> Placing:
    """A manifest row dict as the gate takes it: its Record and its columns (a tuple shared
    by every row with the same columns)."""
    columns = tuple(columns_of(row))
    return Record.from_row(row), _COLUMNS.setdefault(columns, columns)


def placings(rows: Iterable[Placing | Mapping[str, Any]]) -> Iterator[Placing]:
    """(Record, columns) per input row: pairs as they come, row dicts made Records once."""
    for row in rows:
        yield row if isinstance(row, tuple) else placing(row)


class ManifestRecords:
    """A manifest table's rows as (Record, columns) pairs, ROWS at a time, each time it is
    iterated, or by row numbers (`take`): the planned writer never holds them all (issue 23)."""

    ROWS = 8192

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.columns: Columns = tuple(columns_of(table.schema.names))
        self._pieces: list[pa.RecordBatch] | None = None  # the table's chunks, for `take`
        self._starts = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[Placing]:
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[Placing]]:
        columns = self.columns
        for batch in self.table.to_batches(max_chunksize=self.ROWS):
            yield [(record, columns) for record in records_from_arrow(batch)]

    def take(self, rows: np.ndarray) -> list[Placing]:
        """The rows numbered `rows`, in that order. Taken from each chunk of the table on its
        own: a take on the chunked table joins its chunks on every call (~35 ms at 10^6
        rows), and joining them once would hold the manifest twice."""
        if self._pieces is None:
            self._pieces = [b for b in self.table.to_batches() if b.num_rows]
            sizes = [b.num_rows for b in self._pieces]
            self._starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        rows = np.asarray(rows, dtype=np.int64)
        piece = np.searchsorted(self._starts, rows, side="right") - 1
        order = np.argsort(piece, kind="stable")
        out: list[Placing | None] = [None] * len(rows)
        bounds = np.searchsorted(piece[order], np.arange(len(self._pieces) + 1))
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            at = order[bounds[p] : bounds[p + 1]]
            local = rows[at] - self._starts[p]
            batch = self._pieces[p]
            part = batch.slice(int(local[0]), 1) if len(at) == 1 else batch.take(local)
            for i, record in zip(at.tolist(), records_from_arrow(part), strict=True):
                out[i] = (record, self.columns)
        return out  # type: ignore[return-value]

    def image_key_batches(self) -> Iterator[list[Any]]:
        """Each row's image key (image_key, else key), ROWS at a time, read from one or two
        columns (no Record is made)."""
        names = self.table.schema.names
        for batch in self.table.to_batches(max_chunksize=self.ROWS):
            keys = batch.column("key").to_pylist() if "key" in names else [None] * batch.num_rows
            if "image_key" not in names:
                yield keys
            else:
                yield list(map(stored_under, keys, batch.column("image_key").to_pylist()))

    def image_refs(self) -> Iterator[tuple[Any, Any]]:
        """(image key, path) per row."""
        names = self.table.schema.names
        for batch, keys in zip(
            self.table.to_batches(max_chunksize=self.ROWS), self.image_key_batches(), strict=True
        ):
            paths = batch.column("path").to_pylist() if "path" in names else [None] * len(keys)
            yield from zip(keys, paths, strict=True)


class ListRows:
    """Rows given as a list (download's manifest row dicts, or Placings), read like a manifest."""

    ROWS = 8192

    def __init__(self, rows: Sequence[Placing | Mapping[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Placing]:
        return placings(self.rows)

    def batches(self) -> Iterator[list[Placing]]:
        for i in range(0, len(self.rows), self.ROWS):
            yield list(placings(self.rows[i : i + self.ROWS]))

    def take(self, rows: np.ndarray) -> list[Placing]:
        return list(placings(self.rows[i] for i in rows.tolist()))

    def image_key_batches(self) -> Iterator[list[Any]]:
        for batch in self.batches():
            yield [record.stored_under for record, _ in batch]


def plan_rows(rows: Iterable[Placing | Mapping[str, Any]]) -> ManifestRecords | ListRows:
    """Rows as the planner reads them (a list is kept as it is, other iterables listed)."""
    if isinstance(rows, ManifestRecords | ListRows):
        return rows
    return ListRows(rows if isinstance(rows, Sequence) else list(rows))
