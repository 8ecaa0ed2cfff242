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
        # one chunk per column: `take` on a chunked table joins the chunks on every call
        self.table = table.combine_chunks()
        self.columns: Columns = tuple(columns_of(table.schema.names))

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
        """The rows numbered `rows`, in that order."""
        if len(rows) == 0:
            return []
        if len(rows) == 1:  # a slice is ~40x cheaper than a take of one row
            taken = self.table.slice(int(rows[0]), 1)
            return [(record, self.columns) for record in records_from_arrow(taken)]
        taken = self.table.take(pa.array(rows, type=pa.int64()))
        return [(record, self.columns) for record in records_from_arrow(taken)]

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
