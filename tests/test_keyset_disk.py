"""HashSet / HashMap with their large runs on disk (core/sorted_runs.py, issue 23): the same
answers as the in-memory structures and as a Python set / dict, and memory that does not grow
with the entries. Segments of a few rows force equal `hi` values across segment edges and
merges that stream many blocks; hi drawn from a few values makes pairs that share a half."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from vlmdata.core.keyset import HashMap, HashSet
from vlmdata.core.sorted_runs import DiskRun


def pairs(rng, n: int, his: int) -> tuple[np.ndarray, np.ndarray]:
    """n pairs whose hi takes `his` values (many equal hi) and whose lo takes few too (the
    same lo under another hi: pairs that look alike by either half)."""
    hi = rng.integers(0, his, n, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    lo = rng.integers(0, 40, n, dtype=np.uint64)
    return hi, lo


def as_pairs(hi: np.ndarray, lo: np.ndarray) -> list[tuple[int, int]]:
    return list(zip(hi.tolist(), lo.tolist(), strict=True))


def columns(pairs_: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    both = np.array(pairs_, dtype=np.uint64).reshape(-1, 2)
    return np.ascontiguousarray(both[:, 0]), np.ascontiguousarray(both[:, 1])


def disk_runs(s) -> int:
    return sum(isinstance(r, DiskRun) for r in s._runs)


@pytest.mark.parametrize("seg_bytes", [16 * 3, 16 * 7, 1 << 12])
def test_disk_set_answers_like_memory_and_a_python_set(seg_bytes):
    rng = np.random.default_rng(seg_bytes)
    disk, memory, ref = HashSet(disk_past=16 * 20, segment_bytes=seg_bytes), HashSet(), set()
    for batch in range(60):
        hi, lo = pairs(rng, int(rng.integers(1, 120)), his=30 if batch % 2 else 400)
        batch_pairs = as_pairs(hi, lo)
        want = [p in ref for p in batch_pairs]
        assert disk.contains(hi, lo).tolist() == want
        assert memory.contains(hi, lo).tolist() == want
        new = list(dict.fromkeys(p for p in batch_pairs if p not in ref))
        nh, nl = columns(new)
        disk.add(nh, nl)
        memory.add(nh, nl)
        ref.update(new)
    assert disk_runs(disk) >= 1 and len(disk) == len(memory) == len(ref)
    hi, lo = columns(sorted(ref))
    assert disk.contains(hi, lo).all()
    assert not disk.contains(hi, lo + np.uint64(1000)).any()


@pytest.mark.parametrize("seg_bytes", [24 * 2, 24 * 5, 1 << 12])
def test_disk_map_answers_like_memory_and_a_python_dict(seg_bytes):
    rng = np.random.default_rng(seg_bytes + 1)
    disk, memory, ref = HashMap(disk_past=24 * 16, segment_bytes=seg_bytes), HashMap(), {}
    for batch in range(60):
        hi, lo = pairs(rng, int(rng.integers(1, 150)), his=25 if batch % 3 else 500)
        batch_pairs = as_pairs(hi, lo)
        want = [ref.get(p, -1) for p in batch_pairs]
        assert disk.get(hi, lo).tolist() == want
        assert memory.get(hi, lo).tolist() == want
        new = list(dict.fromkeys(p for p in batch_pairs if p not in ref))
        values = np.arange(len(ref), len(ref) + len(new), dtype=np.int64) * 7
        nh, nl = columns(new)
        disk.add(nh, nl, values)
        memory.add(nh, nl, values)
        ref.update(zip(new, values.tolist(), strict=True))
    assert disk_runs(disk) >= 1 and len(disk) == len(ref)
    keys = list(ref)
    hi, lo = columns(keys)
    assert disk.get(hi, lo).tolist() == [ref[k] for k in keys]
    assert disk.contains(hi, lo).all()


def test_disk_runs_stay_sorted_and_hold_what_was_added():
    """After streamed merges a disk run is sorted by hi and holds exactly the pairs added,
    equal hi in the order the in-memory merge gives them (older run first)."""
    rng = np.random.default_rng(3)
    disk, memory = HashMap(disk_past=24 * 8, segment_bytes=24 * 3), HashMap()
    n = 0
    for size in [5, 3, 90, 1, 64, 64, 200, 7, 33, 300]:
        hi = rng.integers(0, 12, size, dtype=np.uint64)  # many equal hi across segments
        lo = np.arange(n, n + size, dtype=np.uint64)  # unique pairs
        disk.add(hi, lo, lo.astype(np.int64))
        memory.add(hi, lo, lo.astype(np.int64))
        n += size
    assert [len(r[0]) if isinstance(r, tuple) else r.n for r in memory._runs] == [
        len(r[0]) if isinstance(r, tuple) else r.n for r in disk._runs]  # fmt: skip
    for d, m in zip(disk._runs, memory._runs, strict=True):
        if isinstance(d, DiskRun):
            rows = np.concatenate(list(d.segments()))
            assert rows["hi"].tolist() == m[0].tolist()
            assert rows["lo"].tolist() == m[1].tolist() and rows["v"].tolist() == m[2].tolist()
    assert disk_runs(disk) >= 1


def test_disk_set_memory_does_not_grow_with_the_entries():
    """Traced peak of adding and looking up n and 4n entries in 4,096-entry batches: with
    the runs on disk past 64 KiB it stays put; in memory it grows by >= 16 bytes an entry."""

    def peak(n: int, **kw) -> int:
        rng = np.random.default_rng(n)
        gc.collect()
        tracemalloc.start()
        try:
            s = HashSet(**kw)
            for _ in range(n // 4096):
                hi, lo = rng.integers(0, 2**63, (2, 4096), dtype=np.uint64)
                assert not s.contains(hi, lo).any()
                s.add(hi, lo)
            assert len(s) == n
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    n = 1 << 15
    disk = dict(disk_past=1 << 16, segment_bytes=1 << 14)
    one, four = peak(n, **disk), peak(4 * n, **disk)
    assert four - one < 2 * 3 * n, (one, four)  # < 2 bytes per added entry
    one_m, four_m = peak(n), peak(4 * n)
    assert four_m - one_m > 16 * 3 * n, (one_m, four_m)
