"""Shards in object storage: `shard` and `download` write to S3 (moto's server on loopback),
and verify, get, inspect, ShardReader, iter_samples, webdataset and HF datasets read them back.

The oracle is the same run written to a local folder: every object must hold the same bytes
as the local file (stats files compared without their timings), and every read must return
what the local read returns.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from tests.s3_server import moto_s3
from tests.shards.conftest import image_bytes, make_good_set, row, write_manifest
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.storage import Location
from vlmdata.shards import ShardReader, iter_samples, list_shards, write_shards
from vlmdata.shards.inspect import summarize
from vlmdata.shards.verify import verify_shards

TIMES = ("duration", "start_time", "end_time")


@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """23 images (jpg/png/webp) + manifest, and their local shards (the oracle)."""
    root = tmp_path_factory.mktemp("storage")
    manifest, images = make_good_set(root / "in", 23)
    write_shards(manifest, images, root / "local", samples_per_shard=5, progress=False)
    return manifest, images, root / "local"


def comparable(name: str, data: bytes) -> bytes:
    if name.endswith("_stats.json"):
        stats = {k: v for k, v in json.loads(data).items() if k not in TIMES}
        return json.dumps(stats, sort_keys=True).encode()
    return data


def local_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): comparable(p.name, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def remote_files(s3, prefix: str) -> dict[str, bytes]:
    return {k: comparable(k, v) for k, v in s3.objects(prefix).items()}


@pytest.fixture(scope="module")
def uploaded(s3, data):
    manifest, images, _ = data
    summary = write_shards(
        manifest,
        images,
        s3.url("shard-run"),
        samples_per_shard=5,
        storage_options=s3.options,
        progress=False,
    )
    assert (summary.shards, summary.written, summary.kept) == (
        6,
        6,
        23,
    )  # 12 train + 11 test, 5 per shard
    return s3.url("shard-run")


def test_shard_run_uploads_the_same_bytes_as_a_local_run(s3, data, uploaded):
    want = local_files(data[2])
    got = remote_files(s3, "shard-run")
    assert sorted(got) == sorted(want)  # no temp keys left behind either
    assert got == want


def test_verify_inspect_and_iter_samples_read_s3(s3, data, uploaded):
    report = verify_shards(uploaded, storage_options=s3.options)
    assert report.ok and (report.shards, report.samples) == (6, 23)
    assert summarize(uploaded, s3.options) == summarize(data[2])
    assert list_shards(uploaded, s3.options) == [
        f"{uploaded}/shards/{split}/data-{i:06d}.tar"
        for split in ("train", "test")
        for i in range(3)
    ]
    assert list(iter_samples(uploaded, storage_options=s3.options)) == list(iter_samples(data[2]))


def test_verify_reports_a_corrupted_object(s3, data):
    manifest, images, _ = data
    url = s3.url("corrupt")
    write_shards(
        manifest, images, url, samples_per_shard=5, storage_options=s3.options, progress=False
    )
    key = "corrupt/shards/train/data-000001.tar"
    body = bytearray(s3.objects("corrupt")["shards/train/data-000001.tar"])
    body[700] ^= 0xFF  # inside the first sample's image data
    s3.client().put_object(Bucket=s3.bucket, Key=key, Body=bytes(body))
    problems = {
        (m.shard, m.key is None) for m in verify_shards(url, storage_options=s3.options).mismatches
    }
    assert problems == {
        ("shards/train/data-000001.tar", True),
        ("shards/train/data-000001.tar", False),
    }


def test_reader_one_ranged_get_per_sample(s3, data, uploaded):
    local = ShardReader(data[2])
    remote = ShardReader(uploaded, storage_options=s3.options, verify=True)
    calls = []
    fs = remote.location.fs
    real = fs.cat_file

    def counting(path, *args, **kwargs):
        calls.append((path, kwargs.get("start"), kwargs.get("end")))
        return real(path, *args, **kwargs)

    fs.cat_file = counting
    try:
        got = [remote[i] for i in range(len(remote))]
    finally:
        del fs.cat_file
    assert got == [local[i] for i in range(len(local))]
    assert len(calls) == len(local) == 23
    rows = local.index.rows(named=True)
    assert [(c[1], c[2] - c[1]) for c in calls] == [(r["sample_offset"], r["size"]) for r in rows]


def test_reader_works_in_a_spawned_worker(s3, data, uploaded):
    """Pickled into another process (DataLoader workers), the reader opens its own client."""
    import multiprocessing

    remote = ShardReader(uploaded, storage_options=s3.options)
    remote[0]  # the parent's file system must not travel with it
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(remote.__getitem__, [3, 17])
    local = ShardReader(data[2])
    assert got == [local[3], local[17]]


def test_cli_get_inspect_verify_with_environment_credentials(s3, data, uploaded, tmp_path):
    """The CLI takes credentials and endpoint from AWS_* (set by the fixture) alone."""
    r = CliRunner().invoke(main, ["get", uploaded, "s0007", "-o", str(tmp_path / "g")])
    assert r.exit_code == 0, r.output
    local = ShardReader(data[2]).get("s0007")
    assert (tmp_path / "g" / f"s0007.{local['image_ext']}").read_bytes() == local["image"]
    assert json.loads((tmp_path / "g" / "s0007.json").read_text()) == local["meta"]
    r = CliRunner().invoke(main, ["verify", uploaded, "--quiet"])
    assert r.exit_code == 0 and "checked 23 samples in 6 shards: ok" in r.output
    r = CliRunner().invoke(main, ["inspect", uploaded, "--json"])
    assert r.exit_code == 0 and json.loads(r.output)["samples"] == 23
    r = CliRunner().invoke(main, ["get", uploaded, "nope"])
    assert r.exit_code == 2 and f"{uploaded}/{layout.INDEX}" in r.output


def test_cli_shard_with_storage_options_json(s3, data):
    manifest, images, local = data
    opts = json.dumps(s3.options)
    args = ["shard", str(manifest), "--images", str(images), "-o", s3.url("cli-run")]
    r = CliRunner().invoke(main, [*args, "--samples-per-shard", "5", "--storage-options", opts])
    assert r.exit_code == 0, r.output
    assert remote_files(s3, "cli-run") == local_files(local)
    bad = CliRunner().invoke(main, [*args, "--storage-options", "[1, 2]"])
    assert bad.exit_code == 2 and "JSON object" in bad.output


def test_webdataset_and_hf_datasets_read_uploaded_shards(s3, data, uploaded, tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    # tests/conftest.py keeps the HF hub offline; this loopback S3 is not the hub
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    from webdataset.tariterators import group_by_keys, tar_file_expander

    from vlmdata.shards.reader import shard_streams

    local = ShardReader(data[2])
    samples = list(group_by_keys(tar_file_expander(shard_streams(uploaded, s3.options))))
    assert [s["__key__"] for s in samples] == local.index["key"].to_list()
    first = local[0]
    assert samples[0][first["image_ext"]] == first["image"]
    assert samples[0]["txt"].decode() == first["txt"]

    # HF's webdataset builder wants one image type per data set: a JPEG-only upload
    images = tmp_path / "jpg"
    images.mkdir()
    rows = []
    for i in range(6):
        (images / f"{i}.jpg").write_bytes(image_bytes(i))
        rows.append(row(f"k{i}", f"{i}.jpg"))
    manifest = write_manifest(tmp_path / "m.parquet", rows)
    url = s3.url("hf")
    write_shards(
        manifest, images, url, samples_per_shard=4, storage_options=s3.options, progress=False
    )
    ds = datasets.load_dataset(
        "webdataset",
        data_files={"train": list_shards(url, s3.options)},
        split="train",
        storage_options={"client_kwargs": {"endpoint_url": s3.endpoint}},
        cache_dir=str(tmp_path / "hf"),
    )
    assert [r["__key__"] for r in ds] == [f"k{i}" for i in range(6)]
    assert ds[4]["txt"] == "caption 0 of k4" and ds[4]["jpg"].size == (40, 32)


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from vlmdata.shards import output, write_shards

    real_add = output.ShardFile.add_sample

    def add_sample(self, data):  # SIGKILL halfway through the third shard: no cleanup runs
        if self.rel.endswith("train/data-000002.tar") and self.count == 1:
            os.kill(os.getpid(), signal.SIGKILL)
        real_add(self, data)

    output.ShardFile.add_sample = add_sample
    write_shards(sys.argv[1], sys.argv[2], sys.argv[3], samples_per_shard=5, progress=False)
    """
)


def test_killed_upload_run_resumes_byte_identical(s3, data, tmp_path):
    manifest, images, local = data
    url = s3.url("killed")
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    (tmp_path / "tmp").mkdir()  # the kill leaves the plan's spill file: here, not in /tmp
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "TMPDIR": str(tmp_path / "tmp")}
    proc = subprocess.run(
        [sys.executable, str(script), str(manifest), str(images), url], env=env, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL
    # Shards 0 and 1 were written; each is published (uploaded, then its _stats.json) by a
    # thread while the next one is written, so the kill may come before or after either.
    after_kill = {k: comparable(k, v) for k, v in s3.objects("killed").items()}
    want = local_files(local)
    possible = {f"shards/train/data-00000{i}{s}" for i in (0, 1) for s in (".tar", "_stats.json")}
    assert set(after_kill) <= possible  # no shard 2, no temp key, no index
    assert {k: want[k] for k in after_kill} == after_kill  # every object whole
    committed = [k for k in after_kill if k.endswith("_stats.json")]
    assert all(k.replace("_stats.json", ".tar") in after_kill for k in committed)
    with pytest.raises(DataError, match=f"no {layout.INDEX} here"):
        ShardReader(url)
    summary = write_shards(manifest, images, url, samples_per_shard=5, progress=False)
    assert (summary.skipped, summary.written) == (len(committed), 6 - len(committed))
    assert remote_files(s3, "killed") == want


def test_location_commit_is_whole_or_nothing(s3, tmp_path):
    loc = Location(s3.url("loc"), s3.options)
    with pytest.raises(RuntimeError), loc.staged("a.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert not loc.exists("a.bin") and not tmp.exists()
    loc.write_bytes("a.bin", b"whole")
    assert loc.read_bytes("a.bin") == b"whole" and loc.read_range("a.bin", 1, 3) == b"hol"
    assert loc.listdir() == ["a.bin"] and loc.size("a.bin") == 5


def test_download_writes_to_s3_and_reruns_up_to_date(s3, tmp_path):
    """cc3m TSV -> loopback HTTP -> img2dataset -> repack into S3; work files stay local."""
    from tests.shards.http_server import image_bytes as served
    from tests.shards.http_server import serve_images
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download
    from vlmdata.shards.options import ShardOptions

    url = s3.url("download")
    fetch = FetchOptions(processes=1, threads=4, timeout=2, raw_shard_size=3)
    with serve_images() as server:
        lines = [(f"photo {n}", server.url("img", n)) for n in range(5)]
        lines.append(("not there", server.url("missing", 9)))
        tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text("".join(f"{c}\t{u}\n" for c, u in lines), encoding="utf-8")
        kw = dict(
            work_dir=tmp_path / "work",
            fetch=fetch,
            shard=ShardOptions(samples_per_shard=2),
            allow_private=True,
            storage_options=s3.options,
            progress=False,
        )
        summary = download("cc3m", [tsv], url, **kw)
        assert (summary.kept, dict(summary.rejects), summary.shards) == (5, {"http_404": 1}, 3)
        again = download("cc3m", [tsv], url, **kw)
    assert again.up_to_date and again.kept == 5
    names = set(s3.objects("download"))
    assert {layout.INDEX, layout.MANIFEST, layout.REJECTS, "wids.json"} <= names
    assert not any(n.startswith(".download") for n in names)  # work files are not uploaded
    assert verify_shards(url, storage_options=s3.options).ok
    reader = ShardReader(url, storage_options=s3.options)
    assert [reader[i]["image"] for i in range(5)] == [served(n) for n in range(5)]
    assert [reader[i]["txt"] for i in range(5)] == [f"photo {n}" for n in range(5)]
