"""The partitioned plan's driver on Ray local (issue 23): its peak RSS by plan stage, and Arrow's
peak allocation per stage (a proxy pool: Arrow's buffers are not in tracemalloc).

Inputs: LLaVA-shaped rows (one text each, `image_key` repeating over IMAGES 16x16 PNGs: the
665k mix repeats COCO images), made with the tests' manifest helpers. The Ray workers are
other processes, so the driver's own RSS (psutil, sampled every 5 ms in a thread) is what
counts. One row count per process (RSS is a process-wide peak). Usage:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cluster_driver.py 100000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_cluster_driver.py 400000 --dir /tmp/bcd
"""

from __future__ import annotations

import argparse
import shutil
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa

from tests.shards.conftest import image_bytes, row, write_manifest
from vlmdata.shards import ShardOptions, cluster_plan, write_shards

IMAGES = 1000
STAGES = ("_write_slices", "_place_on_engine", "_emit_rows", "_layout")


def make_inputs(root: Path, n: int) -> Path:
    images = root / "images"
    if not images.exists():
        images.mkdir(parents=True)
        for i in range(IMAGES):
            (images / f"{i}.png").write_bytes(image_bytes(i, (16, 16), "PNG"))
    manifest = root / f"m{n}.parquet"
    if not manifest.exists():
        rows = [
            row(
                f"r{j}", f"{j % IMAGES}.png", n_texts=1, image_key=f"im{j % IMAGES}", source="llava"
            )
            for j in range(n)
        ]
        write_manifest(manifest, rows, ("image_key",))
    return manifest


class Phases:
    """The driver's RSS peak per stage (a sampling thread) and Arrow's peak per stage."""

    def __init__(self) -> None:
        self.proc, self.phase, self.rss, self.arrow = psutil.Process(), "start", {}, {}
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        while True:
            r, p = self.proc.memory_info().rss, self.phase
            self.rss[p] = max(self.rss.get(p, 0), r)
            time.sleep(0.005)

    def wrap(self, name: str) -> None:
        stage = getattr(cluster_plan, name)

        def counted(*args, **kwargs):
            pool = pa.proxy_memory_pool(pa.system_memory_pool())
            previous, self.phase = pa.default_memory_pool(), name
            pa.set_memory_pool(pool)
            try:
                return stage(*args, **kwargs)
            finally:
                pa.set_memory_pool(previous)
                self.arrow[name], self.phase = pool.max_memory(), f"after {name}"

        setattr(cluster_plan, name, counted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int)
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-cluster-driver"))
    args = ap.parse_args()
    manifest = make_inputs(args.dir, args.rows)
    out = args.dir / f"out-{args.rows}"
    shutil.rmtree(out, ignore_errors=True)
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    phases = Phases()
    for name in STAGES:
        phases.wrap(name)
    t = time.time()
    s = write_shards(manifest, args.dir / "images", out, ShardOptions(workers=2, distributor="ray"),
                     progress=False)  # fmt: skip
    phases.phase = "end"
    time.sleep(0.05)
    print(f"rows {args.rows}  kept {s.kept}  shards {s.shards}  wall {time.time() - t:.1f} s")
    print(f"driver peak RSS {max(phases.rss.values()) >> 20} MB")
    for name in STAGES:
        mb = phases.rss.get(name, 0) >> 20, phases.arrow.get(name, 0) >> 20
        print(f"  {name:18s} RSS peak {mb[0]:5d} MB   Arrow peak {mb[1]:5d} MB")


if __name__ == "__main__":
    main()
