"""CPU and memory of keyset.HashSet / HashMap with every run in memory (the default) against
runs past 1 MiB on disk (`disk_past`, what the shard plan uses), issue 23.

Each size adds n random 128-bit hashes in batches (8,192: ManifestSink's KEY_BATCH; 32,768:
the shard plan's window), looking each batch up first (every lookup reads every disk run
once), as the manifest, filter-urls and placement do. CPU is process time of the loop
alone; memory is tracemalloc's peak in a second run (numpy arrays are traced). Usage:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_keyset.py --sizes 1000000 4000000
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vlmdata.core.keyset import HashMap, HashSet  # noqa: E402

DISK_PAST = 1 << 20


def fill(kind: str, n: int, batch: int, disk: bool) -> None:
    rng = np.random.default_rng(n + batch)
    s = (HashMap if kind == "map" else HashSet)(disk_past=DISK_PAST if disk else None)
    for a in range(0, n, batch):
        hi, lo = rng.integers(0, 2**63, (2, min(batch, n - a)), dtype=np.uint64)
        if kind == "map":
            assert (s.get(hi, lo) < 0).all()
            s.add(hi, lo, np.arange(a, a + len(hi)))
        else:
            assert not s.contains(hi, lo).any()
            s.add(hi, lo)
    assert len(s) == n


def measure(kind: str, n: int, batch: int, disk: bool) -> tuple[float, float]:
    """(CPU s, traced peak MB)."""
    gc.collect()
    t = time.process_time()
    fill(kind, n, batch, disk)
    cpu = time.process_time() - t
    tracemalloc.start()
    try:
        fill(kind, n, batch, disk)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return cpu, peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 4_000_000])
    ap.add_argument("--batches", type=int, nargs="+", default=[8192, 32768])
    args = ap.parse_args()
    print("| structure | entries | batch | memory: CPU s / peak MB | disk: CPU s / peak MB |")
    print("|---|---:|---:|---:|---:|")
    for kind in ("set", "map"):
        for n in args.sizes:
            for batch in args.batches:
                mem, dsk = measure(kind, n, batch, False), measure(kind, n, batch, True)
                print(f"| {kind} | {n:,} | {batch:,} | {mem[0]:.2f} / {mem[1]:.0f} | "
                      f"{dsk[0]:.2f} / {dsk[1]:.0f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
