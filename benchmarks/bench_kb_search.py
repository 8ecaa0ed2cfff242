"""Exact top-K over a cached KB embedding matrix (`eval oven --retrieve`), as at OVEN's scale.

A random float32 (N, D) matrix written as the .npy memory map the eval caches, then
`vlmtrain.eval.tasks.oven_retrieval.top_k` for Q queries, timed end to end (reading the map
included; the page cache is warm after the write). Extrapolate linearly in N x Q: the search
reads every row once per call and does N x Q x D multiply-adds.

    python benchmarks/bench_kb_search.py --rows 6000000 --dim 512 --queries 4096 --device cuda
    python benchmarks/bench_kb_search.py --rows 300000 --dim 512 --queries 256   # CPU, small
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=300_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=256)
    ap.add_argument("--k", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    from vlmtrain.eval.tasks.oven_retrieval import top_k

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kb.npy"
        kb = np.lib.format.open_memmap(path, "w+", np.float32, (args.rows, args.dim))
        for s in range(0, args.rows, 1_000_000):
            kb[s : s + 1_000_000] = rng.standard_normal((min(1_000_000, args.rows - s), args.dim))
        kb.flush()
        del kb
        kb = np.load(path, mmap_mode="r")
        q = rng.standard_normal((args.queries, args.dim)).astype(np.float32)
        top_k(q[:8], kb[:1000], args.k, device=args.device)  # warm-up
        t = time.perf_counter()
        top_k(q, kb, args.k, device=args.device)
        sec = time.perf_counter() - t
    per_q = sec / args.queries
    print(f"rows={args.rows} dim={args.dim} queries={args.queries} k={args.k} "
          f"device={args.device}: {sec:.2f} s ({per_q * 1000:.2f} ms/query)")  # fmt: skip


if __name__ == "__main__":
    main()
