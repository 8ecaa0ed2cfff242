"""The shard plan's compact state (issue 23): a hash -> number map in sorted numpy runs
(core/keyset.py HashMap), fixed-size rows on disk (shards/compact.py DiskRows), and pass 1's
image numbering. Oracles: a Python dict / list / the numbering rule written out."""

from __future__ import annotations

import random

import numpy as np

from vlmdata.core.keyset import HashMap, hash128
from vlmdata.shards.compact import DiskRows, value_hashes
from vlmdata.shards.placement import number_images
from vlmdata.shards.planrows import ListRows


def test_hash_map_gives_each_key_its_number_across_merges():
    rng = random.Random(0)
    hm, ref = HashMap(), {}
    for _ in range(40):
        chunk = list(dict.fromkeys(f"k{rng.randrange(3000)}" for _ in range(rng.randrange(1, 200))))
        got = hm.get(*hash128(chunk))
        assert got.tolist() == [ref.get(k, -1) for k in chunk]
        new = [k for k in chunk if k not in ref]
        values = np.arange(len(ref), len(ref) + len(new), dtype=np.int64)
        hm.add(*hash128(new), values)
        ref.update(zip(new, values.tolist(), strict=True))
    assert len(hm) == len(ref) and len(hm._runs) < 12  # merged, not one run per add
    keys = list(ref)
    assert hm.get(*hash128(keys)).tolist() == [ref[k] for k in keys]
    assert hm.contains(*hash128(["never", keys[0]])).tolist() == [False, True]


def test_hash_map_equal_high_halves():
    """Pairs sharing their high 64 bits are told apart by the low ones, in any run."""
    hm = HashMap()
    hi = np.array([7, 7, 7, 1], dtype=np.uint64)
    hm.add(hi[:2], np.array([1, 2], dtype=np.uint64), np.array([10, 20]))
    hm.add(hi[2:], np.array([3, 9], dtype=np.uint64), np.array([30, 40]))
    probe_hi = np.array([7, 7, 7, 7, 1], dtype=np.uint64)
    probe_lo = np.array([3, 2, 1, 4, 9], dtype=np.uint64)
    assert hm.get(probe_hi, probe_lo).tolist() == [30, 20, 10, -1, 40]


def test_hash_map_merge_holds_about_one_array_more_than_its_runs():
    """Two runs of n entries (24 bytes each) merged into one: by insertion positions the
    peak is the runs plus one merged array and the positions (~41 bytes an entry); joining
    and argsorting them held ~80 (a sort's copy of every array on top of the joined ones)."""
    import tracemalloc

    n = 1 << 16
    rng = np.random.default_rng(0)
    hi, lo = rng.integers(0, 1 << 63, size=(2, 2 * n), dtype=np.uint64)
    hm = HashMap()
    hm.add(hi[:n], lo[:n], np.arange(n))
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        hm.add(hi[n:], lo[n:], np.arange(n, 2 * n))  # same size: merged at once
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert len(hm._runs) == 1
    assert hm.get(hi, lo).tolist() == list(range(2 * n))
    assert peak < 56 * 2 * n, peak / (2 * n)


def test_value_hashes_tell_null_text_and_other_values_apart():
    hi, lo = value_hashes([None, "", "None", 5, "5", None])
    pairs = list(zip(hi.tolist(), lo.tolist(), strict=True))
    assert pairs[0] == pairs[5] and len(set(pairs)) == 5


def test_disk_rows_read_back_any_rows(monkeypatch):
    from vlmdata.shards import compact

    monkeypatch.setattr(DiskRows, "BUFFER", 7)  # rows written in several pieces
    monkeypatch.setattr(compact, "GAP", 3)  # and read in several spans
    dtype = np.dtype([("n", "<i8"), ("tag", "u1", (4,))])
    rows = DiskRows(dtype)
    for i in range(100):
        assert rows.append((i * 3, np.frombuffer(bytes([i, i, i, 255]), np.uint8))) == i
    for which in ([], [5], [99, 0, 50, 50, 51, 98], list(range(100))[::-3]):
        got = rows.read(np.array(which, dtype=np.int64))
        assert got["n"].tolist() == [3 * i for i in which]
        assert [bytes(t) for t in got["tag"]] == [bytes([i, i, i, 255]) for i in which]
    rows.close()


def test_image_numbers_follow_first_appearance_across_batches(monkeypatch):
    """Each row's image (image_key, else key) is numbered by its first appearance; an image's
    first and last rows are where it appears first and last."""
    monkeypatch.setattr(ListRows, "ROWS", 3)
    rng = random.Random(4)
    rows = []
    for _ in range(60):
        shared = rng.choice([None, None, "img_a", "img_b", f"img_{rng.randrange(5)}"])
        rows.append({"key": f"k{rng.randrange(40)}", "path": "x.jpg", "texts": ["t"],
                     "image_key": shared})  # fmt: skip
    images = number_images(ListRows(rows), keep_keys=True)
    names = [r["image_key"] if r["image_key"] is not None else r["key"] for r in rows]
    order = list(dict.fromkeys(names))
    every = np.arange(len(order))
    assert images.rows == len(rows) and len(images) == len(order)
    assert images.of(0, len(rows)).tolist() == [order.index(n) for n in names]
    assert images.of(7, 19).tolist() == [order.index(n) for n in names[7:19]]
    assert images.first_rows(every).tolist() == [names.index(n) for n in order]
    assert images.last_rows(every[::-1]).tolist() == [
        len(names) - 1 - names[::-1].index(n) for n in order[::-1]]  # fmt: skip
    assert images.keys.contains(*hash128(order)).all()


def test_rows_by_sample_is_the_stable_sort_of_each_rows_sample():
    """Rows grouped by sample in row order, unplaced rows (-1) left out, and each sample's
    first position, as from a list of rows per sample (the definition)."""
    from vlmdata.shards.sealing import rows_by_sample

    rng = np.random.default_rng(2)
    owner = rng.integers(-1, 9, 300).astype(np.int32)
    n = 11  # samples 9 and 10 have no rows
    rows, bounds = rows_by_sample(owner, n)
    per_sample = [[r for r in range(len(owner)) if owner[r] == s] for s in range(n)]
    assert rows.tolist() == [r for rs in per_sample for r in rs]
    assert bounds.tolist() == [sum(len(rs) for rs in per_sample[:s]) for s in range(n + 1)]
    assert rows.dtype == np.int32
