"""The planned writer places rows a window at a time with hashes of what earlier windows
decided (vlmdata/shards/placement.py, issue 23). Every rule of group.py's module doc must come
out the same when the row that decides it is windows away: expected outcomes are written from
those rules, then the run is repeated with one-row windows (and check results let go, so they
are made again) and must give the same files byte for byte."""

from __future__ import annotations

import polars as pl
import pytest

from tests.shards.conftest import image_bytes, write_manifest
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.shards import ShardReader, placement, plan, sealing, write_shards, writer


def rec(key, path, source="cc3m", image_key=None, texts=None):
    return {"key": key, "source": source, "split": "train", "path": path,
            "texts": [f"text of {key}"] if texts is None else texts,
            "image_key": image_key}  # fmt: skip


ROWS = [
    rec("k1", "a.jpg"),  # 1: opens k1
    rec("k2", "b.jpg", texts=[]),  # 2: empty_text; image key k2 checked, not stored
    rec("k3", "broken.jpg"),  # 3: its image fails the check
    rec("k4", "copy_of_a.jpg"),  # 4: a's bytes, cc3m: duplicate_image of k1
    rec("k5", "copy_of_a.jpg", source="llava"),  # 5: a's bytes, llava: joins k1
    rec("k6", "b.jpg", image_key="k2"),  # 6: k2 not stored yet: opens k2
    rec("k7", "b.jpg", image_key="k1"),  # 7: k1 is a.jpg: image_key_conflict
    rec("k1", "b.jpg"),  # 8: duplicate_key
    rec("k9", "a.jpg", image_key="k1"),  # 9: joins k1
    rec("k10", "a.jpg", image_key="k3"),  # 10: image key k3's image (broken.jpg) failed
]


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    (root / "a.jpg").write_bytes(image_bytes(1))
    (root / "copy_of_a.jpg").write_bytes(image_bytes(1))
    (root / "b.jpg").write_bytes(image_bytes(2))
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def tiny_windows(monkeypatch, pending: int) -> None:
    monkeypatch.setattr(writer._ManifestRows, "ROWS", 1)
    monkeypatch.setattr(placement.Placer, "WINDOW", 1)
    monkeypatch.setattr(placement.Placer, "PENDING", pending)
    monkeypatch.setattr(sealing, "WINDOW", 1)
    monkeypatch.setattr(plan, "LAYOUT_WINDOW", 1)


def files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("pending", [0, 100])  # 0: every check result made again when needed
def test_rules_hold_across_windows(tmp_path, images, monkeypatch, pending):
    manifest = write_manifest(tmp_path / "m.parquet", ROWS, ("image_key",))
    whole = write_shards(manifest, images, tmp_path / "whole", progress=False)
    tiny_windows(monkeypatch, pending)
    small = write_shards(manifest, images, tmp_path / "small", progress=False)
    assert files(tmp_path / "whole") == files(tmp_path / "small")
    assert (whole.kept, whole.images) == (small.kept, small.images) == (4, 2)

    out = tmp_path / "small"
    records = pl.read_parquet(out / layout.RECORDS)
    assert list(zip(records["key"], records["image_key"], strict=True)) == [
        ("k1", "k1"), ("k5", "k1"), ("k6", "k2"), ("k9", "k1")]  # fmt: skip
    rejects = pl.read_parquet(out / layout.REJECTS).sort("line")
    got = list(zip(rejects["line"], rejects["key"], rejects["reason"], strict=True))
    broken = got[1][2]
    assert broken not in {"empty_text", "duplicate_image", "image_key_conflict", "duplicate_key"}
    assert got == [(2, "k2", "empty_text"), (3, "k3", broken), (4, "k4", "duplicate_image"),
                   (7, "k7", "image_key_conflict"), (8, "k1", "duplicate_key"),
                   (10, "k10", broken)]  # fmt: skip
    details = dict(zip(rejects["line"], rejects["detail"], strict=True))
    assert details[4] == "same bytes as key 'k1'"
    assert details[7] == "image_key 'k1' is already 'a.jpg', not 'b.jpg'"
    assert details[8] == "key 'k1' seen before"
    assert details[10] == details[3]

    reader = ShardReader(out)
    assert [r["key"] for r in reader.get("k1")["meta"]["records"]] == ["k1", "k5", "k9"]
    k2 = reader.get("k2")["meta"]  # row 6 is its first record
    assert (k2["path"], [r["key"] for r in k2["records"]]) == ("b.jpg", ["k6"])


def test_every_text_copy_key_clash_found_across_windows(tmp_path, images, monkeypatch):
    """A copy's key KEY_tJ must not repeat a record key, even one placed windows later."""
    rows = [rec("k1", "a.jpg", texts=["one", "two"]), rec("k2", "b.jpg"),
            rec("k1_t1", "b.jpg", image_key="k2")]  # fmt: skip
    manifest = write_manifest(tmp_path / "m.parquet", rows, ("image_key",))
    tiny_windows(monkeypatch, 0)
    with pytest.raises(DataError, match=r"sample key 'k1_t1' is also a record key"):
        write_shards(manifest, images, tmp_path / "out", progress=False, every_text=True)


def test_manifest_rows_by_number_across_chunks():
    """`take` reads each chunk of the manifest table on its own (no joined copy): any row
    numbers, in any order, repeated or not, give those rows."""
    import numpy as np
    import pyarrow as pa

    from vlmdata.shards.planrows import ManifestRecords

    keys = [f"k{i}" for i in range(50)]
    table = pa.table({"key": keys, "path": [f"{k}.jpg" for k in keys], "texts": [["t"]] * 50})
    chunked = pa.concat_tables([table.slice(0, 7), table.slice(7, 0), table.slice(7, 30),
                                table.slice(37)])  # fmt: skip
    rows = ManifestRecords(chunked)
    for wanted in ([], [3], [49, 0, 7, 7, 36, 37, 6], list(range(50))[::-1]):
        got = rows.take(np.array(wanted, dtype=np.int64))
        assert [(r.key, r.path) for r, _ in got] == [(keys[i], f"{keys[i]}.jpg") for i in wanted]


def test_spooled_manifest_reads_as_the_table(tmp_path, monkeypatch):
    """A manifest file spooled to Arrow IPC pieces (`SpooledManifest`, issue 23) gives the
    rows ManifestRecords gives over the whole table: the same ROWS-row batches (pieces of
    another size joined and cut), image keys, refs and rows by number across pieces."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlmdata.shards.planrows import ManifestRecords, SpooledManifest

    n = 103
    keys = [f"k{i}" for i in range(n)]
    paths = [f"{k}.jpg" if i % 9 else None for i, k in enumerate(keys)]
    texts = [[f"t{i}", "u"][: 1 + i % 2] for i in range(n)]
    image_keys = [keys[i - 1] if i % 10 == 3 else None for i in range(n)]
    table = pa.table({"key": keys, "path": paths, "texts": texts, "image_key": image_keys})
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=40)
    monkeypatch.setattr(SpooledManifest, "PIECE_ROWS", 7)
    for rows_at_a_time in (1, 16, 21, 500):
        monkeypatch.setattr(ManifestRecords, "ROWS", rows_at_a_time)
        whole, spooled = ManifestRecords(table), SpooledManifest(tmp_path / "m.parquet")
        try:
            assert len(spooled) == n and spooled.columns == whole.columns
            assert list(spooled.batches()) == list(whole.batches())
            assert [len(b) for b in spooled.batches()] == [len(b) for b in whole.batches()]
            assert list(spooled.image_key_batches()) == list(whole.image_key_batches())
            assert list(spooled.image_refs()) == list(whole.image_refs())
            for wanted in ([], [3], [102, 0, 7, 7, 6, 13, 14, 50], list(range(n))[::-1]):
                at = np.array(wanted, dtype=np.int64)
                assert spooled.take(at) == whole.take(at)
        finally:
            spooled.close()
    assert [r.key for r, _ in whole.take(np.array([14]))] == ["k14"]  # the oracle itself
