"""`--distributor pyspark|ray`: the planning tasks and one task per output shard run on Spark
(local[2]) or Ray (2 local CPUs), and the output equals the single-process run byte for byte.

The set has 80 images, so the planning pass spans two tasks (64 rows each), and image 70 holds
the same bytes as image 2: the duplicate must be found across tasks, exactly as in one process.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.shards.conftest import make_good_set
from vlmdata.core import layout
from vlmdata.shards import ShardOptions, write_shards


def all_files(out: Path) -> dict[str, bytes]:
    """Every output file, `_stats.json` included (it holds no timings)."""
    return {
        p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    root = tmp_path_factory.mktemp("distribute")
    manifest, images = make_good_set(root / "in", 80)
    rows = pl.read_parquet(manifest)
    dup, orig = rows["path"][70], rows["path"][2]
    (images / dup).write_bytes((images / orig).read_bytes())
    s = write_shards(manifest, images, root / "local", samples_per_shard=10, progress=False)
    assert (s.kept, dict(s.rejects), s.shards) == (79, {"duplicate_image": 1}, 8)
    rejects = pl.read_parquet(root / "local" / layout.REJECTS)
    assert rejects["key"].to_list() == ["s0070"]
    return manifest, images, root


@pytest.mark.slow
@pytest.mark.parametrize("distributor", ["pyspark", "ray"])
def test_engine_run_equals_local_run(reference, distributor):
    pytest.importorskip(distributor)
    manifest, images, root = reference
    opts = ShardOptions(samples_per_shard=10, workers=2, distributor=distributor)
    out = root / distributor
    s = write_shards(manifest, images, out, opts, progress=False)
    assert (s.kept, dict(s.rejects), s.written) == (79, {"duplicate_image": 1}, 8)
    assert all_files(out) == all_files(root / "local")


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """A cc3m download through the loopback server (multiprocessing), raw output kept in WORK."""
    from tests.shards.http_server import serve_images
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download

    root = tmp_path_factory.mktemp("dl-distribute")
    fetch = FetchOptions(processes=1, threads=4, timeout=2, raw_shard_size=3)
    with serve_images() as server:
        lines = [(f"photo {n}", server.url("img", n)) for n in range(6)]
        lines += [
            ("same bytes as photo 1", server.url("dup", 1)),
            ("gone", server.url("missing", 7)),
        ]
        tsv = root / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text("".join(f"{c}\t{u}\n" for c, u in lines), encoding="utf-8")
        kw = dict(work_dir=root / "work", allow_private=True, keep_raw=True, progress=False)
        s = download(
            "cc3m",
            [tsv],
            root / "local",
            fetch=fetch,
            shard=ShardOptions(samples_per_shard=2),
            **kw,
        )
    assert (s.kept, dict(s.rejects)) == (6, {"duplicate_image": 1, "http_404": 1})
    return tsv, root, fetch, kw


@pytest.mark.slow
@pytest.mark.parametrize("distributor", ["pyspark", "ray"])
def test_download_repack_on_engine_equals_local(fetched, distributor):
    """Same raw img2dataset output (nothing refetched), repacked on the engine: same bytes."""
    from dataclasses import replace

    from vlmdata.download.pipeline import download

    pytest.importorskip(distributor)
    tsv, root, fetch, kw = fetched
    shard = ShardOptions(samples_per_shard=2, workers=2, distributor=distributor)
    fetch = replace(fetch, distributor=distributor)
    s = download("cc3m", [tsv], root / distributor, fetch=fetch, shard=shard, **kw)
    assert (s.kept, s.shards) == (6, 3)
    assert all_files(root / distributor) == all_files(root / "local")
