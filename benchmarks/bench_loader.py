"""The training DataLoader alone, against the step's demand: can it keep the GPU fed?

    python benchmarks/bench_loader.py CONFIG [KEY=VALUE ...] [--batches 60] [--skip 5]
        [--metrics RUN/metrics.jsonl]

Builds exactly what a rank reads (vlmtrain.data.train_data.TrainData with the config's recipe,
packing, workers), iterates micro-batches without a model step, and prints the loader's
samples/s over the batches after --skip (worker start-up excluded). With --metrics, the
trainer's median samples/s from a run is the demand, and the headroom (loader / demand) is
printed: below 1 the GPU waits for data, and more data.num_workers are needed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def measure(cfg, batches: int, skip: int) -> dict:
    from vlmtrain.data.train_data import TrainData
    from vlmtrain.train.setup import build_parts

    parts = build_parts(cfg)  # the recipe packs as data.packing says
    packing = parts.packing
    data = TrainData(cfg, parts.recipe, parts.ctx, 0, 1)
    stamps, samples = [], []
    t0 = time.perf_counter()
    for sb in data.batches(0, batches):
        stamps.append(time.perf_counter())
        samples.append(len(sb.keys))
    span = stamps[-1] - stamps[skip - 1]
    return {
        "workers": cfg.data.num_workers,
        "packing": packing,
        "first_batch_s": stamps[0] - t0,
        "batches_timed": batches - skip,
        "samples_per_s": sum(samples[skip:]) / span,
        "batch_ms": 1000 * span / (batches - skip),
    }


def demand(metrics: Path, skip: int) -> float:
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return statistics.median(r["samples_per_s"] for r in rows if r["step"] > skip)


def main() -> None:
    from vlmtrain.train.config import load_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--batches", type=int, default=60)
    p.add_argument("--skip", type=int, default=5)
    p.add_argument("--metrics", type=Path, default=None, help="a run's metrics.jsonl (demand)")
    args = p.parse_args()
    if not 0 < args.skip < args.batches:
        p.error("need 0 < --skip < --batches")
    cfg = load_config(args.config, list(args.overrides))
    out = measure(cfg, args.batches, args.skip)
    if args.metrics:
        out["trainer_samples_per_s"] = demand(args.metrics, args.skip)
        out["headroom"] = out["samples_per_s"] / out["trainer_samples_per_s"]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
