"""The shard / inspect / verify / get commands, through click, with their exit codes."""

from __future__ import annotations

import json

import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from tests.shards.conftest import BAD_COUNTS, MIN_SIDE, make_bad_set
from vlmdata.core import layout


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def cli_out(tmp_path):
    manifest, images, keys = make_bad_set(tmp_path / "in")
    out = tmp_path / "out"
    args = ["shard", manifest, "--images", images, "-o", out, "--min-side", MIN_SIDE, "--quiet"]
    res = run(*args, "--samples-per-shard", 5, "--max-reject-ratio", 0.6)
    assert res.exit_code == 0, res.output
    return out, keys, manifest, images


def test_shard_summary_and_reject_ratio_exit(cli_out, tmp_path):
    out, keys, manifest, images = cli_out
    res = run("shard", manifest, "--images", images, "-o", tmp_path / "o2", "--quiet")
    # without --min-side the tiny image is kept: 14 of 27 rejected = 51.9% > 0.5
    assert res.exit_code == 1
    assert "14 of 27 records rejected" in res.output
    first = run(
        "shard",
        manifest,
        "--images",
        images,
        "-o",
        out,
        "--min-side",
        MIN_SIDE,
        "--samples-per-shard",
        5,
        "--max-reject-ratio",
        0.6,
        "--quiet",
    )
    assert "kept              12 records" in first.output
    assert "images            12" in first.output
    assert "shards             4  (0 written, 4 reused" in first.output


def test_inspect_reports_counts(cli_out):
    out, keys, _, _ = cli_out
    res = run("inspect", out)
    assert res.exit_code == 0, res.output
    assert res.output.startswith("records 12 on 12 images in 4 shards")
    assert "shard  duplicate_image      2" in res.output
    figures = json.loads(run("inspect", out, "--json").output)
    assert {r["reason"]: r["count"] for r in figures["rejects"]} == BAD_COUNTS
    assert [(g["split"], g["records"], g["images"]) for g in figures["by_split_source"]] == [
        ("test", 6, 6),
        ("train", 6, 6),
    ]
    assert figures["caption_words"]["p50"] == 4 and figures["texts_per_record"]["max"] == 2
    assert figures["records_per_image"]["max"] == 1


def test_verify_passes_then_names_the_flipped_key(cli_out):
    out, keys, _, _ = cli_out
    ok = run("verify", out, "--quiet")
    assert ok.exit_code == 0 and "checked 12 samples in 4 shards: ok" in ok.output
    index = pl.read_parquet(out / layout.INDEX)
    r = index.filter(pl.col("key") == "s0007").row(0, named=True)
    path = out / r["shard"]
    blob = bytearray(path.read_bytes())
    blob[r["json_offset"] + 3] ^= 0x01
    path.write_bytes(bytes(blob))
    bad = run("verify", out, "--quiet")
    assert bad.exit_code == 1
    lines = [line for line in bad.output.splitlines() if line.startswith("shards/")]
    assert lines == [
        f"{r['shard']}\t-\txxh3_128 differs from wids.json",
        f"{r['shard']}\ts0007\ts0007.json: sha256 mismatch",
    ]
    assert "2 mismatches in 1 samples" in bad.output


def test_verify_catches_a_broken_header_and_missing_shard(cli_out):
    out, _, _, _ = cli_out
    index = pl.read_parquet(out / layout.INDEX)
    r = index.filter(pl.col("key") == "s0001").row(0, named=True)
    path = out / r["shard"]
    blob = bytearray(path.read_bytes())
    blob[r["txt_offset"] - 512] ^= 0x20  # first byte of the member's name in its header
    path.write_bytes(bytes(blob))
    (out / "shards" / "train" / "data-000001.tar").unlink()
    res = run("verify", out, "--quiet")
    assert res.exit_code == 1
    assert "s0001\ts0001.txt: bad tar header checksum" in res.output
    assert "shards/train/data-000001.tar\t-\tshard file missing" in res.output


def test_get_prints_json_and_writes_members(cli_out, tmp_path):
    out, keys, _, images = cli_out
    res = run("get", out, "s0002")
    meta = json.loads(res.output)
    assert meta["key"] == "s0002" and meta["image_ext"] == "webp" and meta["entity_id"] == "Q2"
    res = run("get", out, "s0002", "-o", tmp_path / "g")
    assert res.exit_code == 0
    assert (tmp_path / "g" / "s0002.webp").read_bytes() == (images / meta["path"]).read_bytes()
    assert json.loads((tmp_path / "g" / "s0002.json").read_text())["texts"] == meta["texts"]
    assert (tmp_path / "g" / "s0002.txt").read_text() == meta["texts"][0]
    missing = run("get", out, "nope")
    assert missing.exit_code == 2 and "key 'nope' not in the index" in missing.output


def test_help_teaches_with_examples():
    for cmd in ("shard", "inspect", "verify", "get"):
        res = run(cmd, "--help")
        assert res.exit_code == 0 and "Example" in res.output


def test_shard_refuses_a_manifest_that_is_not_one(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "m.parquet").write_text("key,path\na,b.jpg\n")
    res = run(
        "shard", tmp_path / "m.parquet", "--images", tmp_path / "images", "-o", tmp_path / "o"
    )
    assert res.exit_code == 2 and "not a readable Parquet manifest" in res.output
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"key": ["a"]}), tmp_path / "k.parquet")
    res = run(
        "shard", tmp_path / "k.parquet", "--images", tmp_path / "images", "-o", tmp_path / "o"
    )
    assert res.exit_code == 2 and "lacks columns ['path', 'texts']" in res.output
