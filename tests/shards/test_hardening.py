"""Attacks and accidents on a finished shard folder, a trie file and a running `shard`.

Each test feeds the input that broke the tool before: a crafted index for `get`, an index edited
to move a test sample into train, a 0-byte tar, a garbage index, a trie header claiming 2^62
bytes, a JPEG with a second SOF of 60000×60000, two runs into one OUT, a umask, a full disk.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.vlmdata import main
from tests.shards.conftest import image_bytes, make_good_set
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.lifetime import out_lock
from vlmdata.shards import write_shards
from vlmdata.shards.images import ImageReject, check_image, jpeg_frames
from vlmdata.shards.verify import verify_shards
from vlmdata.trie import Trie
from vlmdata.trie.storage import ALIGN, MAGIC


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def sharded(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 8)
    out = tmp_path / "out"
    write_shards(manifest, images, out, samples_per_shard=3, progress=False)
    return out


def _rewrite_index(out: Path, fn) -> None:
    table = pq.read_table(out / layout.INDEX)
    pq.write_table(
        fn(pl.from_arrow(table)).to_arrow().replace_schema_metadata(table.schema.metadata),
        out / layout.INDEX,
    )


# -- get: paths from the index never leave -o ------------------------------------------------
@pytest.mark.parametrize(
    ("column", "value"),
    [("key", "../../escaped"), ("key", "ABS"), ("format", "jpg/../../../escaped")],
)
def test_get_refuses_a_crafted_index(sharded, tmp_path, column, value):
    value = str(tmp_path / "abs_escaped") if value == "ABS" else value  # an absolute path
    first = pl.read_parquet(sharded / layout.INDEX)["key"][0]
    _rewrite_index(
        sharded,
        lambda df: df.with_columns(
            pl.when(pl.col("key") == first)
            .then(pl.lit(value))
            .otherwise(pl.col(column))
            .alias(column)
        ),
    )
    key = value if column == "key" else first
    dest = tmp_path / "a" / "b" / "dest"
    res = run("get", sharded, key, "-o", dest)
    assert res.exit_code == 2 and "refusing" in res.output, res.output
    assert list(tmp_path.rglob("*escaped*")) == [] and not dest.exists()


# -- verify -----------------------------------------------------------------------------------
def test_verify_catches_a_sample_moved_between_splits(sharded):
    assert verify_shards(sharded).ok
    index = pl.read_parquet(sharded / layout.INDEX)
    moved = index.filter(pl.col("split") == "test")["key"][0]
    _rewrite_index(
        sharded,
        lambda df: df.with_columns(
            split=pl.when(pl.col("key") == moved).then(pl.lit("train")).otherwise("split")
        ),
    )
    report = verify_shards(sharded)
    assert [(m.key, m.problem) for m in report.mismatches] == [
        (moved, f"index split 'train' != 'test' in {moved}.json")
    ]


def test_verify_reports_an_empty_tar(sharded):
    tar = sharded / "shards" / "train" / "data-000001.tar"
    tar.write_bytes(b"")
    res = run("verify", sharded, "--quiet")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "shards/train/data-000001.tar\t-\tshard file is empty (0 bytes)" in res.output


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda out: (out / layout.INDEX).write_bytes(b"PAR1 not really"), "not a readable"),
        (
            lambda out: pq.write_table(
                pq.read_table(out / layout.INDEX).drop(["image_sha256"]), out / layout.INDEX
            ),
            "index lacks columns",
        ),
        (lambda out: (out / "wids.json").write_text("[1, 2"), "not a wids shard list"),
    ],
)
def test_verify_refuses_a_broken_folder_cleanly(sharded, damage, message):
    damage(sharded)
    res = run("verify", sharded, "--quiet")
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output


# -- trie files: header sizes checked against the file ------------------------------------------
def _trie_file(tmp_path, edit) -> Path:
    path = tmp_path / "t.trie"
    Trie.build([[1, 2, 0], [1, 3, 0]], vocab_size=8, eos_id=0).save(path)
    blob = path.read_bytes()
    n = int.from_bytes(blob[8:16], "little")
    header = json.loads(blob[16 : 16 + n])
    edit(header)
    new = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    data = blob[16 + n + (-(16 + n) % ALIGN) :]  # the arrays (offsets are relative to them)
    head = MAGIC + len(new).to_bytes(8, "little") + new
    path.write_bytes(head + b"\0" * (-len(head) % ALIGN) + data)
    return path


def _claim_huge(h):
    h["arrays"]["tokens"]["shape"] = [1 << 62]


def _vocab_huge(h):
    h["vocab_size"] = 10**13


def _eos_minus_one(h):
    h["eos_id"] = -1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_claim_huge, "past the end of the file"),
        (_vocab_huge, "vocab_size"),
        (_eos_minus_one, "eos_id -1"),
        (lambda h: h.pop("level_starts"), r"header 'level_starts' is None, not a list"),
        (lambda h: h.update(level_max_fanout=[1, "x"]), "'level_max_fanout' is \\[1, 'x'\\]"),
        (lambda h: h["arrays"].pop("offsets"), r"lacks the array\(s\) \['offsets'\]"),
    ],
)
def test_trie_header_is_checked_before_allocating(tmp_path, edit, message):
    path = _trie_file(tmp_path, edit)
    with pytest.raises(ValueError, match=message):
        Trie.load(path)


def test_trie_header_length_past_the_file(tmp_path):
    path = tmp_path / "t.trie"
    path.write_bytes(MAGIC + (1 << 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="past the end"):
        Trie.load(path)


def test_eos_minus_one_refused_at_build():
    with pytest.raises(ValueError, match="eos_id -1"):
        Trie.build([[1, 2]], vocab_size=8, eos_id=-1)


# -- the structure check reads every SOF -------------------------------------------------------
def _two_sof_jpeg() -> bytes:
    """A valid 40x32 JPEG with a second SOF0 (60000x60000) inserted after the first."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(buf, format="JPEG")
    data = buf.getvalue()
    sof = data.index(b"\xff\xc0")
    length = int.from_bytes(data[sof + 2 : sof + 4], "big")
    segment = bytearray(data[sof : sof + 2 + length])
    segment[5:9] = struct.pack(">HH", 60000, 60000)
    end = sof + 2 + length
    return data[:end] + bytes(segment) + data[end:]


@pytest.mark.parametrize("decode", [False, True])
def test_a_second_sof_over_the_pixel_limit_is_too_large(decode):
    with pytest.raises(ImageReject) as err:
        check_image(_two_sof_jpeg(), decode=decode)
    assert err.value.reason == "too_large"
    assert "60000x60000" in err.value.detail or "3600000000 pixels" in err.value.detail  # PIL's


def test_a_sof_after_progressive_scans_with_restarts_is_found():
    """The walk steps over entropy-coded data (stuffed 0xFF00, RSTn) scan after scan: a SOF
    placed just before EOI, after ten progressive scans, is still read."""
    noise = np.random.default_rng(0).integers(0, 255, (64, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "JPEG", progressive=True, restart_marker_blocks=1)
    data = buf.getvalue()
    rst = sum(data.count(bytes([0xFF, 0xD0 + i])) for i in range(8))
    assert data.count(b"\xff\xda") > 1 and data.count(b"\xff\x00") > 0 and rst > 0
    late_sof = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 60000, 60000) + bytes(10)
    bomb = data[:-2] + late_sof + data[-2:]
    assert jpeg_frames(data) == [(80, 64)]
    assert jpeg_frames(bomb) == [(80, 64), (60000, 60000)]
    with pytest.raises(ImageReject) as err:
        check_image(bomb, decode=False)
    assert err.value.reason == "too_large"


# -- one run per OUT; files respect the umask; stats are deterministic --------------------------
def test_a_second_run_into_the_same_out_is_refused(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 2)
    out = tmp_path / "out"
    with out_lock(out):  # as another process would hold it: a separate open file description
        code = (
            "import sys; from vlmdata.shards import write_shards\n"
            "from vlmdata.core.errors import DataError\n"
            f"try: write_shards({str(manifest)!r}, {str(images)!r}, {str(out)!r}, progress=False)\n"
            "except DataError as e: print(e); sys.exit(7)\n"
        )
        proc = subprocess.run(["python", "-c", code], capture_output=True, text=True, env=_env())
    assert proc.returncode == 7, proc.stderr
    assert "another vlmdata run is writing into this folder" in proc.stdout
    assert not (out / "shards").exists()
    write_shards(manifest, images, out, progress=False)  # free again: runs


def _env() -> dict[str, str]:
    import sys

    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def test_output_files_follow_the_umask(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 3)
    old = os.umask(0o022)
    try:
        write_shards(manifest, images, tmp_path / "out", progress=False)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").rglob("*") if p.is_file()}
    assert modes and set(modes.values()) == {0o644}, modes


def test_stats_are_byte_identical_across_reruns(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 4)
    stats = []
    for name in ("a", "b"):
        write_shards(manifest, images, tmp_path / name, progress=False)
        stats.append((tmp_path / name / "shards" / "train" / "data-000000_stats.json").read_bytes())
    assert stats[0] == stats[1]
    assert not {"start_time", "end_time", "duration"} & json.loads(stats[0]).keys()


# -- a full disk: a clean error and no temp file ---------------------------------------------------
@contextlib.contextmanager
def _tiny_tmpfs(path: Path, size: str = "600k"):
    path.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _big_set(root: Path, n: int = 6):
    images = root / "images"
    images.mkdir(parents=True)
    rows = []
    for i in range(n):
        (images / f"{i}.jpg").write_bytes(image_bytes(700 + i, (640, 480)))
        rows.append(
            {
                "key": f"k{i}",
                "source": "t",
                "split": "train",
                "path": f"{i}.jpg",
                "texts": [f"caption {i}"],
            }
        )
    from tests.shards.conftest import write_manifest

    return write_manifest(root / layout.MANIFEST, rows), images


def test_full_disk_is_a_clean_error_without_temp_files(tmp_path):
    manifest, images = _big_set(tmp_path / "in")
    with _tiny_tmpfs(tmp_path / "full") as full:
        res = run(
            "shard",
            manifest,
            "--images",
            images,
            "-o",
            full / "out",
            "--quiet",
            "--samples-per-shard",
            2,
        )
        left = [p.name for p in full.rglob("*") if ".tmp-" in p.name]
    assert res.exit_code == 2, res.output
    assert "No space left on device" in res.output and "Traceback" not in res.output
    assert left == []


def test_an_early_flush_error_fails_the_shard(tmp_path, monkeypatch):
    """The publishing thread fdatasyncs a shard every FLUSH_EVERY bytes while it is written.
    Linux reports a write-back error to one fsync call only, so an error there must fail that
    shard's publish: nothing is published, no temp file stays."""
    from vlmdata.shards import output

    manifest, images = _big_set(tmp_path / "in")
    calls = []

    def failing(fd):
        calls.append(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(output, "FLUSH_EVERY", 1)
    monkeypatch.setattr(os, "fdatasync", failing)
    with pytest.raises(OSError, match="Input/output error"):
        write_shards(manifest, images, tmp_path / "out", samples_per_shard=3, progress=False)
    out = tmp_path / "out"
    assert calls and not (out / layout.INDEX).exists()
    assert list(out.rglob("*_stats.json")) == [] and list(out.rglob("*.tar")) == []
    assert [p.name for p in out.rglob("*") if ".tmp-" in p.name] == []


def test_write_failure_midway_leaves_no_temp_file(tmp_path, monkeypatch):
    """The same without root: ENOSPC raised by the shard writer after some bytes."""
    from vlmdata.shards import output

    manifest, images = _big_set(tmp_path / "in")
    real = output.ShardFile.write

    def write(self, data):
        if self.size > 100_000:
            raise OSError(errno.ENOSPC, "No space left on device", str(self._tmp))
        real(self, data)

    monkeypatch.setattr(output.ShardFile, "write", write)
    res = run(
        "shard",
        manifest,
        "--images",
        images,
        "-o",
        tmp_path / "out",
        "--quiet",
        "--samples-per-shard",
        3,
    )
    assert res.exit_code == 2 and "No space left on device" in res.output
    assert [p.name for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name] == []
    with pytest.raises(DataError):
        verify_shards(tmp_path / "out")  # no index was written: not a shard folder


def test_a_malformed_trie_is_bad_input_at_the_cli(tmp_path):
    """Exit 2 with the file and the reason, not a KeyError traceback (exit 3)."""
    from cli.vlmtrain import main as vlmtrain_main

    path = _trie_file(tmp_path, lambda h: h.pop("level_starts"))
    args = ["eval", "retrieval-generative", "--checkpoint", tmp_path, "--data", tmp_path,
            "--trie", path, "--ids", path]  # fmt: skip
    res = CliRunner().invoke(vlmtrain_main, [str(a) for a in args])
    assert res.exit_code == 2, res.output
    assert f"{path}: trie header 'level_starts' is None" in res.output
