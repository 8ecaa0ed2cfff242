"""Sorted runs of 128-bit hashes (and values) kept in unlinked temp files (issue 23): what
keyset.py's HashSet / HashMap do with a run past their `disk_past` bytes.

A run is fixed-size rows of a structured dtype sorted by `hi`, written once and read with
plain file I/O (`pread` into a buffer, never `mmap`: a mapped file's pages count as the
process's resident memory). In memory stays the `hi` of each segment's first row (8 bytes per
SEGMENT_BYTES). A lookup batch sorts its queries once; each segment that some query may hit
is read into one reused buffer and searched for the queries between its first `hi` and the
next segment's (inclusive at both ends: equal `hi` may cross a segment's edge). Two runs merge
by streaming both a segment at a time into a new file, so no merge holds a whole run.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from vlmdata.core.row_file import RowFile

SEGMENT_BYTES = 2 << 20  # read (lookups) and merged a segment at a time


class DiskRun:
    """One sorted run in an unlinked temp file: gone with its descriptor, even on a kill."""

    def __init__(self, dtype: np.dtype, segment_rows: int) -> None:
        self._file = RowFile(dtype, prefix="vlmdata-run-", suffix=".bin")
        self.dtype, self.segment_rows = self._file.dtype, segment_rows
        self.n = 0
        self._firsts: list[np.ndarray] = []
        self.firsts = np.empty(0, dtype=np.uint64)  # hi of each segment's first row

    @classmethod
    def of_columns(cls, columns: tuple[np.ndarray, ...], dtype: np.dtype, segment_rows: int):
        """A run written from sorted in-memory columns (in the dtype's field order)."""
        run = cls(dtype, segment_rows)
        for block in _column_blocks(columns, run.dtype, segment_rows):
            run.write(block)
        return run.finish()

    @property
    def nbytes(self) -> int:
        return self.firsts.nbytes

    def write(self, block: np.ndarray) -> None:
        """Append rows (sorted after the rows already written)."""
        if not len(block):
            return
        start = self.n
        self._firsts.append(block["hi"][np.arange(-start % self.segment_rows, len(block),
                                                  self.segment_rows)])  # fmt: skip
        self._file.write_at(start, block)
        self.n += len(block)

    def finish(self) -> DiskRun:
        self.firsts = np.concatenate(self._firsts) if self._firsts else self.firsts
        self._firsts = []
        return self

    def _read(self, k: int, buffer: np.ndarray) -> np.ndarray:
        """Segment k, read into `buffer` (a view of it)."""
        rows = min(self.segment_rows, self.n - k * self.segment_rows)
        return self._file.read_into(k * self.segment_rows, buffer[:rows])

    def segments(self) -> Iterator[np.ndarray]:
        """Each segment as a new array (a merge keeps part of one while reading the next)."""
        for k in range(len(self.firsts)):
            rows = min(self.segment_rows, self.n - k * self.segment_rows)
            yield self._read(k, np.empty(rows, dtype=self.dtype))

    def find(self, queries: Queries) -> tuple[np.ndarray, np.ndarray | None]:
        """Per query: found (bool), and its value (-1 where not found) when rows have one."""
        found = np.zeros(queries.n, dtype=bool)
        values = np.full(queries.n, -1, dtype=np.int64) if "v" in self.dtype.names else None
        if not self.n or not queries.n:
            return found, values
        qh, ql, order = queries.hi, queries.lo, queries.order
        starts = np.searchsorted(qh, self.firsts, side="left")
        ends = np.append(np.searchsorted(qh, self.firsts[1:], side="right"), len(qh))
        buffer = np.empty(min(self.segment_rows, self.n), dtype=self.dtype)  # every segment's
        for k in np.flatnonzero(ends > starts).tolist():
            seg = self._read(k, buffer)
            a, b = int(starts[k]), int(ends[k])
            pos = positions(seg["hi"], seg["lo"], qh[a:b], ql[a:b])
            hit = pos >= 0
            which = order[a:b][hit]
            found[which] = True
            if values is not None:
                values[which] = seg["v"][pos[hit]]
        return found, values

    def close(self) -> None:
        self._file.close()


class Queries:
    """A lookup batch sorted by hi once, for every disk run it is looked up in."""

    def __init__(self, hi: np.ndarray, lo: np.ndarray) -> None:
        self.order = np.argsort(hi, kind="stable")
        self.hi, self.lo, self.n = hi[self.order], lo[self.order], len(hi)


def positions(run_hi: np.ndarray, run_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Where each (hi, lo) pair sits in a run sorted by hi; -1 where it is not there."""
    idx = np.searchsorted(run_hi, hi)
    at = np.where(idx < len(run_hi), idx, 0)
    same_hi = (idx < len(run_hi)) & (run_hi[at] == hi)
    pos = np.where(same_hi & (run_lo[at] == lo), at, -1)
    for i in np.flatnonzero(same_hi & (pos < 0)):  # equal hi, other lo: the next equal his
        j = int(idx[i]) + 1
        while j < len(run_hi) and run_hi[j] == hi[i]:
            if run_lo[j] == lo[i]:
                pos[i] = j
                break
            j += 1
    return pos


def _column_blocks(columns: tuple[np.ndarray, ...], dtype: np.dtype, rows: int):
    for a in range(0, len(columns[0]), rows):
        block = np.empty(min(rows, len(columns[0]) - a), dtype=dtype)
        for name, column in zip(dtype.names, columns, strict=True):
            block[name] = column[a : a + rows]
        yield block


def _blocks(run, dtype: np.dtype, rows: int) -> Iterator[np.ndarray]:
    if isinstance(run, DiskRun):
        yield from run.segments()
    else:
        yield from _column_blocks(run, dtype, rows)


def merge_to_disk(a, b, dtype: np.dtype, segment_rows: int) -> DiskRun:
    """Runs a (older) and b (each in memory or a DiskRun) merged into a new DiskRun, a segment
    of each at a time; equal hi keep a's rows first, as keyset's in-memory merge does. A row
    of a may go out once b's rows up to its hi are read (hi <= b's last read), a row of b
    once a's are (hi < a's last read): those are a prefix of the merged order, and one of the
    two blocks is always used up."""
    out = DiskRun(dtype, segment_rows)
    a_blocks, b_blocks = _blocks(a, out.dtype, segment_rows), _blocks(b, out.dtype, segment_rows)
    x, y = next(a_blocks, None), next(b_blocks, None)
    while x is not None and y is not None:
        na = int(np.searchsorted(x["hi"], y["hi"][-1], side="right"))
        nb = int(np.searchsorted(y["hi"], x["hi"][-1], side="left"))
        out.write(_interleave(x[:na], y[:nb]))
        x, y = x[na:], y[nb:]
        if not len(x):
            x = next(a_blocks, None)
        if not len(y):
            y = next(b_blocks, None)
    for rest, blocks in ((x, a_blocks), (y, b_blocks)):
        if rest is not None:
            out.write(rest)
            for block in blocks:
                out.write(block)
    for run in (a, b):
        if isinstance(run, DiskRun):
            run.close()
    return out.finish()


def _interleave(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Two sorted blocks merged by insertion positions, x's first among equal hi."""
    at = np.searchsorted(x["hi"], y["hi"], side="right") + np.arange(len(y))
    out = np.empty(len(x) + len(y), dtype=x.dtype)
    from_x = np.ones(len(out), dtype=bool)
    from_x[at] = False
    out[at], out[from_x] = y, x
    return out
