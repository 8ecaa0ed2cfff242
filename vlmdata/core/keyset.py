"""A set of millions of strings in 16 bytes each: 128-bit hashes in sorted numpy runs.

Unique keys (manifest), repeated entity ids (oven-kb) and repeated URLs (filter-urls) need
every earlier row, but a Python `set` costs ~100 bytes and an object per string. Here a
string is two independent 64-bit polars hashes; membership is exact unless two different
strings share all 128 bits (at 10^9 strings: probability ~10^-21). New hashes arrive as a
sorted run; runs are merged LSM-style (the last two while they are of similar size), so adding
n strings costs O(n log n) numpy work and a lookup batch searches O(log n) runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_SEEDS = (0x5EED_0001, 0x9E37_79B9)  # fixed: the same string hashes alike in a run


def hash128(values: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) uint64 hashes of `values` (polars' string hash under two seeds)."""
    import polars as pl

    s = values if isinstance(values, pl.Series) else pl.Series(values, dtype=pl.String)
    return s.hash(_SEEDS[0]).to_numpy(), s.hash(_SEEDS[1]).to_numpy()


class HashSet:
    """Membership of 128-bit hashes; add only hashes not in the set yet (callers check)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []  # each sorted by hi

    def __len__(self) -> int:
        return sum(len(hi) for hi, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(hi.nbytes + lo.nbytes for hi, lo in self._runs)

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """A boolean per (hi, lo) pair: already in the set."""
        found = np.zeros(len(hi), dtype=bool)
        for run_hi, run_lo in self._runs:
            found |= _in_run(run_hi, run_lo, hi, lo)
        return found

    def add(self, hi: np.ndarray, lo: np.ndarray) -> None:
        if len(hi) == 0:
            return
        order = np.argsort(hi, kind="stable")
        self._runs.append((hi[order], lo[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            self._merge_last_two()

    def _merge_last_two(self) -> None:
        b, a = self._runs.pop(), self._runs.pop()
        self._runs.append(_merge_runs(a, b))  # type: ignore[arg-type]


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


def _in_run(run_hi: np.ndarray, run_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(run_hi, hi)
    ok = idx < len(run_hi)
    at = np.where(ok, idx, 0)
    same_hi = ok & (run_hi[at] == hi)
    found = same_hi & (run_lo[at] == lo)
    for i in np.flatnonzero(same_hi & ~found):  # equal hi, other lo: look at the next equal his
        j = int(idx[i]) + 1
        while j < len(run_hi) and run_hi[j] == hi[i]:
            if run_lo[j] == lo[i]:
                found[i] = True
                break
            j += 1
    return found


def _positions(
    run_hi: np.ndarray, run_lo: np.ndarray, hi: np.ndarray, lo: np.ndarray
) -> np.ndarray:
    """Where each (hi, lo) pair sits in a sorted run; -1 where it is not there."""
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


class HashMap:
    """128-bit hashes -> int64 values in sorted runs, merged like HashSet's (24 bytes an entry):
    what the shard plan keeps per image key or image hash (a sample or image number) instead
    of a dict of strings. Add only hashes not in the map yet (callers check with `get`)."""

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # sorted by hi

    def __len__(self) -> int:
        return sum(len(hi) for hi, _, _ in self._runs)

    @property
    def nbytes(self) -> int:
        return sum(hi.nbytes + lo.nbytes + v.nbytes for hi, lo, v in self._runs)

    def get(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        """The value per (hi, lo) pair; -1 where the pair is not in the map."""
        out = np.full(len(hi), -1, dtype=np.int64)
        for run_hi, run_lo, run_v in self._runs:
            pos = _positions(run_hi, run_lo, hi, lo)
            hit = pos >= 0
            out[hit] = run_v[pos[hit]]
        return out

    def contains(self, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
        return self.get(hi, lo) >= 0

    def add(self, hi: np.ndarray, lo: np.ndarray, values: np.ndarray) -> None:
        """Map each new pair to its value (values >= 0)."""
        if len(hi) == 0:
            return
        order = np.argsort(hi, kind="stable")
        self._runs.append((hi[order], lo[order], np.asarray(values, dtype=np.int64)[order]))
        while len(self._runs) > 1 and len(self._runs[-2][0]) <= 2 * len(self._runs[-1][0]):
            b, a = self._runs.pop(), self._runs.pop()
            self._runs.append(_merge_runs(a, b))
