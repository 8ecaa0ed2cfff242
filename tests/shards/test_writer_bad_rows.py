"""One bad row never ends a `shard` run; a manifest of the wrong schema is one error up front.

The messy inputs are the ones a real image folder or hand-made manifest holds: a symlink loop
(ELOOP), a 300-character file name (ENAMETOOLONG), a FIFO (which blocked the run for ever), a
NUL in a path, null or blank texts, a key with a trailing newline (`$` matched before it).
"""

from __future__ import annotations

import os
import threading

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from tests.shards.conftest import image_bytes, make_good_set, row, write_manifest
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import key_problem
from vlmdata.shards import ShardReader, write_samples, write_shards

# key -> expected reason; rows are interleaved with good ones
BAD_ROWS = {
    "loop": "unreadable_file",
    "longname": "unreadable_file",
    "fifo": "not_a_file",
    "nul": "bad_path",
    "nulltext": "empty_text",
    "emptylist": "empty_text",
    "blank": "empty_text",
    "nonetexts": "empty_text",
    "abc\n": "bad_key",
}


def _messy_set(root):
    manifest, images = make_good_set(root, 6)
    good = pl.read_parquet(manifest).to_dicts()
    os.symlink("loop_b.jpg", images / "loop_a.jpg")
    os.symlink("loop_a.jpg", images / "loop_b.jpg")
    os.mkfifo(images / "pipe.jpg")
    for i in range(5):
        (images / f"ok{i}.jpg").write_bytes(image_bytes(500 + i))
    bad = [
        row("loop", "loop_a.jpg"),
        row("longname", "x" * 300 + ".jpg"),
        row("fifo", "pipe.jpg"),
        row("nul", "ok0.jpg\0.png"),
        {**row("nulltext", "ok1.jpg"), "texts": [None, "b"]},
        {**row("emptylist", "ok2.jpg"), "texts": []},
        {**row("blank", "ok3.jpg"), "texts": ["a", "  "]},
        {**row("nonetexts", "ok4.jpg"), "texts": None},
        row("abc\n", good[0]["path"]),
    ]
    rows = [r for pair in zip(good, bad, strict=False) for r in pair] + bad[len(good) :]
    write_manifest(manifest, rows, ("entity_id",))
    return manifest, images, [g["key"] for g in good]


def test_messy_rows_become_rejects_and_the_run_ends(tmp_path):
    manifest, images, good_keys = _messy_set(tmp_path / "in")
    out = tmp_path / "out"
    done = {}
    # a FIFO used to block open() for ever: run in a thread and give up after 60 s
    worker = threading.Thread(
        target=lambda: done.update(s=write_shards(manifest, images, out, progress=False))
    )
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "write_shards hangs"
    summary = done["s"]
    assert summary.kept == len(good_keys)
    rejects = pl.read_parquet(out / layout.REJECTS)
    got = dict(zip(rejects["key"].to_list(), rejects["reason"].to_list(), strict=True))
    assert got == BAD_ROWS
    details = dict(zip(rejects["key"], rejects["detail"], strict=True))
    assert "ELOOP" in details["loop"] and "ENAMETOOLONG" in details["longname"]
    assert "FIFO" in details["fifo"] and details["nulltext"] == "texts[0] is null"
    split_of = {r["key"]: r["split"] for r in pl.read_parquet(manifest).to_dicts()}
    stored = [k for split in ("train", "test") for k in good_keys if split_of[k] == split]
    assert ShardReader(out).index["key"].to_list() == stored  # one split per shard


def test_streamed_rows_get_the_same_texts_rule(tmp_path):
    items = [
        (row("a", None), image_bytes(1)),
        ({**row("b", None), "texts": [None, "x"]}, image_bytes(2)),
        ({**row("c", None), "texts": []}, image_bytes(3)),
        (row("d\n", None), image_bytes(4)),
    ]
    summary = write_samples(items, tmp_path / "out", progress=False)
    assert summary.kept == 1
    assert dict(summary.rejects) == {"empty_text": 2, "bad_key": 1}


@pytest.mark.parametrize("key", ["abc\n", "abc\r", "", "a.b", "a/b", "../x", None, 5])
def test_key_rule_is_a_full_match(key):
    assert key_problem(key) is not None


def test_good_keys_pass():
    assert key_problem("flickr30k_1000092795") is None and key_problem("A-b_9") is None


@pytest.mark.parametrize(
    ("column", "array", "message"),
    [
        ("texts", pa.array(["one caption", "two"]), "texts is string, not list<string>"),
        ("texts", pa.array([[1], [2]], pa.list_(pa.int64())), "texts is list<element: int64>"),
        ("path", pa.array([1, 2]), "path is int64, not string"),
        ("key", pa.array([1, 2]), "key is int64, not string"),
    ],
)
def test_wrong_schema_is_one_error_before_any_work(tmp_path, column, array, message):
    manifest, images = make_good_set(tmp_path / "in", 2)
    table = pq.read_table(manifest)
    table = table.set_column(table.schema.get_field_index(column), column, array)
    pq.write_table(table, manifest)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="manifest column types") as err:
        write_shards(manifest, images, out, progress=False)
    assert message in str(err.value) and str(manifest) in str(err.value)
    assert not (out / "shards").exists() and not (out / layout.REJECTS).exists()


def test_exit_codes_tell_rejects_from_crashes(tmp_path, monkeypatch):
    manifest, images = make_good_set(tmp_path / "in", 3)
    args = ["shard", str(manifest), "--images", str(images), "-o", str(tmp_path / "out")]
    assert CliRunner().invoke(main, [*args, "--quiet"]).exit_code == 0
    (images / "sub" / "img0000.jpeg").write_bytes(b"")
    (images / "sub" / "img0001.png").write_bytes(b"")
    too_many = CliRunner().invoke(main, [*args, "--quiet", "--max-reject-ratio", "0.5"])
    assert too_many.exit_code == 1 and "above --max-reject-ratio" in too_many.output

    def boom(*a, **k):
        raise RuntimeError("a bug")

    monkeypatch.setattr("vlmdata.shards.write_shards", boom)
    crashed = CliRunner().invoke(main, [*args, "--quiet"])
    assert crashed.exit_code == 3 and "crashed" in crashed.output
    help_text = CliRunner().invoke(main, ["shard", "--help"]).output
    assert "1  done, but more than --max-reject-ratio" in help_text
    assert "3  crashed" in help_text
