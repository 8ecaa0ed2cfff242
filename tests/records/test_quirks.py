"""Published-shape quirks: GRACE's flat COCO folder, OVEN's .jpg/.JPEG and its test files
without data_split."""

from __future__ import annotations

import hashlib
import json

import polars as pl

from tests.shards.conftest import image_bytes
from vlmdata.core import layout
from vlmdata.shards import write_shards
from vlmdata.sources import read_source


def karpathy_coco(tmp):
    """Karpathy's dataset_coco.json: {images: [{filepath: val2014, filename:
    COCO_val2014_*.jpg, split, sentences: [{raw}], imgid, cocoid}], dataset: coco}; paths are
    built as filepath/filename."""
    images = [
        {"filepath": "val2014", "filename": f"COCO_val2014_{c:012d}.jpg", "split": "test",
         "sentences": [{"raw": f"photo {c}"}], "imgid": i, "cocoid": c}
        for i, c in enumerate([42, 73, 74])
    ]  # fmt: skip
    path = tmp / "dataset_coco.json"
    path.write_text(json.dumps({"images": images, "dataset": "coco"}))
    return path, [im["filename"] for im in images]


def test_grace_flat_coco_images_folder(tmp_path):
    """GRACE keeps COCO flat in coco_images/: filepath/filename is missing there, the file name
    at the top is used. Where the folder exists, a missing file stays missing_file."""
    path, names = karpathy_coco(tmp_path)
    read_source("karpathy", [path], tmp_path / "m")
    flat = tmp_path / "coco_images"
    flat.mkdir()
    for i, name in enumerate(names):
        (flat / name).write_bytes(image_bytes(i))
    summary = write_shards(tmp_path / "m" / layout.MANIFEST, flat, tmp_path / "o1",
                           progress=False)  # fmt: skip
    assert (summary.kept, summary.images, summary.rejected) == (3, 3, 0)
    nested = tmp_path / "coco"
    (nested / "val2014").mkdir(parents=True)
    for i, name in enumerate(names[:2]):
        (nested / "val2014" / name).write_bytes(image_bytes(i))
    (nested / names[2]).write_bytes(image_bytes(2))  # at the top, but val2014/ exists
    summary = write_shards(tmp_path / "m" / layout.MANIFEST, nested, tmp_path / "o2",
                           progress=False)  # fmt: skip
    assert summary.kept == 2 and dict(summary.rejects) == {"missing_file": 1}


def test_oven_jpeg_is_resolved_at_shard_time(tmp_path):
    rec = {"data_id": "oven_entity_val_00000001", "image_id": "oven_01000002",
           "question": "what is this?", "entity_id": "Q1", "entity_text": "E",
           "data_split": "entity_val_unseen"}  # fmt: skip
    path = tmp_path / "oven_entity_val.jsonl"
    path.write_text(json.dumps(rec) + "\n")
    read_source("oven", [path], tmp_path / "m")  # no --images: the manifest says .jpg
    assert pl.read_parquet(tmp_path / "m" / layout.MANIFEST)["path"][0] == ("01/oven_01000002.jpg")
    images = tmp_path / "oven_images"
    (images / "01").mkdir(parents=True)
    data = image_bytes(5)
    (images / "01" / "oven_01000002.JPEG").write_bytes(data)
    summary = write_shards(tmp_path / "m" / layout.MANIFEST, images, tmp_path / "o",
                           progress=False)  # fmt: skip
    assert summary.kept == 1 and summary.rejected == 0
    index = pl.read_parquet(tmp_path / "o" / layout.INDEX)
    assert index["image_sha256"][0] == hashlib.sha256(data).hexdigest()


def test_oven_test_files_without_data_split(tmp_path):
    """OVEN's test files may lack data_split: --split, else the file name's split; neither ->
    missing_field naming --split."""
    rec = {"data_id": "oven_query_test_00000001", "image_id": "oven_00000001",
           "question": "who is this?"}  # fmt: skip
    named = tmp_path / "oven_query_test.jsonl"
    named.write_text(json.dumps(rec) + "\n")
    read_source("oven", [named], tmp_path / "a")
    assert pl.read_parquet(tmp_path / "a" / layout.MANIFEST)["split"].to_list() == ["query_test"]
    read_source("oven", [named], tmp_path / "b", split="query_test_v2")
    assert pl.read_parquet(tmp_path / "b" / layout.MANIFEST)["split"].to_list() == ["query_test_v2"]
    other = tmp_path / "my_questions.jsonl"
    other.write_text(json.dumps(rec) + "\n")
    result = read_source("oven", [other], tmp_path / "c")
    assert result.kept == 0 and dict(result.rejects) == {"missing_field": 1}
    detail = pl.read_parquet(tmp_path / "c" / layout.REJECTS)["detail"][0]
    assert "--split" in detail
