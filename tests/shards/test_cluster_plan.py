"""The partitioned plan (cluster_plan.py) run in this process: the same rows through the local
plan and through the partitioned one (tiny slices and three hash partitions, so components
cross slices and partitions) give the same bytes in every output file. Spark and Ray run it
in tests/shards/test_cluster_engines.py; this file checks the rules cheaply.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from tests.shards.cluster_inputs import make_rule_set
from tests.shards.conftest import image_bytes, row, write_manifest
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.shards import ShardOptions, cluster_plan, write_shards, writer
from vlmdata.shards.cluster_files import EDGE, PAIR, Scratch
from vlmdata.shards.cluster_links import component_buckets, find_components, save_adjacency
from vlmdata.shards.cluster_tasks import group_edges
from vlmdata.shards.distribute import Engine
from vlmdata.shards.planrows import ManifestRecords


def sha_of_files(out: Path) -> dict[str, str]:
    """sha256 of every output file, `_stats.json` included (it holds no timings)."""
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
    }


@pytest.fixture
def on_partitions(monkeypatch):
    """The partitioned plan on the in-process engine, 7-row slices, 3 hash partitions."""
    monkeypatch.setattr(
        cluster_plan,
        "partitioned",
        lambda inp, run: isinstance(inp.rows, ManifestRecords) and inp.refs is None,
    )
    monkeypatch.setattr(cluster_plan, "SLICE_ROWS", 7)
    monkeypatch.setattr(cluster_plan, "BUCKETS", 3)


def both_ways(monkeypatch, manifest, images, root: Path, opts: ShardOptions):
    """(local summary, partitioned summary, files equal) for one input and options."""
    local = write_shards(manifest, images, root / "local", opts, progress=False)
    with monkeypatch.context() as m:
        m.setattr(cluster_plan, "SLICE_ROWS", 7)
        m.setattr(cluster_plan, "BUCKETS", 3)
        m.setattr(cluster_plan, "partitioned", lambda inp, run: True)
        m.setattr(writer, "on_engine", lambda opt: True)  # the manifest read from its file
        part = write_shards(manifest, images, root / "part", opts, progress=False)
    return local, part, sha_of_files(root / "local") == sha_of_files(root / "part")


# (line, reason) of the rule set's rejects, from its design (cluster_inputs.py): the first
# "dupkey" names a missing image under image_key "gone"; the second claims the key; k020
# repeats its bytes; the third "dupkey" is a duplicate; "chain" links k007's bytes to a key
# whose second row (own image) opens, so k024's bytes repeat it.
RULE_SET_REJECTS = [
    (7, "missing_file"),
    (8, "duplicate_key"),
    (20, "image_key_conflict"),
    (21, "duplicate_image"),
    (23, "bad_key"),
    (24, "missing_file"),
    (25, "not_an_image"),
    (33, "duplicate_image"),
    (34, "duplicate_key"),
    (35, "duplicate_image"),
    (38, "duplicate_image"),
    (41, "duplicate_image"),
]


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"duplicate_images": "share"},
        {"every_text": True},
        {"max_shard_bytes": 6000, "samples_per_shard": 5},
    ],
    ids=["reject", "share", "every-text", "byte-cap"],
)
def test_partitioned_plan_equals_local_on_every_rule(tmp_path, monkeypatch, kw):
    manifest, images = make_rule_set(tmp_path / "in")
    opts = ShardOptions(**{"samples_per_shard": 3, **kw})
    local, part, same = both_ways(monkeypatch, manifest, images, tmp_path, opts)
    assert same
    assert (part.kept, dict(part.rejects), part.shards, part.images) == (
        local.kept,
        dict(local.rejects),
        local.shards,
        local.images,
    )
    rejects = pl.read_parquet(tmp_path / "part" / layout.REJECTS)
    got = list(zip(rejects["line"].to_list(), rejects["reason"].to_list(), strict=True))
    if not kw.get("duplicate_images"):
        assert got == RULE_SET_REJECTS
    else:  # shared: every byte-identical image joins the first one; its keys then repeat
        assert "duplicate_image" not in {r for _, r in got}


def random_set(root: Path, seed: int) -> tuple[Path, Path]:
    """60 rows drawn from 45 keys, 3 image keys and 12 files (two repeating others' bytes,
    one missing), two sources (one shares duplicates) and two splits."""
    rng = random.Random(seed)
    images = root / "images"
    images.mkdir(parents=True)
    for i in range(11):
        (images / f"f{i}.png").write_bytes(image_bytes(100 + i, (24, 20), "PNG"))
    (images / "f9.png").write_bytes((images / "f1.png").read_bytes())
    (images / "f10.png").write_bytes((images / "f2.png").read_bytes())
    rows = []
    for _ in range(60):
        ik = rng.choice([None] * 7 + ["ia", "ib", "ic"])
        rows.append(
            row(
                f"r{rng.randrange(45)}",
                f"f{rng.randrange(12)}.png",
                rng.choice(["train", "test"]),
                n_texts=rng.randrange(1, 4),
                image_key=ik,
                source=rng.choice(["test", "llava"]),
            )
        )
    return write_manifest(root / "manifest.parquet", rows, ("image_key",)), images


@pytest.mark.parametrize("seed", range(4))
def test_partitioned_plan_equals_local_on_random_sets(tmp_path, monkeypatch, seed):
    manifest, images = random_set(tmp_path / "in", seed)
    if seed % 2:  # each job file's samples one row group at a time (taken across pieces)
        monkeypatch.setattr(cluster_plan, "JOB_BYTES", 1)
    opts = ShardOptions(samples_per_shard=4, every_text=seed % 2 == 1)
    local, part, same = both_ways(monkeypatch, manifest, images, tmp_path, opts)
    assert same and local.rejected > 0 and part.kept == local.kept


def test_every_text_clash_is_the_same_error(tmp_path, monkeypatch):
    """A copy key KEY_t1 that is also a record key elsewhere: both plans refuse it alike."""
    images = tmp_path / "images"
    images.mkdir()
    for i in range(6):
        (images / f"{i}.png").write_bytes(image_bytes(i, (20, 20), "PNG"))
    rows = [row(f"a{i}", f"{i}.png", n_texts=2) for i in range(5)]
    rows.append(row("a1_t1", "5.png"))
    manifest = write_manifest(tmp_path / "manifest.parquet", rows)
    opts = ShardOptions(every_text=True)
    with pytest.raises(DataError) as local:
        write_shards(manifest, images, tmp_path / "local", opts, progress=False)
    monkeypatch.setattr(cluster_plan, "partitioned", lambda inp, run: True)
    monkeypatch.setattr(cluster_plan, "SLICE_ROWS", 2)
    with pytest.raises(DataError) as part:
        write_shards(manifest, images, tmp_path / "part", opts, progress=False)
    assert str(part.value) == str(local.value)
    assert "'a1_t1'" in str(part.value)


def test_links_group_image_keys_by_shared_hash():
    pairs = np.zeros(5, dtype=PAIR)
    pairs["hi"] = [1, 1, 1, 2, 3]
    pairs["ik_hi"] = [9, 5, 9, 7, 8]  # group 1: image keys 5 and 9; 2 and 3 alone
    edges = group_edges(pairs)
    assert [(int(e["a_hi"]), int(e["b_hi"])) for e in edges] == [(5, 9)]


def test_components_of_links(tmp_path):
    """Links 1-2, 2-3, 7-8, 3-4 (high words; low words 0) in two edge files: components
    {1,2,3,4} and {7,8}; each key's partition is its component's smallest key's (mod 5);
    the label of 1 needs three rounds to reach 4, and a fourth changes nothing."""
    scratch = Scratch(str(tmp_path), slice_rows=4, buckets=5)
    for j, (a, b) in enumerate([([1, 2], [2, 3]), ([7, 3], [8, 4])]):
        edges = np.zeros(2, dtype=EDGE)
        edges["a_hi"], edges["b_hi"] = a, b
        save_adjacency(scratch, j, edges)
    with Engine("multiprocessing", 1) as engine:
        assert find_components(engine, scratch) == 4
    got = {}
    for key in (1, 2, 3, 4, 7, 8, 9):
        hi = np.array([key], dtype=np.uint64)
        p = int(scratch.bucket_of(hi)[0])
        got[key] = int(component_buckets(scratch, p, hi, np.zeros(1, dtype=np.uint64))[0])
    assert got == {1: 1, 2: 1, 3: 1, 4: 1, 7: 2, 8: 2, 9: 4}  # 9: unlinked, its own


def test_scratch_folder_goes_with_the_plan(tmp_path, monkeypatch, on_partitions):
    monkeypatch.setenv("VLMDATA_PLAN_DIR", str(tmp_path / "plans"))
    manifest, images = make_rule_set(tmp_path / "in")
    write_shards(manifest, images, tmp_path / "out", samples_per_shard=3, progress=False)
    import gc

    gc.collect()
    assert list((tmp_path / "plans").iterdir()) == []


def test_each_image_is_checked_once(tmp_path, monkeypatch, on_partitions):
    """Placement takes stage 2's check results: one check per distinct image key, as the
    local plan makes (its checks are the oracle)."""
    from vlmdata.shards import prepare

    calls: list[str] = []
    real = prepare.prepare_file

    def counted(folder, rel, opts, real_dirs):
        calls.append(rel)
        return real(folder, rel, opts, real_dirs)

    monkeypatch.setattr(prepare, "prepare_file", counted)
    manifest, images = make_rule_set(tmp_path / "in")
    write_shards(manifest, images, tmp_path / "part", samples_per_shard=3, progress=False)
    on_engine = sorted(calls)
    calls.clear()
    monkeypatch.setattr(cluster_plan, "partitioned", lambda inp, run: False)
    write_shards(manifest, images, tmp_path / "local", samples_per_shard=3, progress=False)
    rows = pl.read_parquet(manifest)
    image_keys = rows.select(pl.coalesce("image_key", "key")).n_unique()
    assert on_engine == sorted(calls) and len(calls) == image_keys


def test_download_repack_partitioned_equals_local(tmp_path, monkeypatch):
    """download's fetched rows carry their raw refs (shard, key) through the partitions, read
    from their file a slice at a time (ManifestFile) as on an engine."""
    from tests.shards.http_server import serve_images
    from vlmdata.download import pipeline
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download

    fetch = FetchOptions(processes=1, threads=4, timeout=2, raw_shard_size=3)
    with serve_images() as server:
        lines = [(f"photo {n}", server.url("img", n)) for n in range(6)]
        lines += [("same bytes as photo 1", server.url("dup", 1))]
        lines += [("gone", server.url("missing", 7)), ("photo 2 again", server.url("dup", 2))]
        tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text("".join(f"{c}\t{u}\n" for c, u in lines), encoding="utf-8")
        kw = dict(work_dir=tmp_path / "work", allow_private=True, keep_raw=True, progress=False)
        shard = ShardOptions(samples_per_shard=2)
        local = download("cc3m", [tsv], tmp_path / "local", fetch=fetch, shard=shard, **kw)
        monkeypatch.setattr(cluster_plan, "partitioned", lambda inp, run: True)
        monkeypatch.setattr(pipeline, "on_engine", lambda opt: True)  # fetched rows: a file
        monkeypatch.setattr(cluster_plan, "SLICE_ROWS", 2)
        monkeypatch.setattr(cluster_plan, "BUCKETS", 3)
        part = download("cc3m", [tsv], tmp_path / "part", fetch=fetch, shard=shard, **kw)
    assert (part.kept, dict(part.rejects)) == (local.kept, dict(local.rejects))
    assert dict(local.rejects) == {"duplicate_image": 2, "http_404": 1}
    assert sha_of_files(tmp_path / "part") == sha_of_files(tmp_path / "local")


def test_partitions_grow_with_rows():
    assert cluster_plan.partitions(10, 1) == 2
    assert cluster_plan.partitions(10, 4) == 8
    assert cluster_plan.partitions(100 * cluster_plan.BUCKET_ROWS + 1, 4) == 101


def test_manifest_file_slices_cross_row_groups(tmp_path):
    """Slices of exactly n rows whatever the file's row groups (3 rows each here)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [row(f"k{i}", f"{i}.png") for i in range(20)]
    path = write_manifest(tmp_path / "m.parquet", rows)
    table = pq.read_table(path)
    pq.write_table(table, path, row_group_size=3)
    manifest = cluster_plan.ManifestFile.open(path)
    assert len(manifest) == 20 and manifest.columns[0] == "key"
    got = list(manifest.slices(7))
    assert [t.num_rows for t in got] == [7, 7, 6]
    assert pa.concat_tables(got).equals(table)


def test_manifest_file_refuses_what_write_shards_refuses(tmp_path):
    bad = tmp_path / "m.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(DataError, match="not a readable Parquet manifest"):
        cluster_plan.ManifestFile.open(bad)


def test_partitioned_rerun_reuses_finished_shards(tmp_path, monkeypatch, on_partitions):
    """Same inputs, same partitioned plan: a rerun finds every shard finished (its digest
    and checksum in `_stats.json`) and writes none; one shard removed is written again."""
    manifest, images = make_rule_set(tmp_path / "in")
    out = tmp_path / "out"
    first = write_shards(manifest, images, out, samples_per_shard=3, progress=False)
    before = sha_of_files(out)
    again = write_shards(manifest, images, out, samples_per_shard=3, progress=False)
    assert (again.written, again.skipped) == (0, first.shards)
    next(out.rglob("*.tar")).unlink()
    third = write_shards(manifest, images, out, samples_per_shard=3, progress=False)
    assert (third.written, third.skipped) == (1, first.shards - 1)
    assert sha_of_files(out) == before


def test_manifest_without_split_column(tmp_path, monkeypatch):
    """Only key, path and texts are required: samples without a split go to one folder."""
    import pyarrow.parquet as pq

    manifest, images = make_rule_set(tmp_path / "in")
    pq.write_table(pq.read_table(manifest).drop_columns(["split", "source"]), manifest)
    local, part, same = both_ways(monkeypatch, manifest, images, tmp_path, ShardOptions())
    assert same and part.shards == local.shards == 1


def test_take_rows_equals_arrow_take():
    """take_rows (a chunk at a time) gives Table.take's rows in its order: repeats, rows from
    every chunk interleaved, empty chunks, no rows."""
    rng = np.random.default_rng(7)
    for _ in range(100):
        sizes = rng.integers(0, 5, size=rng.integers(1, 5)).tolist()
        batches = [
            pa.record_batch({"s": pa.array([f"{k}-{i}" for i in range(k)], pa.string()),
                             "b": pa.array([bytes([i]) * i for i in range(k)], pa.binary())})
            for k in sizes
        ]  # fmt: skip
        t = pa.Table.from_batches(batches)
        rows = rng.integers(0, max(t.num_rows, 1), size=rng.integers(0, 12)) if t.num_rows else []
        rows = np.asarray(rows, dtype=np.int64)
        got = cluster_plan.take_rows(t, rows)
        assert got.schema == t.schema
        assert got.to_pylist() == t.take(pa.array(rows, pa.int64())).to_pylist()
