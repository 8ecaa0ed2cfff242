"""write_shards / write_samples: rejects, layout, determinism, resume, parallel workers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from tests.shards.conftest import BAD_COUNTS, MIN_SIDE, make_bad_set, make_good_set
from vlmdata.core import layout
from vlmdata.shards import write_samples, write_shards
from vlmdata.shards.tarfmt import parse_header


def tree_hashes(out: Path) -> dict[str, str]:
    """sha256 of every tar, the index and wids.json (the files that must be byte-identical)."""
    files = sorted(out.glob("shards/*/*.tar")) + [out / layout.INDEX, out / "wids.json"]
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.mark.parametrize("decode", [True, False])
def test_every_reject_reason_counted_exactly(tmp_path, decode):
    manifest, images, keys = make_bad_set(tmp_path / "in")
    out = tmp_path / "out"
    s = write_shards(manifest, images, out, min_side=MIN_SIDE, decode_check=decode, progress=False)
    assert dict(s.rejects) == BAD_COUNTS
    assert s.kept == len(keys) == 12
    rej = pl.read_parquet(tmp_path / "out" / layout.REJECTS)
    assert dict(rej["reason"].value_counts().iter_rows()) == BAD_COUNTS
    assert set(rej["stage"]) == {"shard"}
    by_key = {k: r for k, r in zip(rej["key"], rej["reason"], strict=True)}
    assert by_key["e3"] == "path_escape" and by_key["d2"] == "duplicate_image"
    assert by_key["l1"] == "too_large" and by_key["t1"] == "truncated"
    # line = 1-based manifest row; record = the original row as JSON
    m = pq.read_table(manifest).to_pylist()
    for line, key, record in rej.select("line", "key", "record").iter_rows():
        if key != "bad.key" and key != keys[3]:
            assert m[line - 1]["key"] == key
        assert json.loads(record)["key"] == key
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    # one split per shard: the index runs split by split (first seen first), manifest order within
    split_of: dict[str, str] = {}
    for r in m:  # a later row reusing a key is a duplicate_key reject
        split_of.setdefault(r["key"], r["split"])
    order = list(dict.fromkeys(split_of[k] for k in keys))
    assert index["key"].to_list() == [k for s in order for k in keys if split_of[k] == s]
    assert {(r["split"], r["shard"].split("/")[1]) for r in index.iter_rows(named=True)} == {
        (s, s) for s in order
    }
    copied = tmp_path / "out" / layout.MANIFEST
    assert copied.read_bytes() == manifest.read_bytes()


def test_index_offsets_point_at_the_members(good_set, tmp_path):
    manifest, images = good_set
    write_shards(manifest, images, tmp_path / "out", samples_per_shard=4, progress=False)
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    m = {r["key"]: r for r in pq.read_table(manifest).to_pylist()}
    # 12 train and 11 test images (alternating), 4 per shard, each split cut on its own
    assert index["shard"].unique().sort().to_list() == [
        f"shards/{split}/data-{i:06d}.tar" for split in ("test", "train") for i in range(3)
    ]
    for r in index.iter_rows(named=True):
        blob = (tmp_path / "out" / r["shard"]).read_bytes()
        original = (images / m[r["key"]]["path"]).read_bytes()
        image = blob[r["image_offset"] : r["image_offset"] + r["image_size"]]
        assert image == original
        assert hashlib.sha256(image).hexdigest() == r["image_sha256"]
        name, size, _ = parse_header(blob[r["image_offset"] - 512 : r["image_offset"]])
        assert (name, size) == (f"{r['key']}.{r['format']}", r["image_size"])
        assert r["sample_offset"] == r["image_offset"] - 512
        txt = blob[r["txt_offset"] : r["txt_offset"] + r["txt_size"]].decode()
        assert txt == m[r["key"]]["texts"][0] == r["texts"][0]
        meta = json.loads(blob[r["json_offset"] : r["json_offset"] + r["json_size"]])
        assert meta["entity_id"] == r["entity_id"] and meta["split"] == r["split"]
        end = r["txt_offset"] + r["txt_size"] + (-r["txt_size"] % 512)
        assert r["sample_offset"] + r["size"] == end
    # formats sniffed from bytes even though jpgs are named .jpeg
    assert set(index["format"]) == {"jpg", "png", "webp"}


def test_rerun_is_byte_identical_and_reuses_finished_shards(good_set, tmp_path):
    manifest, images = good_set
    a = write_shards(manifest, images, tmp_path / "a", samples_per_shard=5, progress=False)
    write_shards(manifest, images, tmp_path / "b", samples_per_shard=5, progress=False)
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    assert (a.written, a.skipped) == (6, 0)  # 12 train + 11 test, 5 per shard: 3 + 3
    again = write_shards(manifest, images, tmp_path / "a", samples_per_shard=5, progress=False)
    assert (again.written, again.skipped) == (0, 6)
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")


def test_resume_after_simulated_kill(good_set, tmp_path):
    manifest, images = good_set
    ref = tmp_path / "ref"
    write_shards(manifest, images, ref, samples_per_shard=5, progress=False)
    out = tmp_path / "out"
    write_shards(manifest, images, out, samples_per_shard=5, progress=False)
    shards = out / "shards" / "test"
    # a killed run: last shard never renamed (temp left), one shard cut short, no index yet
    (shards / "data-000002.tar").rename(shards / ".data-000002.tar.tmp-abc123")
    (shards / "data-000002_stats.json").unlink()
    blob = (shards / "data-000001.tar").read_bytes()
    (shards / "data-000001.tar").write_bytes(blob[:3000])
    (out / layout.INDEX).unlink()
    (out / "wids.json").unlink()
    s = write_shards(manifest, images, out, samples_per_shard=5, progress=False)
    assert (s.written, s.skipped) == (2, 4)  # train 3 shards + test 3
    assert tree_hashes(out) == tree_hashes(ref)
    assert not [p for p in shards.iterdir() if ".tmp-" in p.name]


def test_changed_parameters_rewrite_and_drop_stale_shards(good_set, tmp_path):
    manifest, images = good_set
    out = tmp_path / "out"
    write_shards(manifest, images, out, samples_per_shard=3, progress=False)
    assert len(list((out / "shards").glob("*/*.tar"))) == 8  # 12 train, 11 test: 4 + 4
    s = write_shards(manifest, images, out, samples_per_shard=10, progress=False)
    assert s.shards == 4 and s.written == 4
    assert sorted(str(p.relative_to(out)) for p in (out / "shards").glob("*/*.tar")) == [
        f"shards/{split}/data-{i:06d}.tar" for split in ("test", "train") for i in range(2)
    ]
    write_shards(manifest, images, tmp_path / "fresh", samples_per_shard=10, progress=False)
    assert tree_hashes(out) == tree_hashes(tmp_path / "fresh")


@pytest.mark.slow
def test_two_workers_equal_one(tmp_path):
    manifest, images, _ = make_bad_set(tmp_path / "in")
    kw = dict(samples_per_shard=3, min_side=MIN_SIDE, progress=False)
    one = write_shards(manifest, images, tmp_path / "w1", workers=1, **kw)
    two = write_shards(manifest, images, tmp_path / "w2", workers=2, **kw)
    assert tree_hashes(tmp_path / "w1") == tree_hashes(tmp_path / "w2")
    assert one.rejects == two.rejects and one.kept == two.kept == 12
    r1 = (tmp_path / "w1" / layout.REJECTS).read_bytes()
    assert r1 == (tmp_path / "w2" / layout.REJECTS).read_bytes()


def test_max_shard_bytes_caps_every_shard(good_set, tmp_path):
    manifest, images = good_set
    cap = 40 * 1024
    s = write_shards(manifest, images, tmp_path / "out", max_shard_bytes=cap, progress=False)
    tars = (tmp_path / "out" / "shards").glob("*/*.tar")
    sizes = {str(p.relative_to(tmp_path / "out")): p.stat().st_size for p in tars}
    assert len(sizes) == s.shards > 1 and max(sizes.values()) <= cap
    wids = json.loads((tmp_path / "out" / "wids.json").read_text())
    assert {e["url"]: e["filesize"] for e in wids["shardlist"]} == sizes
    assert sum(e["nsamples"] for e in wids["shardlist"]) == 23
    # the greedy cut: the next shard's first sample would have pushed this one past the cap
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    per_shard = index.group_by("shard", maintain_order=True).agg(
        pl.col("size").sum().alias("used"), pl.col("size").first().alias("first")
    )
    used, first = per_shard["used"].to_list(), per_shard["first"].to_list()
    split_ends = {len(index.filter(pl.col("split") == "train")["shard"].unique()) - 1}
    for i in range(len(used) - 1):
        if i in split_ends:
            continue  # the next shard opens the next split, not a cut
        needed = used[i] + first[i + 1] + 1024  # samples + end-of-archive blocks
        assert needed + (-needed % 10240) > cap


def test_resize_writes_resized_images_and_sizes(good_set, tmp_path):
    manifest, images = good_set
    write_shards(
        manifest,
        images,
        tmp_path / "out",
        resize="center_crop",
        resize_side=16,
        reencode="png",
        progress=False,
    )
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    assert set(index["format"]) == {"png"}
    assert set(index["width"]) == {16} and set(index["height"]) == {16}
    meta = json.loads(pq.read_metadata(tmp_path / "out" / layout.INDEX).metadata[b"vlmdata.shards"])
    assert meta["resize"] == "center_crop" and meta["reencode"] == "png"
    assert meta["resize_side"] == 16


def test_write_samples_matches_write_shards(tmp_path):
    manifest, images, _ = make_bad_set(tmp_path / "in")
    kw = dict(samples_per_shard=4, min_side=MIN_SIDE, progress=False)
    write_shards(manifest, images, tmp_path / "a", **kw)
    rows = pq.read_table(manifest).to_pylist()

    def items():
        for r in rows:
            p = images / (r["path"] or "missing")
            if r["path"] and p.is_file() and p.resolve().is_relative_to(images.resolve()):
                yield r, p.read_bytes()

    prior = tmp_path / "download_rejects.parquet"
    pq.write_table(pq.read_table(tmp_path / "a" / layout.REJECTS).slice(0, 2), prior)
    s = write_samples(items(), tmp_path / "b", manifest=manifest, prior_rejects=prior, **kw)
    assert tree_hashes(tmp_path / "a") == tree_hashes(tmp_path / "b")
    expected = {k: v for k, v in BAD_COUNTS.items() if k not in ("missing_file", "path_escape")}
    first_two = pl.read_parquet(prior)["reason"].to_list()
    for reason in first_two:
        expected[reason] = expected.get(reason, 0) + 1
    assert dict(s.rejects) == expected and s.kept == 12


def test_write_samples_without_manifest_writes_the_rows_it_saw(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 6)
    rows = pq.read_table(manifest).to_pylist()
    items = [(r, (images / r["path"]).read_bytes()) for r in rows]
    s = write_samples(items, tmp_path / "out", samples_per_shard=4, progress=False)
    assert (s.kept, s.shards) == (6, 2)
    written = pl.read_parquet(tmp_path / "out" / layout.MANIFEST)
    assert written["key"].to_list() == [r["key"] for r in rows]
    assert written["entity_id"].to_list() == [f"Q{i}" for i in range(6)]


KILL_SCRIPT = """
import sys, time
import vlmdata.shards.writer as w
from vlmdata.shards.output import ShardFile
real = ShardFile.publish
def publish_then_pause(self, stats):
    real(self, stats)
    time.sleep(30)  # the test kills the process while it sits here
ShardFile.publish = publish_then_pause
w.write_shards(sys.argv[1], sys.argv[2], sys.argv[3], samples_per_shard=5, progress=False)
"""


@pytest.mark.slow
def test_killed_process_resumes_byte_identical(good_set, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    manifest, images = good_set
    write_shards(manifest, images, tmp_path / "ref", samples_per_shard=5, progress=False)
    out = tmp_path / "out"
    args = [sys.executable, "-c", KILL_SCRIPT, str(manifest), str(images), str(out)]
    (tmp_path / "tmp").mkdir()  # the kill leaves the plan's spill file: here, not in /tmp
    env = {**os.environ, "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.Popen(args, cwd=Path(__file__).parents[2], env=env)
    stats = out / "shards" / "train" / "data-000000_stats.json"
    deadline = time.monotonic() + 60
    while not stats.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert stats.exists() and not (out / layout.INDEX).exists()
    assert len(list((out / "shards").glob("*/*.tar"))) == 1
    s = write_shards(manifest, images, out, samples_per_shard=5, progress=False)
    assert (s.written, s.skipped) == (5, 1)  # train 3 shards + test 3
    assert tree_hashes(out) == tree_hashes(tmp_path / "ref")
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []  # the kill's temps


def test_a_rerun_removes_temp_tables_a_killed_run_left(good_set, tmp_path):
    """The index and records tables are staged while shards are written: a kill leaves their
    temp files beside OUT's tables (in each table's folder); the next run removes them (and
    nothing else)."""
    manifest, images = good_set
    out = tmp_path / "out"
    left = ["index/.index.parquet.tmp-k1", "records/.records.parquet.tmp-k2"]
    left += ["rejects/.rejects.parquet.tmp-k3", ".wids.json.tmp-k4"]
    kept = ["index/.index.parquet.keep", "notes.tmp-1", "records/notes.tmp-2"]
    for name in [*left, *kept]:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"x")
    write_shards(manifest, images, out, progress=False)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*")}
    assert not names & set(left)
    assert {*kept, layout.INDEX, layout.RECORDS, layout.REJECTS} <= names


def test_writer_refuses_an_image_changed_after_planning(good_set):
    import os

    from vlmdata.core.errors import DataError
    from vlmdata.shards.image_sources import FolderImages
    from vlmdata.shards.options import ImageOptions
    from vlmdata.shards.prepare import prepare_file

    manifest, images = good_set
    rel = pq.read_table(manifest).to_pylist()[0]["path"]
    opts = ImageOptions()
    planned = prepare_file(images, rel, opts)
    source = FolderImages(str(images))
    assert source.read("k", rel, planned, opts) == (images / rel).read_bytes()
    st = os.stat(images / rel)
    os.utime(images / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    with pytest.raises(DataError, match="changed during the run"):
        source.read("k", rel, planned, opts)
