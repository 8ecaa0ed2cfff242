"""A set of millions of strings in 16 bytes each: 128-bit hashes in sorted numpy runs.

Unique keys (manifest), repeated entity ids (oven-kb) and repeated URLs (filter-urls) need
every earlier row, but a Python `set` costs ~100 bytes and an object per string. Here a
string is two independent 64-bit polars hashes; membership is exact unless two different
strings share all 128 bits (at 10^9 strings: probability ~10^-21). New hashes arrive as a
sorted run; runs are merged LSM-style (the last two while they are of similar size), so adding
n strings costs O(n log n) numpy work and a lookup batch searches O(log n) runs.

With `disk_past=BYTES` (the shard plan's choice) a run larger than BYTES lives in an unlinked
temp file instead (core/sorted_runs.py): read with plain file I/O a segment at a time, never
mapped (mapped pages count as resident), so what stays in memory is the small runs and one
segment per run being read or merged, whatever the number of entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlmdata.core import sorted_runs
from vlmdata.core.sorted_runs import DiskRun, Queries, merge_to_disk, positions

# the stages' `disk_past`: a run past 1 MiB (65,536 hashes) waits in a temp file, so a set
# over every row of a 10^6-row input holds ~1 MiB of runs, not 16 MB (issue 23)
DISK_PAST = 1 << 20

_SEEDS = (0x5EED_0001, 0x9E37_79B9)  # fixed: the same string hashes alike in a run


def hash128(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) uint64 hashes of `values` (polars' string hash under two seeds)."""
    import polars as pl

    s = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)
    return s.hash(_SEEDS[0]).to_numpy(), s.hash(_SEEDS[1]).to_numpy()


Run = tuple[np.ndarray, ...] | DiskRun  # (hi, lo[, value]) sorted by hi, in memory or on disk


class _Runs:
    """Sorted runs of (hi, lo[, value]) merged LSM-style; past `disk_past` bytes a run is a
    DiskRun (None: every run in memory, the default)."""

    DTYPE: np.dtype

    def __init__(self, disk_past: int | None = None, segment_bytes: int | None = None) -> None:
        self._runs: list[Run] = []
        size = self.DTYPE.itemsize
        self._disk_rows = None if disk_past is None else max(1, disk_past // size)
        self._segment_rows = max(1, (segment_bytes or sorted_runs.SEGMENT_BYTES) // size)

    def __len__(self) -> int:
        return sum(_length(r) for r in self._runs)

    @property
    def nbytes(self) -> int:
        """Bytes held in memory (disk runs: their segment index only)."""
        return sum(r.nbytes if isinstance(r, DiskRun) else sum(a.nbytes for a in r)
                   for r in self._runs)  # fmt: skip

    @property
    def disk_bytes(self) -> int:
        return sum(r.n * self.DTYPE.itemsize for r in self._runs if isinstance(r, DiskRun))

    def _on_disk(self, n: int) -> bool:
        return self._disk_rows is not None and n > self._disk_rows

    def _add_run(self, columns: tuple[np.ndarray, ...]) -> None:
        order = np.argsort(columns[0], kind="stable")
        run: Run = tuple(c[order] for c in columns)
        if self._on_disk(len(order)):
            run = DiskRun.of_columns(run, self.DTYPE, self._segment_rows)
        self._runs.append(run)
        while len(self._runs) > 1 and _length(self._runs[-2]) <= 2 * _length(self._runs[-1]):
            b, a = self._runs.pop(), self._runs.pop()
            if self._on_disk(_length(a) + _length(b)):
                self._runs.append(merge_to_disk(a, b, self.DTYPE, self._segment_rows))
            else:
                self._runs.append(_merge_runs(a, b))  # type: ignore[arg-type]

    def _queries(self, hi: np.ndarray, lo: np.ndarray) -> Queries | None:
        """The batch sorted once for the disk runs (None: there are none)."""
        return Queries(hi, lo) if any(isinstance(r, DiskRun) for r in self._runs) else None

    def close(self) -> None:
        """Give back the disk runs' files now (they go with the object anyway)."""
        for run in self._runs:
            if isinstance(run, DiskRun):
                run.close()
        self._runs = []


def _length(run: Run) -> int:
    return run.n if isinstance(run, DiskRun) else len(run[0])


class HashSet(_Runs):
    """Membership of 128-bit hashes; add only hashes not in the set yet (callers check)."""

    DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8")])

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """A boolean per (hi, lo) pair: already in the set."""
        found = np.zeros(len(hi), dtype=bool)
        queries = self._queries(hi, lo)
        for run in self._runs:
            if isinstance(run, DiskRun):
                found |= run.find(queries)[0]
            else:
                found |= positions(run[0], run[1], hi, lo) >= 0
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray) -> None:
        if len(hi) == 0:
            return
        self._add_run((hi, lo))


def _merge_runs(a: tuple[np.ndarray, ...], b: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Two runs sorted by hi (their first array) merged by insertion positions (no argsort):
    each input array is freed once its merged array is made, so the peak is about one array
    more than the runs (~26 bytes a hash for a set, not 32); equal hi keep the older run's
    (a's) first, as a stable sort would. The callers' lists of runs no longer hold a, b."""
    a_list, b_list = list(a), list(b)
    del a, b
    n = len(a_list[0]) + len(b_list[0])
    at = np.searchsorted(a_list[0], b_list[0], side="right")
    at += np.arange(len(b_list[0]), dtype=at.dtype)  # b's places in the merged run
    from_a = np.ones(n, dtype=bool)
    from_a[at] = False
    merged = []
    for i in range(len(a_list)):
        out = np.empty(n, dtype=a_list[i].dtype)
        out[at], out[from_a] = b_list[i], a_list[i]
        a_list[i] = b_list[i] = None  # type: ignore[call-overload]
        merged.append(out)
    return tuple(merged)


class HashMap(_Runs):
    """128-bit hashes -> int64 values in sorted runs, merged like HashSet's (24 bytes an entry):
    what the shard plan keeps per image key or image hash (a sample or image number) instead
    of a dict of strings. Add only hashes not in the map yet (callers check with `get`)."""

    DTYPE = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("v", "<i8")])

    def get(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The value per (hi, lo) pair; -1 where the pair is not in the map."""
        out = np.full(len(hi), -1, dtype=np.int64)
        queries = self._queries(hi, lo)
        for run in self._runs:
            if isinstance(run, DiskRun):
                hit, values = run.find(queries)
                out[hit] = values[hit]
            else:
                pos = positions(run[0], run[1], hi, lo)
                ok = pos >= 0
                out[ok] = run[2][pos[ok]]
        return out

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return self.get(hi, lo) >= 0

    def add(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray) -> None:
        """Map each new pair to its value (values >= 0)."""
        if len(hi) == 0:
            return
        self._add_run((hi, lo, np.asarray(values, dtype=np.int64)))
