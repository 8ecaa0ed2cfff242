"""The training loop on one rank: set-up -> steps -> checkpoints -> export.

Run by `vlmtrain.train.entry` in every rank the DeepSpeed launcher starts (or alone, as a world
of one). What happens before the first step (distributed init, model, recipe, DeepSpeed engine)
is in vlmtrain.train.setup; saving, resuming and exporting in vlmtrain.train.checkpointing. What
is left here is the loop itself (`Run.train`) and its per-step bookkeeping.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from tqdm import tqdm

from vlmtrain.data.batches import to_device
from vlmtrain.data.plan import total_steps
from vlmtrain.data.train_data import TrainData
from vlmtrain.train import checkpointing
from vlmtrain.train.checkpoint import CHECKPOINT_DIR
from vlmtrain.train.config import TrainConfig, save_config
from vlmtrain.train.flops import FlopModel, device_peak, speed, throughput
from vlmtrain.train.metrics_log import JsonlWriter, MetricsLogger, truncate_jsonl
from vlmtrain.train.perf import choose_stage_for, compile_lm, with_stage
from vlmtrain.train.plots import write_run_plots
from vlmtrain.train.resume import install_safe_checkpoint_engine
from vlmtrain.train.setup import build_parts, initialize, setup_distributed

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}  # fp32: batches keep their dtype


@dataclass
class Window:
    """Sums over one optimizer step's micro-batches (gradient accumulation)."""

    loss: float = 0.0
    micro: int = 0
    lr: float = 0.0  # the learning rate this step's optimizer update uses
    samples: int = 0
    tokens: int = 0
    slots: int = 0  # token positions, padding included (pad_fraction = 1 - tokens / slots)
    flops: float = 0.0  # model FLOPs (vlmtrain.train.flops)
    metrics: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)

    def add(self, loss: float, metrics: dict[str, float], sb, flops: float = 0.0) -> None:
        self.loss += loss
        self.micro += 1
        self.samples += len(sb.keys)
        mask = sb.batch.get("attention_mask")
        self.tokens += int(mask.sum()) if mask is not None else 0
        self.slots += int(mask.numel()) if mask is not None else 0
        self.flops += flops
        self.metrics.update({k: float(v) for k, v in metrics.items() if k != "loss"})
        self.skipped.update(sb.skipped)


class Run:
    """One rank's training run: set-up, resume, steps, checkpoints, export."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int) -> None:
        self.cfg, self.rank, self.world = cfg, rank, world
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / CHECKPOINT_DIR
        parts = build_parts(cfg)
        self.model, self.tokenizer, self.recipe = parts.model, parts.tokenizer, parts.recipe
        self.flop_model = FlopModel.from_model(self.model)
        peak, source = device_peak(cfg.deepspeed.precision, cfg.log.peak_tflops)
        self.peak = peak
        self.say(parts.packing)
        self.say(f"{self.flop_model.describe()}; peak {peak or '?'} TFLOP/s ({source})")
        self.data = TrainData(cfg, self.recipe, parts.ctx, rank, world)
        ga = cfg.deepspeed.grad_accum
        self.total = cfg.schedule.max_steps or total_steps(
            self.data.batches_per_epoch, cfg.schedule.epochs, ga
        )
        micro = sum(s.per_step for s in self.data.streams)
        self.zero_stage = self._parallelism()
        self.engine, self.lifted = initialize(
            with_stage(cfg, self.zero_stage), self.model, self.total, world, micro
        )
        install_safe_checkpoint_engine(self.engine)  # resume reads .pt files without pickle
        self.step, self.next_batch = 0, 0

    def say(self, line: str) -> None:
        if self.rank == 0:
            print(line, flush=True)

    def _parallelism(self) -> int:
        """The ZeRO stage for this world (logged), and torch.compile of the LM if asked."""
        stage, why = choose_stage_for(self.cfg, self.model, self.world)
        backend = compile_lm(self.model, self.cfg.model.compile)
        self.say(f"deepspeed: {why}")
        if backend:
            self.say(f"torch.compile of the LM: backend {backend}")
        return stage

    # -- checkpoints (vlmtrain.train.checkpointing) --

    def save(self) -> None:
        pos = self.data.position(self.next_batch)
        keep = self.cfg.schedule.keep_checkpoints
        checkpointing.save(self.engine, self.ckpt_dir, self.step, pos, self.rank, keep)

    def resume(self) -> bool:
        """Continue from the newest complete checkpoint; False if there is none."""
        got = checkpointing.resume(self.engine, self.ckpt_dir, self.rank, self.data.check_position)
        if got is not None:
            self.step, self.next_batch = got
        return got is not None

    def export(self) -> Path | None:
        return checkpointing.export(
            self.engine, self.cfg, self.tokenizer, self.lifted, self.step, self.rank
        )

    # -- the loop --

    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to `total` optimizer steps (or stop after `stop_after`, as a kill would)."""
        cfg, ga, engine = self.cfg, self.cfg.deepspeed.grad_accum, self.engine
        logger, keys_log = self._loggers()
        bar = tqdm(total=self.total, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (self.rank == 0 and cfg.log.progress))  # fmt: skip
        w, t0, last = Window(), time.perf_counter(), {}
        dtype = DTYPES.get(cfg.deepspeed.precision)
        engine.train()
        for sb in self.data.batches(self.next_batch, self.total * ga):
            if w.micro == 0:  # before engine.step() moves the scheduler on to the next step
                w.lr = float(engine.get_lr()[0])
            loss, metrics = self.recipe.loss(engine, to_device(sb.batch, engine.device, dtype))
            engine.backward(loss)
            engine.step()
            self.recipe.after_step(engine)
            w.add(float(loss.detach()), metrics, sb, self.flop_model.batch_flops(sb.batch))
            if keys_log is not None:
                keys_log.write({"batch": sb.index, "step": self.step, "keys": sb.keys})
            self.next_batch = sb.index + 1
            if self.next_batch % ga:
                continue
            self.step += 1
            now = time.perf_counter()  # whole steps: this step's logging counts in the next one
            last = self._log_step(logger, w, now - t0)
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", lr=f"{last['lr']:.2e}", **speed(last))
            w, t0 = Window(), now
            every = cfg.schedule.save_every
            if (every and self.step % every == 0) or self.step == self.total:
                self.save()
                t0 += time.perf_counter() - now  # a checkpoint save is not training speed
            if stop_after is not None and self.step >= stop_after:
                break
        bar.close()
        return self._finish(logger, keys_log, last)

    def _finish(self, logger, keys_log, last: dict[str, Any]) -> dict[str, Any]:
        """After the loop: the last step's speed, the export (a finished run), plots, logs."""
        if last:
            self.say("last step: " + " ".join(f"{k} {v}" for k, v in speed(last).items()))
        export = self.export() if self.step >= self.total else None
        logger.close()
        if self.rank == 0 and self.cfg.log.plots and last:
            _write_plots(self.out)
        if keys_log is not None:
            keys_log.close()
        return {"steps": self.step, "total": self.total, "last": last, "export": export}

    def _log_step(self, logger, w: Window, elapsed: float) -> dict[str, Any]:
        sums = _all_reduce([w.loss, w.micro, w.samples, w.tokens, w.slots, w.flops])
        loss_sum, micro, samples, tokens, slots, flops = sums
        record = {
            "loss": loss_sum / max(1, micro),
            "lr": w.lr,
            "epoch": self.next_batch / self.data.batches_per_epoch,
            "samples_per_s": samples / elapsed if elapsed > 0 else 0.0,
            "tokens_per_s": tokens / elapsed if elapsed > 0 else 0.0,
            **{k: v / max(1, w.micro) for k, v in w.metrics.items()},
            **throughput(flops, elapsed, self.world, self.peak),
            "pad_fraction": 1.0 - tokens / slots if slots else 0.0,
        }
        if w.skipped:
            record["skipped"] = dict(w.skipped)
        record.update(_device_memory())
        if self.step % max(1, self.cfg.schedule.log_every) == 0 or self.step == self.total:
            logger.log(self.step, record)
        return record

    def _loggers(self):
        cfg = self.cfg
        if self.rank == 0:
            truncate_jsonl(self.out / "metrics.jsonl", self.step + 1)
        keys_log = None
        if cfg.log.batch_keys:
            path = self.out / f"batches-rank{self.rank}.jsonl"
            truncate_jsonl(path, self.next_batch, field="batch")
            keys_log = JsonlWriter(path)
        logger = MetricsLogger(
            self.out,
            enabled=self.rank == 0,
            tensorboard=cfg.log.tensorboard,
            wandb=cfg.log.wandb,
            wandb_project=cfg.log.wandb_project,
        )
        return logger, keys_log


def _device_memory() -> dict[str, float]:
    """Peak accelerator memory of this rank in GiB (CUDA only; nothing on the CPU)."""
    if not torch.cuda.is_available():
        return {}
    return {"max_mem_gib": torch.cuda.max_memory_allocated() / 2**30}


def _all_reduce(values: list[float]) -> list[float]:
    """Sums over ranks (for logging: loss averaged over the whole global batch)."""
    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def _write_plots(out: Path) -> None:
    """RUN/plots/*.png at the end of a run; a plotting failure is reported, never fatal (the
    weights are saved by then, and `vlmtrain plot RUN` can redo the pictures)."""
    try:
        written = write_run_plots(out)
    except Exception as e:  # noqa: BLE001 - pictures must not fail a finished run
        print(f"warning: run plots not written ({type(e).__name__}: {e})", flush=True)
        return
    print(f"plots: {Path(next(iter(written))).parent}", flush=True)


def train(cfg: TrainConfig, *, resume: bool = False) -> dict:
    """Train on this rank; called in every rank (see module doc). Returns a summary."""
    rank, world = setup_distributed()
    if rank == 0:
        Path(cfg.output_dir).mkdir(parents=True, exist_ok=True)
        save_config(cfg, Path(cfg.output_dir) / "config.yaml")
    run = Run(cfg, rank, world)
    resumed = run.resume() if resume else False
    if rank == 0 and resume:
        where = f"step {run.step} (batch {run.next_batch})" if resumed else "the start (none saved)"
        print(f"resuming from {where}", flush=True)
    return run.train()
