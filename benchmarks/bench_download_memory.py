"""`vlmdata download`'s driver memory at N URL rows (issue 23): peak RSS (psutil, sampled every
10 ms in a thread; img2dataset runs in a child process, not counted) and Arrow's peak
allocation over the whole run (a proxy pool kept as the default, `write_planned` included).

Rows: a CC3M `Validation_GCC-1.1.0-Validation.tsv` (caption TAB url, Google's CC3M release)
whose captions are padded to ~1 KB, so the fetch list's table is visible at sizes a loopback
fetch can reach here; the URLs are the tests' loopback image server (8x8 images). Usage:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_download_memory.py 20000 --dir /tmp/bdm
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pyarrow as pa

from tests.shards.http_server import serve_images
from vlmdata.core import heap
from vlmdata.download.img2dataset_run import FetchOptions
from vlmdata.download.pipeline import download
from vlmdata.shards import ShardOptions


def rss_peak() -> list[int]:
    """A one-item list the sampling thread keeps at the process's largest RSS so far."""
    proc, peak = psutil.Process(), [0]

    def sample() -> None:
        while True:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.01)

    threading.Thread(target=sample, daemon=True).start()
    return peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-download-memory"))
    args = ap.parse_args()
    root = args.dir
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    pool = pa.proxy_memory_pool(pa.system_memory_pool())
    pa.set_memory_pool(pool)

    @contextmanager
    def counting_pool():
        yield

    heap.system_arrow_pool = counting_pool  # write_planned keeps the counting pool
    peak = rss_peak()
    fetch = FetchOptions(processes=1, threads=32, timeout=5, raw_shard_size=1000)
    caption = "a photo of " + "x" * 990
    with serve_images(image_size=(8, 8)) as server:
        tsv = root / "Validation_GCC-1.1.0-Validation.tsv"
        lines = (f"{caption} {i}\t{server.url('img', i)}\n" for i in range(args.rows))
        tsv.write_text("".join(lines), encoding="utf-8")
        t = time.time()
        s = download("cc3m", [tsv], root / "out", fetch=fetch,
                     shard=ShardOptions(samples_per_shard=5000), work_dir=root / "work",
                     allow_private=True, progress=False)  # fmt: skip
    print(f"rows {args.rows}  kept {s.kept}  wall {time.time() - t:.1f} s  driver peak RSS "
          f"{peak[0] >> 20} MB  Arrow peak {pool.max_memory() >> 20} MB")  # fmt: skip


if __name__ == "__main__":
    main()
