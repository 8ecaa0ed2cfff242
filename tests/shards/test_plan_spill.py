"""The planned writer keeps every sample's KEY.json / KEY.txt in a spill file until its shard is
written (vlmdata/shards/spill.py): the tars hold the same bytes, and the file is gone after a
run, finished or failed."""

from __future__ import annotations

import json
import tarfile
import tempfile

import pytest

from tests.shards.conftest import make_good_set
from vlmdata.shards import publish, write_shards
from vlmdata.shards.spill import Spill, open_spill, read_pair, unpack_slot


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder, where the spill file goes, emptied for the test."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_spill_round_trip(private_tmp):
    spill = Spill()
    pairs = [(b'{"key":"a"}', b"a caption"), (b"{}", b""), ("é".encode(), b"t" * 1000)]
    slots = [spill.put(js, txt) for js, txt in pairs]
    assert unpack_slot(slots[1]) == (len(pairs[0][0]) + len(pairs[0][1]), 2, 0)  # back to back
    with open_spill(spill.path) as fd:
        assert [read_pair(fd, s) for s in reversed(slots)] == pairs[::-1]
    spill.close()
    assert list(private_tmp.iterdir()) == []


def test_tars_hold_the_planned_json_and_txt_and_the_spill_is_removed(tmp_path, private_tmp):
    manifest, images = make_good_set(tmp_path / "in", 9)
    write_shards(manifest, images, tmp_path / "out", samples_per_shard=4, progress=False)
    assert list(private_tmp.iterdir()) == []
    members = {}
    for tar in sorted((tmp_path / "out" / "shards").rglob("*.tar")):
        with tarfile.open(tar) as t:
            members.update({m.name: t.extractfile(m).read() for m in t if m.isfile()})
    meta = json.loads(members["s0000.json"])  # the manifest row as written (conftest.row)
    assert meta["texts"] == ["caption 0 of s0000", "caption 1 of s0000"]
    assert meta["records"][0]["key"] == "s0000" and meta["entity_id"] == "Q0"
    assert members["s0007.txt"] == b"caption 0 of s0007"
    assert sum(name.endswith(".json") for name in members) == 9


def test_spill_removed_when_writing_fails(tmp_path, private_tmp, monkeypatch):
    manifest, images = make_good_set(tmp_path / "in", 5)

    def broken(job, flusher=None):
        raise OSError("disk full (test)")

    monkeypatch.setattr(publish, "_fill_shard", broken)
    with pytest.raises(OSError, match="disk full"):
        write_shards(manifest, images, tmp_path / "out", progress=False)
    assert list(private_tmp.iterdir()) == []


def test_a_failed_table_thread_leaves_no_temp_file(tmp_path, private_tmp, monkeypatch):
    """The shared set-up / clean-up (shards/run.py): when the index and records tables fail
    after every shard was written, neither the rejects' temp file nor the spill stays."""
    from vlmdata.shards import tables

    manifest, images = make_good_set(tmp_path / "in", 5)

    def broken(*args, **kwargs):
        raise OSError("no space for the tables (test)")

    monkeypatch.setattr(tables, "stage_tables", broken)
    with pytest.raises(OSError, match="no space"):
        write_shards(manifest, images, tmp_path / "out", progress=False)
    assert list(private_tmp.iterdir()) == []
    left = [p.name for p in (tmp_path / "out").rglob("*") if ".tmp-" in p.name]
    assert left == []
    assert not (tmp_path / "out" / "rejects" / "rejects.parquet").exists()
