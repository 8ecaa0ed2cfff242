"""Download: index img2dataset's tars in place, or repack them (webdataset or parquet raw)?

    .venv/bin/python benchmarks/bench_download.py [--n 500] [--repeats 3] [--processes 1]

Not a test. Serves N generated images from the tests' loopback server, fetches them twice with
img2dataset (raw output_format webdataset, then parquet; same child-process runner as
`vlmdata download`), then times the step from raw output to a finished OUT, median of
--repeats, on the same raw files:
  index-in-place   scan img2dataset's tars, write index/index.parquet + wids.json, keep the tars
                   (breaks the contract: positional keys, told-not-sniffed extension, its own
                   JSON, no dedup, thread-order members -> not reproducible)
  repack-wds       read tars + parquet, write_samples (the full contract)
  repack-parquet   read the parquet's image column, write_samples (the full contract)
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.shards.http_server import serve_images  # noqa: E402
from vlmdata.core import layout  # noqa: E402
from vlmdata.core.atomic import write_json  # noqa: E402
from vlmdata.download.img2dataset_run import (  # noqa: E402
    KEY_COLUMN,
    FetchOptions,
    img2dataset_kwargs,
    run_img2dataset,
)
from vlmdata.download.results import read_shard  # noqa: E402
from vlmdata.shards import write_samples  # noqa: E402
from vlmdata.shards.images import check_image  # noqa: E402
from vlmdata.shards.tarfmt import iter_members  # noqa: E402

RAW_SHARD = 100


def manifest_rows(server, n: int) -> list[dict]:
    rows = []
    for i in range(n):
        fmt = "png" if i % 10 == 9 else "jpg"
        rows.append(
            {
                "key": f"bench_{i:06d}",
                "source": "bench",
                "split": "train",
                "url": server.url("img", i, fmt),
                "path": None,
                "texts": [f"generated image number {i}"],
            }
        )
    return rows


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def fetch(rows: list[dict], work: Path, raw_format: str, processes: int) -> tuple[float, float]:
    """(wall s, CPU s of img2dataset and its workers) for one fetch."""
    work.mkdir(parents=True)
    url_list = work / "urls.parquet"
    pq.write_table(
        pa.table({"url": [r["url"] for r in rows], KEY_COLUMN: [r["key"] for r in rows]}), url_list
    )
    opts = FetchOptions(
        processes=processes, threads=16, raw_format=raw_format, raw_shard_size=RAW_SHARD
    )
    kwargs = img2dataset_kwargs(url_list, work / "raw", opts)
    t0, c0 = time.perf_counter(), children_cpu()
    run_img2dataset(kwargs, work, -(-len(rows) // RAW_SHARD), progress=False)
    return time.perf_counter() - t0, children_cpu() - c0


def repack(rows: list[dict], raw: Path, raw_format: str, out: Path) -> int:
    def items():
        for shard_id in range(-(-len(rows) // RAW_SHARD)):
            got = read_shard(raw, shard_id, raw_format, "jpg")
            for row in rows[shard_id * RAW_SHARD : (shard_id + 1) * RAW_SHARD]:
                f = got.get(row["key"])
                if f is not None and f.image is not None:
                    yield row, f.image

    return write_samples(items(), out, progress=False).kept


def index_in_place(rows: list[dict], raw: Path, out: Path) -> int:
    """The cheapest index over img2dataset's own tars: offsets, sha256, sniffed size/format."""
    by_key = {r["key"]: r for r in rows}
    index, shardlist = [], []
    for tar in sorted(raw.glob("*.tar")):
        meta = pq.read_table(tar.with_suffix(".parquet"), columns=["key", KEY_COLUMN]).to_pydict()
        ikey_to_vkey = dict(zip(meta["key"], meta[KEY_COLUMN], strict=True))
        md5 = hashlib.md5(usedforsecurity=False)
        count = 0
        with open(tar, "rb") as f:
            for member, data in iter_members(f):
                ikey, ext = member.name.split(".", 1)
                if ext != "jpg":
                    continue
                row = by_key[ikey_to_vkey[ikey]]
                info = check_image(data)
                index.append(
                    {
                        "key": ikey,
                        "shard": tar.name,
                        "image_offset": member.offset,
                        "image_size": member.size,
                        "image_sha256": hashlib.sha256(data).hexdigest(),
                        "format": info.format,
                        "width": info.width,
                        "height": info.height,
                        **{k: row[k] for k in ("source", "split", "texts", "url")},
                        "manifest_key": row["key"],
                    }
                )
                count += 1
        md5.update(tar.read_bytes())
        shardlist.append({"url": tar.name, "nsamples": count, "md5sum": md5.hexdigest()})
    out.mkdir(parents=True, exist_ok=True)
    (out / layout.INDEX).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(index), out / layout.INDEX, compression="zstd")
    write_json(out / "wids.json", {"__kind__": "wids-shard-index-v1", "shardlist": shardlist})
    return len(index)


def interleaved(fns: dict, repeats: int, root: Path) -> dict[str, tuple[float, float, int]]:
    """Median wall and CPU seconds per strategy, taking turns (the machine's load is shared)."""
    wall: dict[str, list[float]] = {name: [] for name in fns}
    cpu: dict[str, list[float]] = {name: [] for name in fns}
    kept: dict[str, int] = {}
    for _ in range(repeats):
        for name, fn in fns.items():
            out = root / name
            shutil.rmtree(out, ignore_errors=True)
            t0, c0 = time.perf_counter(), time.process_time()
            kept[name] = fn(out)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    med = statistics.median
    return {name: (med(wall[name]), med(cpu[name]), kept[name]) for name in fns}


def dir_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5, help="of each raw -> OUT step")
    ap.add_argument("--fetch-repeats", type=int, default=2, help="of each img2dataset fetch")
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    formats = ("webdataset", "parquet")
    with tempfile.TemporaryDirectory() as tmp, serve_images(image_size=(320, 240)) as server:
        root = Path(tmp)
        rows = manifest_rows(server, args.n)
        fetch_times: dict[str, list[tuple[float, float]]] = {fmt: [] for fmt in formats}
        for _ in range(args.fetch_repeats):
            for fmt in formats:
                shutil.rmtree(root / fmt, ignore_errors=True)
                fetch_times[fmt].append(fetch(rows, root / fmt, fmt, args.processes))
        t_fetch = {fmt: statistics.median(w for w, _ in t) for fmt, t in fetch_times.items()}
        c_fetch = {fmt: statistics.median(c for _, c in t) for fmt, t in fetch_times.items()}
        raw_wds, raw_pq = root / "webdataset" / "raw", root / "parquet" / "raw"
        strategies = {
            "index-in-place": (lambda o: index_in_place(rows, raw_wds, o), "webdataset"),
            "repack-wds": (lambda o: repack(rows, raw_wds, "webdataset", o), "webdataset"),
            "repack-parquet": (lambda o: repack(rows, raw_pq, "parquet", o), "parquet"),
        }
        post = interleaved({k: v[0] for k, v in strategies.items()}, args.repeats, root / "post")
        print(
            f"{args.n} images ({dir_mb(raw_pq):.1f} MB) from the loopback server; img2dataset "
            f"processes={args.processes} threads=16, raw shards of {RAW_SHARD}"
        )
        for fmt in formats:
            runs = ", ".join(f"{w:.1f}" for w, _ in fetch_times[fmt])
            mb = dir_mb(root / fmt / "raw")
            print(
                f"  fetch, raw {fmt:<10} median {t_fetch[fmt]:6.2f} s wall, {c_fetch[fmt]:6.2f} s "
                f"CPU  (wall runs {runs}; raw {mb:.1f} MB)"
            )
        base_wall, base_cpu = post["repack-parquet"][:2]
        head = ["raw -> OUT", "wall s", "CPU s", "img/s wall", "CPU/repack-pq", "fetch+post s"]
        print("  {:<16} {:>7} {:>7} {:>10} {:>13} {:>12}".format(*head))
        for name, (wall, cpu, kept) in post.items():
            total = wall + t_fetch[strategies[name][1]]
            cells = (
                f"{wall:7.3f} {cpu:7.3f} {kept / wall:10.0f} {cpu / base_cpu:12.2f}x {total:12.2f}"
            )
            print(f"  {name:<16} {cells}  (kept {kept})")
        print(
            "  (wall / repack-parquet: "
            + ", ".join(f"{n} {v[0] / base_wall:.2f}x" for n, v in post.items())
            + ")"
        )


if __name__ == "__main__":
    main()
