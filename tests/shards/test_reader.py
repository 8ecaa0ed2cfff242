"""Readers: ShardReader (key, row, filter, workers), iter_samples; peers: tar, wds, wids."""

from __future__ import annotations

import subprocess

import polars as pl
import pyarrow.parquet as pq
import pytest

from vlmdata.core.errors import DataError
from vlmdata.shards import ShardReader, iter_samples, list_shards, write_shards


@pytest.fixture
def sharded(good_set, tmp_path):
    manifest, images = good_set
    out = tmp_path / "out"
    write_shards(manifest, images, out, samples_per_shard=5, progress=False)
    rows = pq.read_table(manifest).to_pylist()
    # one split per shard: stored split by split (train first: s0000's), manifest order within
    rows = [r for split in ("train", "test") for r in rows if r["split"] == split]
    originals = {r["key"]: (images / r["path"]).read_bytes() for r in rows}
    return out, rows, originals


def test_reader_by_row_key_and_filter(sharded):
    out, rows, originals = sharded
    r = ShardReader(out)
    assert len(r) == 23
    for i, row in enumerate(rows):
        s = r[i]
        assert s["key"] == row["key"] and s["image"] == originals[row["key"]]
        assert s["txt"] == row["texts"][0]
        assert s["meta"]["texts"] == row["texts"] and s["meta"]["entity_id"] == row["entity_id"]
    assert r[-1]["key"] == rows[-1]["key"]
    assert r.get("s0007")["image"] == originals["s0007"]
    assert r.get("s0002")["image_ext"] == "webp"
    with pytest.raises(IndexError):
        r[23]
    with pytest.raises(KeyError):
        r.get("nope")
    test = ShardReader(out, filter=pl.col("split") == "test")
    expected = [row["key"] for row in rows if row["split"] == "test"]
    assert [s["key"] for s in test] == expected and len(test.index) == 11
    assert test.get("s0003")["image"] == originals["s0003"]
    with pytest.raises(KeyError):
        test.get("s0000")  # a train sample is outside the filtered view


def test_reader_copies_open_their_own_files(sharded):
    out, rows, originals = sharded
    r = ShardReader(out)
    assert r[0]["key"] == "s0000"  # opens an fd
    clone = ShardReader.__new__(ShardReader)  # what unpickling in a spawned worker does
    clone.__dict__.update(r.__getstate__())
    assert clone._fds == {} and clone.get("s0011")["image"] == originals["s0011"]
    r.close()
    assert r[3]["key"] == rows[3]["key"]  # reopens lazily


@pytest.mark.slow
def test_dataloader_workers_with_distributed_sampler(sharded):
    import torch.utils.data as tud

    out, rows, originals = sharded
    r = ShardReader(out, filter=pl.col("split") == "train")
    assert r[0]["key"] == "s0000"  # the parent holds an open fd before the workers fork
    got = []
    for rank in range(2):
        sampler = tud.DistributedSampler(r, num_replicas=2, rank=rank, shuffle=False)
        loader = tud.DataLoader(
            r,
            sampler=sampler,
            num_workers=2 - 2 * rank,  # rank 0 in worker processes, rank 1 inline
            batch_size=3,
            collate_fn=lambda b: [(s["key"], s["image"]) for s in b],
        )
        got += [pair for batch in loader for pair in batch]
    train = [row["key"] for row in rows if row["split"] == "train"]
    assert sorted(k for k, _ in got) == sorted(train)  # 12 train samples split 6/6, no repeats
    assert all(image == originals[k] for k, image in got)


def test_reader_verify_detects_corruption(sharded):
    out, _, _ = sharded
    r = ShardReader(out)
    row = r.index.row(r.row_of("s0006"), named=True)
    path = out / row["shard"]
    blob = bytearray(path.read_bytes())
    blob[row["image_offset"] + 10] ^= 0xFF
    path.write_bytes(bytes(blob))
    assert ShardReader(out).get("s0006")["image"] != b""  # unchecked read still returns bytes
    with pytest.raises(DataError, match="s0006.*image checksum"):
        ShardReader(out, verify=True).get("s0006")


def test_iter_samples_streams_everything_in_order(sharded):
    out, rows, originals = sharded
    samples = list(iter_samples(out))
    assert [s["key"] for s in samples] == [r["key"] for r in rows]
    assert all(s["image"] == originals[s["key"]] for s in samples)
    # train 12 = 5 + 5 + 2, test 11 = 5 + 5 + 1: the last shard holds the last test image
    assert [s["key"] for s in iter_samples(out, shards=[5])] == ["s0021"]
    assert [s["key"] for s in iter_samples(out, shards=[2])] == ["s0020", "s0022"]
    assert len(list_shards(out)) == 6


def test_gnu_tar_lists_members(sharded):
    out, rows, _ = sharded
    listing = subprocess.run(
        ["tar", "tf", str(list_shards(out)[0])], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing[:6] == [
        "s0000.jpg",
        "s0000.json",
        "s0000.txt",
        "s0002.webp",
        "s0002.json",
        "s0002.txt",
    ]
    assert len(listing) == 15


def test_webdataset_reads_the_shards_unchanged(sharded):
    import webdataset as wds

    out, rows, originals = sharded
    urls = [str(p) for p in list_shards(out)]
    got = {}
    for s in wds.WebDataset(urls, shardshuffle=False):
        img_ext = next(e for e in ("jpg", "png", "webp") if e in s)
        got[s["__key__"]] = (s[img_ext], s["txt"].decode())
    assert list(got) == [r["key"] for r in rows]
    assert all(got[r["key"]] == (originals[r["key"]], r["texts"][0]) for r in rows)


def test_wids_reads_the_shard_list(sharded):
    import wids

    out, rows, originals = sharded
    ds = wids.ShardListDataset(str(out / "wids.json"), transformations=[])
    assert len(ds) == 23
    for i in (0, 7, 22):
        s = ds[i]
        ext = next(e for e in (".jpg", ".png", ".webp") if e in s)
        assert s["__key__"] == rows[i]["key"]
        assert s[ext].read() == originals[rows[i]["key"]]


def test_long_keys_use_pax_headers(tmp_path):
    from tests.shards.conftest import image_bytes, row, write_manifest

    images = tmp_path / "img"
    images.mkdir()
    (images / "a.jpg").write_bytes(image_bytes(7))
    key = "k" * 120
    manifest = write_manifest(tmp_path / "m.parquet", [row(key, "a.jpg")])
    write_shards(manifest, images, tmp_path / "out", progress=False)
    tar = list_shards(tmp_path / "out")[0]
    listing = subprocess.run(["tar", "tf", str(tar)], capture_output=True, text=True, check=True)
    assert listing.stdout.split() == [f"{key}.jpg", f"{key}.json", f"{key}.txt"]
    assert ShardReader(tmp_path / "out").get(key)["image"] == image_bytes(7)
    assert [s["key"] for s in iter_samples(tmp_path / "out")] == [key]


def test_hf_datasets_loads_the_shards(tmp_path):
    """HF needs the same member types in every sample: true for single-format sets (or
    --reencode); a mix of jpg/png/webp in one set is refused by HF's builder."""
    import datasets  # in the [dev] extra

    from tests.shards.conftest import image_bytes, row, write_manifest

    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(7):
        (images / f"{i}.jpg").write_bytes(image_bytes(i))
        rows.append(row(f"k{i}", f"{i}.jpg", entity_id=f"Q{i}"))
    manifest = write_manifest(tmp_path / "m.parquet", rows, ("entity_id",))
    write_shards(manifest, images, tmp_path / "out", samples_per_shard=3, progress=False)
    files = [str(p) for p in list_shards(tmp_path / "out")]
    ds = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert ds.num_rows == 7
    assert [r["__key__"] for r in ds] == [f"k{i}" for i in range(7)]
    assert ds[4]["txt"] == "caption 0 of k4" and ds[4]["json"]["entity_id"] == "Q4"
    assert ds[4]["jpg"].size == (40, 32)  # decoded by HF as a PIL image
