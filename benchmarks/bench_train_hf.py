"""Our trainer against the Hugging Face Trainer: same model, DeepSpeed config, data and batch.

    python benchmarks/bench_train_hf.py CONFIG [KEY=VALUE ...] [--steps 30] [--warmup 5]
        [--work DIR] [--peak-tflops X] [--hf-packed] [--only ours|hf]

Each side runs in its own process (a world of one; its peak memory its own):
- ours: `vlmtrain.train.trainer.Run` as `vlmtrain launch` runs it (ZeRO stage, packing, fused
  AdamW, SDPA as the config resolves them), stopped after --steps (no checkpoint written);
- hf: `transformers.Trainer` given the SAME micro-batches (our loader's, so the same examples at
  every step and the same GRACE mix), padded unless --hf-packed, the same DeepSpeed config
  (batch sizes and clipping as "auto", filled in by the Trainer), its own AdamW and cosine schedule
  with our learning rate and warm-up, and `recipe.loss` as compute_loss.
Both count model FLOPs with the same rule (vlmtrain.train.flops: real tokens only), so their
MFU is comparable. Figures are over the steps after --warmup: samples / seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def load(args):
    from vlmtrain.train.config import load_config

    over = list(args.overrides) + [f"output_dir={args.work}/{args.only}", "log.progress=false"]
    over.append(f"schedule.max_steps={args.steps + 1}")  # stopped before the final checkpoint
    if args.peak_tflops:
        over.append(f"log.peak_tflops={args.peak_tflops}")
    return load_config(args.config, over)


def load_precision(args) -> str:
    from vlmtrain.train.config import load_config

    return load_config(args.config, list(args.overrides)).deepspeed.precision


def steady(rows: list[dict], warmup: int) -> dict:
    """samples/s, tokens/s, TFLOP/s, MFU over the steps after `warmup` (sums, not medians)."""
    rows = [r for r in rows if r["step"] > warmup]
    if not rows:
        raise SystemExit(f"no step after --warmup {warmup}: raise --steps")
    seconds = sum(r["seconds"] for r in rows)
    out = {
        "steps": len(rows),
        "samples_per_s": sum(r["samples"] for r in rows) / seconds,
        "tokens_per_s": sum(r["tokens"] for r in rows) / seconds,
        "tflops": sum(r["flops"] for r in rows) / seconds / 1e12,
        "step_s_median": statistics.median(r["seconds"] for r in rows),
        "pad_fraction": 1 - sum(r["tokens"] for r in rows) / sum(r["slots"] for r in rows),
    }
    return out


def peak_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"max_mem_gib": torch.cuda.max_memory_allocated() / 2**30}


def run_ours(args) -> dict:
    from vlmtrain.train.trainer import Run, setup_distributed

    cfg = load(args)
    rank, world = setup_distributed()
    run = Run(cfg, rank, world)
    run.train(stop_after=args.steps)
    samples = sum(s.per_step for s in run.data.streams) * cfg.deepspeed.grad_accum * world
    rows = []
    for line in (Path(cfg.output_dir) / "metrics.jsonl").read_text().splitlines():
        r = json.loads(line)  # per-second figures of one step -> that step's counts
        seconds = samples / r["samples_per_s"]
        tokens = r["tokens_per_s"] * seconds
        rows.append(
            {
                "step": r["step"],
                "seconds": seconds,
                "samples": samples,
                "tokens": tokens,
                "slots": tokens / (1 - r["pad_fraction"]),
                "flops": r["tflops"] * 1e12 * seconds * world,
            }
        )
    return {
        "side": "ours",
        "stage": run.zero_stage,
        **steady(rows, args.warmup),
        **peak_memory(),
        "flop_rule": run.flop_model.describe(),
    }


class Batches:
    """Our loader's micro-batches as a map-style dataset of known length (one item = one batch)."""

    def __init__(self, ds, n: int) -> None:
        self.ds, self.n = ds, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.ds[i].batch


def first(items):
    return items[0]


def hf_deepspeed_config(cfg, world: int, micro: int) -> dict:
    """Our DeepSpeed config with the Trainer's "auto" where it insists on filling values."""
    from vlmtrain.train.setup import deepspeed_config

    ds = deepspeed_config(cfg, world, micro)
    for key in (
        "train_micro_batch_size_per_gpu",
        "train_batch_size",
        "gradient_accumulation_steps",
        "gradient_clipping",
    ):
        ds[key] = "auto"
    return ds


def run_hf(args) -> dict:
    import torch
    from transformers import Trainer, TrainerCallback, TrainingArguments

    from vlmtrain.data.train_data import TrainData
    from vlmtrain.train.flops import FlopModel
    from vlmtrain.train.perf import choose_stage_for
    from vlmtrain.train.setup import build_parts, setup_distributed

    cfg = load(args)
    rank, world = setup_distributed()
    cfg.data.packing = args.hf_packed and cfg.data.packing  # the peer packs only if asked
    parts = build_parts(cfg)
    model, recipe, ctx = parts.model, parts.recipe, parts.ctx
    flop_model = FlopModel.from_model(model)
    data = TrainData(cfg, recipe, ctx, rank, world)
    micro = sum(s.per_step for s in data.streams)
    stage, _ = choose_stage_for(cfg, model, world)
    cfg.deepspeed.zero_stage = stage
    ga = cfg.deepspeed.grad_accum
    rows: list[dict] = []
    counts = {"flops": 0.0, "tokens": 0, "slots": 0}

    class Peer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            mask = inputs["attention_mask"]
            counts["flops"] += flop_model.batch_flops(inputs)
            counts["tokens"] += int(mask.sum())
            counts["slots"] += mask.numel()
            loss, _ = recipe.loss(model, inputs)
            return loss

    class Clock(TrainerCallback):
        """Step end to step end, as our loop times a step: the Trainer fetches a step's batches
        before `on_step_begin`, so begin-to-end would leave the data loading out."""

        last = 0.0

        def _now(self) -> float:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            return time.perf_counter()

        def on_train_begin(self, a, state, control, **kw):
            self.last = self._now()

        def on_step_end(self, a, state, control, **kw):
            now = self._now()
            rows.append(
                {
                    "step": state.global_step,
                    "seconds": now - self.last,
                    "samples": micro * ga * world,
                    **counts,
                }
            )
            counts.update(flops=0.0, tokens=0, slots=0)
            self.last = now

    targs = TrainingArguments(
        output_dir=str(cfg.output_dir),
        per_device_train_batch_size=1,  # one item = one of our collated micro-batches
        gradient_accumulation_steps=ga,
        max_steps=args.steps,
        learning_rate=cfg.optim.lr,
        weight_decay=cfg.optim.weight_decay,
        adam_beta1=cfg.optim.betas[0],
        adam_beta2=cfg.optim.betas[1],
        adam_epsilon=cfg.optim.eps,
        max_grad_norm=cfg.optim.grad_clip,
        warmup_steps=cfg.schedule.warmup_steps,
        lr_scheduler_type="cosine",
        optim="adamw_torch_fused",
        bf16=cfg.deepspeed.precision == "bf16",
        fp16=cfg.deepspeed.precision == "fp16",
        deepspeed=hf_deepspeed_config(cfg, world, micro),
        dataloader_num_workers=cfg.data.num_workers,
        remove_unused_columns=False,
        save_strategy="no",
        report_to=[],
        logging_steps=10**9,
        disable_tqdm=True,
        seed=cfg.seed,
        use_cpu=not torch.cuda.is_available(),
    )
    ds = Batches(data.dataset(0, args.steps * ga), args.steps * ga)
    trainer = Peer(
        model=model, args=targs, train_dataset=ds, data_collator=first, callbacks=[Clock()]
    )
    trainer.train()
    return {
        "side": "hf",
        "stage": stage,
        "deepspeed": bool(trainer.is_deepspeed_enabled),
        "ds_optimizer": type(getattr(trainer.optimizer, "optimizer", trainer.optimizer)).__name__,
        **steady(rows, args.warmup),
        **peak_memory(),
    }


def table(results: list[dict], peak: float | None) -> str:
    ours = next(r for r in results if r["side"] == "ours")
    hf = next(r for r in results if r["side"] == "hf")
    lines = ["| measure | ours | HF Trainer | ours / HF |", "|---|---:|---:|---:|"]
    for key, fmt in [
        ("samples_per_s", "{:.1f}"),
        ("tokens_per_s", "{:.0f}"),
        ("tflops", "{:.3g}"),
        ("step_s_median", "{:.3f}"),
        ("pad_fraction", "{:.3f}"),
        ("max_mem_gib", "{:.1f}"),
    ]:
        if key in ours and key in hf:
            ratio = ours[key] / hf[key] if hf[key] else float("nan")
            lines.append(
                f"| {key} | {fmt.format(ours[key])} | {fmt.format(hf[key])} | {ratio:.2f} |"
            )
    if peak:
        lines.append(
            f"| MFU (peak {peak:g} TFLOP/s) | {100 * ours['tflops'] / peak:.1f}% | "
            f"{100 * hf['tflops'] / peak:.1f}% | |"
        )
    lines.append(f"| ZeRO stage | {ours['stage']} | {hf['stage']} | |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config")
    p.add_argument("overrides", nargs="*")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--work", default="/tmp/vlm-bench-hf")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--hf-packed", action="store_true", help="give the HF Trainer packed rows too")
    p.add_argument("--only", choices=["ours", "hf"], default=None)
    args = p.parse_args()
    if args.only:
        result = run_ours(args) if args.only == "ours" else run_hf(args)
        Path(args.work).mkdir(parents=True, exist_ok=True)
        (Path(args.work) / f"{args.only}.json").write_text(json.dumps(result, indent=1))
        return
    from vlmtrain.train.flops import device_peak

    results = []
    for side in ("ours", "hf"):
        cmd = [sys.executable, __file__, *sys.argv[1:], "--only", side]
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path}  # keep a wheel folder on the path too
        t = time.perf_counter()
        subprocess.run(cmd, check=True, env=env)
        result = json.loads((Path(args.work) / f"{side}.json").read_text())
        result["wall_s"] = time.perf_counter() - t
        results.append(result)
    peak = args.peak_tflops or device_peak(load_precision(args))[0]
    print(json.dumps(results, indent=1))
    print(table(results, peak))


if __name__ == "__main__":
    main()
