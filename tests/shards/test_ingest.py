"""`vlmdata ingest-img2dataset`: a folder written by img2dataset itself (its CLI, from the
loopback server in tests/shards/http_server.py) in each of its output formats, taken in with
no network access: every row in the shards or in rejects, images byte-identical to
img2dataset's. The oracles read img2dataset's files directly (tarfile, pyarrow, the folder).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cli.vlmdata import main as vlmdata_cli
from tests.shards.http_server import image_bytes, serve_images
from vlmdata.core import layout
from vlmdata.shards import ShardReader

BIN = Path(sys.executable).parent
# (route, n, caption): images, a 404, a 500, and a 200 that is not an image
ROWS = [*[("img", n, f"photo number {n}") for n in range(6)], ("missing", 7, "gone"),
        ("error", 8, "server error"), ("corrupt", 9, "not a picture")]  # fmt: skip
REASONS = {"gone": "http_404", "server error": "http_500", "not a picture": "not_an_image"}


def run_img2dataset(tmp: Path, fmt: str) -> Path:
    raw = tmp / f"raw-{fmt}"
    with serve_images() as server:
        urls = tmp / "urls.tsv"
        lines = ["url\tcaption"] + [f"{server.url(r, n)}\t{c}" for r, n, c in ROWS]
        urls.write_text("\n".join(lines) + "\n", encoding="utf-8")
        args = [str(BIN / "img2dataset"), f"--url_list={urls}", "--input_format=tsv",
                "--url_col=url", "--caption_col=caption", f"--output_folder={raw}",
                f"--output_format={fmt}", "--processes_count=1", "--thread_count=4",
                "--number_sample_per_shard=4", "--resize_mode=no",
                "--disable_all_reencoding=True", "--timeout=5", "--retries=0",
                "--enable_wandb=False", "--distributor=multiprocessing"]  # fmt: skip
        # img2dataset's pool SIGTERMs its workers, whose wandb import leaves two temp folders
        # each (download.img2dataset_run says more): they go to this test's folder, not /tmp
        (tmp / "tmp").mkdir(exist_ok=True)
        env = {**os.environ, "TMPDIR": str(tmp / "tmp")}
        res = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    return raw


def img2dataset_images(raw: Path, fmt: str) -> dict[str, bytes]:
    """key -> the image bytes img2dataset stored, read from its own files."""
    images: dict[str, bytes] = {}
    for parquet in sorted(raw.glob("*.parquet")):
        if fmt == "parquet":
            t = pq.read_table(parquet, columns=["key", "jpg"]).to_pydict()
            images.update({k: v for k, v in zip(t["key"], t["jpg"], strict=True) if v})
        elif fmt == "files":
            images.update({p.stem: p.read_bytes() for p in (raw / parquet.stem).glob("*.jpg")})
        else:
            with tarfile.open(raw / f"{parquet.stem}.tar") as tar:
                for m in tar:
                    if m.name.endswith(".jpg"):
                        images[m.name[:-4]] = tar.extractfile(m).read()
    return images


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("fmt", ["webdataset", "parquet", "files"])
def test_ingest_img2dataset_output_offline(tmp_path, fmt):
    raw = run_img2dataset(tmp_path, fmt)
    meta = pl.concat([pl.read_parquet(p) for p in sorted(raw.glob("*.parquet"))], how="diagonal")
    assert meta.height == len(ROWS)  # img2dataset wrote a row for every URL
    stored = img2dataset_images(raw, fmt)
    out = tmp_path / "out"
    args = ["ingest-img2dataset", str(raw), "-o", str(out), "--split", "train", "--quiet",
            "--samples-per-shard", "3"]  # fmt: skip
    res = CliRunner().invoke(vlmdata_cli, args, catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert f"{out}/shards/train/data-{{000000..000001}}.tar" in res.output

    reader = ShardReader(out)
    rejects = pl.read_parquet(out / layout.REJECTS)
    by_caption = dict(zip(meta["caption"], meta["key"], strict=True))
    # every row in the shards or in rejects, once
    assert sorted(reader.index["key"].to_list() + rejects["key"].to_list()) == sorted(meta["key"])
    for caption, reason in REASONS.items():
        assert rejects.filter(pl.col("key") == by_caption[caption])["reason"].to_list() == [reason]
    for route, n, caption in ROWS:
        if route != "img":
            continue
        key = by_caption[caption]
        sample = reader.get(key)
        assert sample["image"] == stored[key] == image_bytes(n)  # byte-identical
        assert sample["txt"] == caption and sample["meta"]["split"] == "train"
        assert sample["meta"]["url"].endswith(f"/img/{n}.jpg")
    assert reader.index["split"].unique().to_list() == ["train"]
    # resumable: a rerun keeps every finished shard (not rewritten) and ends byte-identical
    tars = sorted((out / "shards").glob("*/*.tar"))
    written = {p: p.stat().st_mtime_ns for p in tars}
    before = hashlib.sha256((out / layout.INDEX).read_bytes()).hexdigest()
    tars[0].with_name(tars[0].stem + "_stats.json").unlink()  # as if killed before its marker
    again = CliRunner().invoke(vlmdata_cli, args, catch_exceptions=False)
    assert again.exit_code == 0, again.output
    assert [p for p in tars if p.stat().st_mtime_ns != written[p]] == [tars[0]]
    assert hashlib.sha256((out / layout.INDEX).read_bytes()).hexdigest() == before


def test_ingest_refuses_a_folder_without_finished_shards(tmp_path):
    (tmp_path / "raw").mkdir()
    args = ["ingest-img2dataset", str(tmp_path / "raw"), "-o", str(tmp_path / "out")]
    res = CliRunner().invoke(vlmdata_cli, args)
    assert res.exit_code == 2 and "no finished img2dataset shard" in res.output


@pytest.fixture(scope="module")
def raw_webdataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("ingest-engines")
    raw = run_img2dataset(root, "webdataset")
    from vlmdata.download.ingest import ingest_img2dataset
    from vlmdata.shards import ShardOptions

    ingest_img2dataset(raw, root / "local", ShardOptions(samples_per_shard=2), progress=False)
    return raw, root


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("distributor", ["pyspark", "ray"])
def test_ingest_on_engine_equals_local(raw_webdataset, distributor):
    from tests.shards.test_distribute import all_files
    from vlmdata.download.ingest import ingest_img2dataset
    from vlmdata.shards import ShardOptions

    pytest.importorskip(distributor)
    raw, root = raw_webdataset
    opts = ShardOptions(samples_per_shard=2, workers=2, distributor=distributor)
    s = ingest_img2dataset(raw, root / distributor, opts, progress=False)
    assert s.kept == 6 and s.shards == 3
    assert all_files(root / distributor) == all_files(root / "local")
