"""`vlmdata download` through the CLI: local data sets, refusals and exit codes (no img2dataset)."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter

import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from tests.shards.http_server import image_bytes, serve_images
from vlmdata.core import layout
from vlmdata.shards import ShardReader


def karpathy_set(root):
    """A Flickr30k-style Karpathy JSON over 4 images: one missing on disk, one duplicate,
    one with no sentences field (a source reject)."""
    images = root / "flickr30k-images"
    images.mkdir()
    for n in (1, 2, 3):
        (images / f"{n}.jpg").write_bytes(image_bytes(n))
    (images / "5.jpg").write_bytes(image_bytes(1))  # same bytes as 1.jpg

    def entry(n, split="train"):
        sentences = [{"raw": f"caption {n} a"}, {"raw": f"caption {n} b"}]
        return {"filename": f"{n}.jpg", "imgid": n, "split": split, "sentences": sentences}

    data = {
        "images": [
            entry(1),
            entry(2, "test"),
            entry(3, "val"),
            entry(4),  # not on disk
            entry(5),  # duplicate of 1
            {"filename": "6.jpg", "imgid": 6, "split": "train"},  # no sentences
        ],
        "dataset": "flickr30k",
    }
    path = root / "dataset_flickr30k.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path, images


def test_local_dataset_shards_images_dir(tmp_path):
    path, images = karpathy_set(tmp_path)
    out = tmp_path / "out"
    args = ["download", "flickr30k", str(path), "--images", str(images), "-o", str(out)]
    result = CliRunner().invoke(main, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    reader = ShardReader(out)
    assert list(reader.index["key"]) == ["flickr30k_1", "flickr30k_2", "flickr30k_3"]
    assert reader.get("flickr30k_2")["image"] == image_bytes(2)
    assert reader.get("flickr30k_2")["meta"]["split"] == "test"
    rejects = pl.read_parquet(out / layout.REJECTS)
    reasons = dict(zip(rejects["reason"], rejects["stage"], strict=True))
    assert Counter(rejects["reason"].to_list()) == Counter(
        {"missing_field": 1, "missing_file": 1, "duplicate_image": 1}
    )
    assert reasons["missing_field"] == "manifest:karpathy" and reasons["missing_file"] == "shard"
    assert rejects["stage"].to_list()[0] == "manifest:karpathy"  # source rejects come first
    assert not (out / ".download").exists()
    assert "kept" in result.output and "duplicate_image" in result.output


def test_loopback_urls_refused_and_exit_code(tmp_path):
    with serve_images() as server:
        tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text(f"a cat\t{server.url('img', 1)}\na dog\t{server.url('img', 2)}\n")
        out = tmp_path / "out"
        result = CliRunner().invoke(main, ["download", "cc3m", str(tsv), "-o", str(out)])
        assert server.hits == []
    assert result.exit_code == 1  # every row rejected: above --max-reject-ratio
    assert "private_address" in result.output
    rejects = pl.read_parquet(out / layout.REJECTS)
    assert rejects["reason"].to_list() == ["private_address", "private_address"]
    assert rejects["stage"].unique().to_list() == ["filter-urls"]


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_missing_distributor_package_is_a_clear_error(tmp_path):
    tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    tsv.write_text("a cat\thttp://example.com/a.jpg\n")
    args = ["download", "cc3m", str(tsv), "-o", str(tmp_path / "out"), "--distributor", "ray"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--distributor ray needs the ray package" in result.output


def test_dataset_without_urls_needs_images(tmp_path):
    path, _ = karpathy_set(tmp_path)
    result = CliRunner().invoke(
        main, ["download", "karpathy", str(path), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "no image URLs; pass --images DIR" in result.output


def test_coco_urls_filtered_and_missing_urls_rejected(tmp_path):
    """COCO rows fetch through coco_url: a row without one is `missing_url` (stage download),
    loopback URLs are refused by filter-urls, and nothing reaches img2dataset."""
    images = [
        {"id": 1, "file_name": "COCO_val2014_1.jpg", "coco_url": "http://127.0.0.1:9/1.jpg"},
        {"id": 2, "file_name": "COCO_val2014_2.jpg"},
        {"id": 3, "file_name": "COCO_val2014_3.jpg", "coco_url": "http://[::1]/3.jpg"},
    ]
    notes = [{"image_id": i, "caption": f"a picture {i}"} for i in (1, 2, 3)]
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"images": images, "annotations": notes}), encoding="utf-8")
    out = tmp_path / "out"
    args = ["download", "coco", str(path), "-o", str(out), "--max-reject-ratio", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    rejects = pl.read_parquet(out / layout.REJECTS)
    got = sorted(zip(rejects["key"], rejects["reason"], rejects["stage"], strict=True))
    assert [g[1:] for g in got] == [
        ("private_address", "filter-urls"),
        ("missing_url", "download"),
        ("private_address", "filter-urls"),
    ]
    assert pl.read_parquet(out / layout.MANIFEST).height == 3
    assert not (out / ".download" / "raw").exists()


def test_an_option_the_data_set_does_not_take_is_refused(tmp_path):
    """karpathy reads its splits from the JSON: --split is an error, not silently dropped."""
    path, images = karpathy_set(tmp_path)
    args = ["download", "flickr30k", str(path), "--images", str(images), "-o", str(tmp_path / "o")]
    result = CliRunner().invoke(main, [*args, "--split", "val", "--quiet"])
    assert result.exit_code == 2
    assert "source 'karpathy' does not take --split" in result.output
