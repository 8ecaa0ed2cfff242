"""The rows a shard plan is made of, read in batches and re-read by row number.

The planned writer reads its rows several times (image keys; placement; every sample's records
for KEY.json; first records for the index and the jobs) and never holds them all as Python
objects (issue 23): a manifest is held as its Arrow table and turned into Records a batch at a
time (`ManifestRecords`; a manifest file is not even held as a table: `SpooledManifest`);
download's row lists are wrapped as they are (`ListRows`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import check_manifest_schema
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


def image_ref(refs: Any, row: int, record: Any) -> Any:
    """Where the image source finds row `row`'s image: `refs[row]`; with no refs the
    record's `path`; refs that make it from the row's Record (`of_record`, a download's
    RawRefs: raw shard + the record's key) hold no per-row object for it."""
    if refs is None:
        return record.path
    of_record = getattr(refs, "of_record", None)
    return refs[row] if of_record is None else of_record(row, record)


class ManifestRecords:
    """A manifest table's rows as (Record, columns) pairs, ROWS at a time, each time it is
    iterated, or by row numbers (`take`): the planned writer never holds them all (issue 23)."""

    ROWS = 8192

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.schema = table.schema
        self.columns: Columns = tuple(columns_of(table.schema.names))
        self._pieces: list[pa.RecordBatch] | None = None  # the table's chunks, for `take`
        self._starts = np.zeros(1, dtype=np.int64)

    def __len__(self) -> int:
        return self.table.num_rows

    def __iter__(self) -> Iterator[Placing]:
        for batch in self.batches():
            yield from batch

    def close(self) -> None:
        """Let go of what the rows are read from (nothing to do for a table)."""

    def _row_batches(self) -> Iterator[pa.RecordBatch | pa.Table]:
        """The rows in order, ROWS at a time."""
        return iter(self.table.to_batches(max_chunksize=self.ROWS))

    def arrow_slices(self, n: int) -> Iterator[pa.Table]:
        """The rows in order as tables of exactly `n` rows (the last: the rest), for the
        partitioned plan, which numbers rows by slice."""
        for a in range(0, self.table.num_rows, n):
            yield self.table.slice(a, n)

    def _piece_starts(self) -> np.ndarray:
        """The first row of each piece `take` reads from, then the row count."""
        if self._pieces is None:
            self._pieces = [b for b in self.table.to_batches() if b.num_rows]
            sizes = [b.num_rows for b in self._pieces]
            self._starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        return self._starts

    def _piece(self, p: int) -> pa.RecordBatch:
        assert self._pieces is not None
        return self._pieces[p]

    def batches(self) -> Iterator[list[Placing]]:
        columns = self.columns
        for batch in self._row_batches():
            yield [(record, columns) for record in records_from_arrow(batch)]

    def take(self, rows: np.ndarray) -> list[Placing]:
        """The rows numbered `rows`, in that order. Taken from each chunk of the table on its
        own: a take on the chunked table joins its chunks on every call (~35 ms at 10^6
        rows), and joining them once would hold the manifest twice."""
        starts = self._piece_starts()
        rows = np.asarray(rows, dtype=np.int64)
        piece = np.searchsorted(starts, rows, side="right") - 1
        order = np.argsort(piece, kind="stable")
        out: list[Placing | None] = [None] * len(rows)
        bounds = np.searchsorted(piece[order], np.arange(len(starts)))
        for p in np.flatnonzero(np.diff(bounds)).tolist():
            at = order[bounds[p] : bounds[p + 1]]
            local = rows[at] - starts[p]
            batch = self._piece(p)
            part = batch.slice(int(local[0]), 1) if len(at) == 1 else batch.take(local)
            for i, record in zip(at.tolist(), records_from_arrow(part), strict=True):
                out[i] = (record, self.columns)
        return out  # type: ignore[return-value]

    def image_key_batches(self) -> Iterator[list[Any]]:
        """Each row's image key (image_key, else key), ROWS at a time, read from one or two
        columns (no Record is made)."""
        for batch in self._row_batches():
            yield self._image_keys(batch)

    def _image_keys(self, batch: pa.RecordBatch | pa.Table) -> list[Any]:
        names = self.schema.names
        keys = batch.column("key").to_pylist() if "key" in names else [None] * batch.num_rows
        if "image_key" not in names:
            return keys
        return list(map(stored_under, keys, batch.column("image_key").to_pylist()))

    def image_refs(self) -> Iterator[tuple[Any, Any]]:
        """(image key, path) per row."""
        names = self.schema.names
        for batch in self._row_batches():
            keys = self._image_keys(batch)
            paths = batch.column("path").to_pylist() if "path" in names else [None] * len(keys)
            yield from zip(keys, paths, strict=True)


class SpooledManifest(ManifestRecords):
    """A manifest file's rows read like ManifestRecords without holding the table: copied once
    into an unnamed temp Arrow IPC file of PIECE_ROWS-row batches, read back a piece at a time
    (issue 23). At 10^6 rows the table is ~150 MB of Arrow and `pq.read_table` leaves ~300 MB
    resident; the copy streams (a column page at a time) and reading back holds one batch.
    Pieces are small so a single row (a duplicate's first record) costs one short read."""

    PIECE_ROWS = 1024

    def __init__(self, path: str | os.PathLike) -> None:
        fd, tmp = tempfile.mkstemp(prefix="vlmdata-manifest-", suffix=".arrows")
        os.unlink(tmp)  # read by this process only: gone with its descriptor, even on a kill
        self._file = os.fdopen(fd, "w+b")
        self._reader: ipc.RecordBatchFileReader | None = None
        try:
            sizes = self._spool(path)
        except BaseException:
            self.close()
            raise
        self._starts = np.concatenate(([0], np.cumsum(sizes, dtype=np.int64)))
        self._reader = ipc.open_file(pa.PythonFile(self._file, mode="r"))

    def _spool(self, path: str | os.PathLike) -> list[int]:
        """Copy the file's rows into the spool; each piece's row count."""
        sizes: list[int] = []
        # pages streamed, not chunks; no pre-buffering: it reads a row group's column chunks
        # whole through Arrow's process-default pool (mimalloc), whose pages stayed resident
        # (10^6 rows: 165 -> 137 MB after the copy, same CPU)
        with pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False) as file:
            self.schema = file.schema_arrow
            self.columns = tuple(columns_of(self.schema.names))
            with ipc.new_file(pa.PythonFile(self._file, mode="w"), self.schema) as sink:
                for batch in _read_batches(file, self.PIECE_ROWS, path):
                    sink.write_batch(batch)
                    sizes.append(batch.num_rows)
        return sizes

    def __len__(self) -> int:
        return int(self._starts[-1])

    def close(self) -> None:
        self._reader = None
        self._file.close()

    def _piece_starts(self) -> np.ndarray:
        return self._starts

    def _piece(self, p: int) -> pa.RecordBatch:
        if self._reader is None:
            raise ValueError("the manifest's rows were closed")
        return self._reader.get_batch(p)

    def _row_batches(self) -> Iterator[pa.Table]:
        return self.arrow_slices(self.ROWS)

    def arrow_slices(self, n: int) -> Iterator[pa.Table]:
        pieces = (self._piece(p) for p in range(len(self._starts) - 1))
        return exact_slices(pieces, n, self.schema)


def exact_slices(batches: Iterable[pa.RecordBatch], n: int, schema: pa.Schema
                 ) -> Iterator[pa.Table]:  # fmt: skip
    """The batches' rows as tables of exactly `n` rows (the last: the rest), whatever the
    batches' sizes: the partitioned plan numbers rows by slice."""
    held: list[pa.RecordBatch] = []
    count = 0
    for batch in batches:
        held.append(batch)
        count += batch.num_rows
        while count >= n:
            joined = pa.Table.from_batches(held, schema)
            yield joined.slice(0, n)
            rest = joined.slice(n)
            held, count = rest.to_batches(), rest.num_rows
    if count:
        yield pa.Table.from_batches(held, schema)


def manifest_schema(path: str | os.PathLike) -> pa.Schema:
    """A manifest file's schema, checked (contract 1); unreadable or wrong is a DataError."""
    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet manifest ({e})", file=str(path)) from None
    check_manifest_schema(schema, ("key", "path", "texts"), path)
    return schema


@dataclass(frozen=True)
class ManifestFile:
    """A manifest read from its Parquet file a slice at a time, never held whole (the
    partitioned plan's input; download's URL and fetched rows)."""

    path: str
    num_rows: int
    columns: tuple[str, ...]

    @classmethod
    def open(cls, path: str | os.PathLike) -> ManifestFile:
        """The manifest at `path`, its schema checked as `write_shards` checks a manifest's."""
        schema = manifest_schema(path)
        rows = pq.ParquetFile(path).metadata.num_rows
        return cls(str(path), rows, tuple(columns_of(schema.names)))

    def __len__(self) -> int:
        return self.num_rows

    def slices(self, rows: int) -> Iterator[pa.Table]:
        """The rows `rows` at a time (the last slice shorter), across row groups."""
        f = pq.ParquetFile(self.path)
        return exact_slices(_read_batches(f, rows, self.path), rows, f.schema_arrow)


def _read_batches(file: pq.ParquetFile, rows: int, path: Any) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches; a file that cannot be read is a DataError naming it."""
    batches = file.iter_batches(rows, use_threads=False)
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except (pa.ArrowInvalid, OSError) as e:
            raise DataError(f"not a readable Parquet manifest ({e})", file=str(path)) from None
        yield batch


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
    if isinstance(rows, ManifestRecords | ListRows):  # SpooledManifest too
        return rows
    return ListRows(rows if isinstance(rows, Sequence) else list(rows))
