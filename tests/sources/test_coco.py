"""coco: captions_*.json joined image <- annotations, streamed, bad elements included."""

from __future__ import annotations

import polars as pl

from tests.sources.conftest import manifest_rows, reject_counts, write_json_bytes
from vlmdata.core import layout
from vlmdata.sources import read_source


def test_captions_json(tmp_path, out):
    base = "http://images.cocodataset.org/train2014/"
    doc = {
        "info": {"year": 2014},
        # annotations before images: the join must not depend on member order
        "annotations": [
            {"image_id": 9, "id": 1, "caption": "A bowl of fruit. "},
            {"image_id": 25, "id": 2, "caption": "A giraffe."},
            {"image_id": 9, "id": 3, "caption": "Oranges and apples."},
            {"image_id": 777, "id": 4, "caption": "Orphan caption."},  # unknown_image
            {"image_id": 25, "id": 5, "caption": "  "},  # empty_caption
            {"image_id": "25", "id": 6, "caption": "string id"},  # wrong_type
            {"id": 7, "caption": "no image id"},  # missing_field
            {"image_id": 9, "id": 8, "caption": 42},  # wrong_type
        ],
        "images": [
            {
                "id": 9,
                "file_name": "COCO_train2014_000000000009.jpg",
                "coco_url": base + "COCO_train2014_000000000009.jpg",
            },
            {"id": 25, "file_name": "COCO_train2014_000000000025.jpg"},
            {"id": 30, "file_name": "COCO_train2014_000000000030.jpg"},  # no caption
            {"id": 9, "file_name": "again.jpg"},  # duplicate_key
            {"file_name": "no_id.jpg"},  # missing_field
        ],
        "licenses": [],
    }
    path = write_json_bytes(tmp_path / "captions_train2014.json", doc)
    read_source("coco", [path], out)
    rows = manifest_rows(out)
    assert [(r["key"], r["split"], r["path"], r["url"], r["texts"]) for r in rows] == [
        (
            "coco_9",
            "train",
            "COCO_train2014_000000000009.jpg",
            base + "COCO_train2014_000000000009.jpg",
            ["A bowl of fruit.", "Oranges and apples."],
        ),
        ("coco_25", "train", "COCO_train2014_000000000025.jpg", None, ["A giraffe."]),
    ]
    assert [r["image_id"] for r in rows] == ["9", "25"]
    assert reject_counts(out) == {
        "unknown_image": 1,
        "empty_caption": 1,
        "wrong_type": 2,
        "missing_field": 2,
        "empty_text": 1,
        "duplicate_key": 1,
    }
    rejects = pl.read_parquet(out / layout.REJECTS)
    orphan = rejects.filter(pl.col("reason") == "unknown_image").row(0, named=True)
    assert orphan["line"] == 3 and orphan["detail"].startswith("annotations[3]")
    no_caption = rejects.filter(pl.col("reason") == "empty_text").row(0, named=True)
    assert (no_caption["line"], no_caption["key"]) == (2, "coco_30")


def test_val_split_and_rerun_is_byte_identical(tmp_path):
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"image_id": 1, "caption": "x"}],
    }
    path = write_json_bytes(tmp_path / "captions_val2014.json", doc)
    read_source("coco", [path], tmp_path / "a")
    read_source("coco", [path], tmp_path / "b")
    assert manifest_rows(tmp_path / "a")[0]["split"] == "val"
    for name in (layout.MANIFEST, layout.REJECTS):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
