"""How records land on images (vlmdata/shards/group.py): shared image keys, byte-identical
images per source rule and flag, conflicts, and images that fail a check."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.shards.conftest import image_bytes, write_manifest
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.shards import write_samples, write_shards


def rec(key, path, source, image_key=None):
    return {"key": key, "source": source, "split": "train", "path": path,
            "texts": [f"text of {key}"], "image_key": image_key}  # fmt: skip


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "img"
    root.mkdir()
    (root / "a.jpg").write_bytes(image_bytes(1))
    (root / "copy_of_a.jpg").write_bytes(image_bytes(1))  # same bytes, another file
    (root / "b.jpg").write_bytes(image_bytes(2))
    (root / "broken.jpg").write_bytes(b"not an image")
    return root


def shard(tmp_path, images, rows, **kw):
    manifest = write_manifest(tmp_path / "m.parquet", rows, ("image_key",))
    out = tmp_path / "out"
    summary = write_shards(manifest, images, out, progress=False, **kw)
    return summary, pl.read_parquet(out / layout.RECORDS)


@pytest.mark.parametrize(
    "source, flag, shared",
    [("llava", None, True), ("vqav2", None, True), ("oven", None, True),
     ("flickr30k", None, False), ("coco", None, False), ("cc3m", None, False),
     ("test", None, False), ("llava", "reject", False), ("flickr30k", "share", True)],
)  # fmt: skip
def test_same_bytes_under_two_ids_share_or_reject_by_source(tmp_path, images, source, flag,
                                                            shared):  # fmt: skip
    rows = [rec("r1", "a.jpg", source), rec("r2", "copy_of_a.jpg", source)]
    summary, records = shard(tmp_path, images, rows, duplicate_images=flag)
    if shared:
        assert (summary.kept, summary.images, summary.rejected) == (2, 1, 0)
        assert records["image_key"].to_list() == ["r1", "r1"]
    else:
        assert (summary.kept, summary.images) == (1, 1)
        assert dict(summary.rejects) == {"duplicate_image": 1}


def test_image_key_groups_conflicts_and_bad_images(tmp_path, images):
    rows = [
        rec("q1", "a.jpg", "vqav2", image_key="img_a"),
        rec("q2", "b.jpg", "vqav2", image_key="img_b"),
        rec("q3", "a.jpg", "vqav2", image_key="img_a"),
        rec("q4", "b.jpg", "vqav2", image_key="img_a"),  # names another file for img_a
        rec("q5", "broken.jpg", "vqav2", image_key="img_x"),
        rec("q6", "broken.jpg", "vqav2", image_key="img_x"),  # every record of it is counted
        rec("q7", "a.jpg", "vqav2", image_key="bad.key"),
    ]
    summary, records = shard(tmp_path, images, rows)
    assert (summary.kept, summary.images) == (3, 2)
    assert dict(summary.rejects) == {"image_key_conflict": 1, "not_an_image": 2, "bad_key": 1}
    assert records.select("key", "image_key").rows() == [
        ("q1", "img_a"), ("q2", "img_b"), ("q3", "img_a")
    ]  # fmt: skip
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    assert dict(zip(index["key"], index["n_records"], strict=True)) == {"img_a": 2, "img_b": 1}


def test_key_json_of_a_shared_image_lists_its_records(tmp_path, images):
    from vlmdata.shards import ShardReader

    rows = [rec("q1", "a.jpg", "vqav2", "img_a"), rec("q2", "a.jpg", "vqav2", "img_a"),
            rec("solo", "b.jpg", "vqav2")]  # fmt: skip
    shard(tmp_path, images, rows)
    reader = ShardReader(tmp_path / "out")
    shared, solo = reader.get("img_a")["meta"], reader.get("solo")["meta"]
    assert [r["key"] for r in shared["records"]] == ["q1", "q2"]
    assert shared["records"][1]["texts"] == ["text of q2"] and shared["texts"] == ["text of q1"]
    # its own single record, listed too: every sample has the same KEY.json fields (issue 24)
    assert [r["key"] for r in solo["records"]] == ["solo"] and solo["image_key"] is None


def test_streamed_writing_refuses_share(tmp_path):
    rows = [(rec("r1", None, "llava"), image_bytes(1))]
    with pytest.raises(DataError, match="share"):
        write_samples(rows, tmp_path / "o", duplicate_images="share", progress=False)
    summary = write_samples(
        [(rec("r1", None, "llava"), image_bytes(1)), (rec("r2", None, "llava"), image_bytes(1))],
        tmp_path / "o2", progress=False,
    )  # fmt: skip
    assert dict(summary.rejects) == {"duplicate_image": 1}
    assert json.loads((tmp_path / "o2" / "wids.json").read_text())["shardlist"][0]["nsamples"] == 1
