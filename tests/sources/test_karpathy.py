"""karpathy: dataset_{flickr30k,coco}.json, one row per image, restval handling, bad elements."""

from __future__ import annotations

import polars as pl

from tests.sources.conftest import manifest_rows, reject_counts, write_json_bytes
from vlmdata.core import layout
from vlmdata.sources import read_source


def sentences(*raws):
    return [{"tokens": r.split(), "raw": r, "imgid": 0, "sentid": i} for i, r in enumerate(raws)]


def flickr_images():
    return [
        {
            "filename": "1000092795.jpg",
            "imgid": 0,
            "split": "train",
            "sentences": sentences("Two young guys.", "Two men outside."),
        },
        {"filename": "10002456.jpg", "imgid": 1, "split": "test", "sentences": sentences("A dog.")},
        {
            "filename": "1000268201.jpg",
            "imgid": 2,
            "split": "restval",
            "sentences": sentences("A child.", "   "),
        },  # one empty sentence: kept, counted
        {"imgid": 3, "split": "val", "sentences": sentences("no filename")},  # missing_field
        {"filename": "4.jpg", "imgid": 4, "split": "val", "sentences": "not a list"},  # wrong_type
        {"filename": "5.jpg", "imgid": 5, "split": "dev", "sentences": sentences("x")},  # bad_split
        {"filename": "6.jpg", "imgid": 6, "split": "val", "sentences": sentences("", " ")},
        {"filename": "7.jpg", "imgid": 7, "split": "val", "sentences": sentences("BAD@ bytes")},
        {"filename": "../8.jpg", "imgid": 8, "split": "val", "sentences": sentences("up")},
        {"filename": "9.jpg", "imgid": "9", "split": "val", "sentences": sentences("str id")},
    ]


def test_flickr30k_rows_and_rejects(tmp_path, out):
    # The published file puts "dataset" after "images"; invalid UTF-8 inside one caption.
    doc = {"images": flickr_images(), "dataset": "flickr30k"}
    path = write_json_bytes(tmp_path / "dataset_flickr30k.json", doc, {"BAD@": b"\xff\xfe"})
    result = read_source("karpathy", [path], out)
    rows = manifest_rows(out)
    assert [(r["key"], r["split"], r["path"], r["texts"], r["image_id"]) for r in rows] == [
        ("flickr30k_0", "train", "1000092795.jpg", ["Two young guys.", "Two men outside."], "0"),
        ("flickr30k_1", "test", "10002456.jpg", ["A dog."], "1"),
        ("flickr30k_2", "train", "1000268201.jpg", ["A child."], "2"),
    ]
    assert {r["source"] for r in rows} == {"flickr30k"}
    assert reject_counts(out) == {
        "missing_field": 1,
        "wrong_type": 2,
        "bad_split": 1,
        "empty_text": 1,
        "bad_utf8": 1,
        "unsafe_path": 1,
        "empty_caption": 1,
    }
    rejects = pl.read_parquet(out / layout.REJECTS)
    bad = rejects.filter(pl.col("reason") == "bad_utf8").row(0, named=True)
    assert bad["line"] == 7 and bad["detail"].startswith("images[7]:")
    assert "\\\\xff\\\\xfe bytes" in bad["record"]
    assert result.kept == 3


def test_coco_filepath_cocoid_and_restval_skip(tmp_path, out):
    images = [
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000391895.jpg",
            "imgid": 0,
            "cocoid": 391895,
            "split": "test",
            "sentences": sentences("A man on a bike."),
        },
        {
            "filepath": "val2014",
            "filename": "COCO_val2014_000000522418.jpg",
            "imgid": 1,
            "cocoid": 522418,
            "split": "restval",
            "sentences": sentences("A woman."),
        },
        {
            "filepath": "train2014",
            "filename": "COCO_train2014_000000184613.jpg",
            "imgid": 2,
            "cocoid": 184613,
            "split": "train",
            "sentences": sentences("A child."),
        },
    ]
    path = write_json_bytes(tmp_path / "dataset_coco.json", {"dataset": "coco", "images": images})
    result = read_source("karpathy", [path], out, restval="skip")
    rows = manifest_rows(out)
    assert [(r["key"], r["split"], r["path"]) for r in rows] == [
        ("coco_391895", "test", "val2014/COCO_val2014_000000391895.jpg"),
        ("coco_184613", "train", "train2014/COCO_train2014_000000184613.jpg"),
    ]
    assert reject_counts(out) == {"skipped_restval": 1}
    result.check(0.0)  # skips are listed but are not errors
    read_source("karpathy", [path], out)  # default: restval -> train
    assert [r["split"] for r in manifest_rows(out)] == ["test", "train", "train"]


def test_dataset_name_from_file_name_when_member_missing(tmp_path, out):
    images = [{"filename": "a.jpg", "imgid": 0, "split": "train", "sentences": sentences("x")}]
    path = write_json_bytes(tmp_path / "dataset_flickr8k.json", {"images": images})
    read_source("karpathy", [path], out)
    assert manifest_rows(out)[0]["key"] == "flickr8k_0"
