"""The training loop on one rank: model + recipe + data -> DeepSpeed engine -> steps, checkpoints.

Run by `vlmtrain.train.entry` in every rank the DeepSpeed launcher starts (or alone, as a world
of one). The optimizer is torch's AdamW with a warm-up + cosine LambdaLR, handed to
`deepspeed.initialize`, which wraps both for ZeRO 0-3 and bf16/fp16; no data set is given to
DeepSpeed (our loader decides what each rank reads, see vlmtrain.data.train_data).
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmdata.core.net import free_port
from vlmtrain.train import testing
from vlmtrain.train.checkpoint import CHECKPOINT_DIR
from vlmtrain.train.config import TrainConfig, save_config
from vlmtrain.train.resume import install_safe_checkpoint_engine

# ---- distributed set-up ------------------------------------------------------------------------


def setup_distributed() -> tuple[int, int]:
    """(rank, world) after initialising torch.distributed via DeepSpeed (gloo on CPU).

    Without launcher variables the process is a world of one. On CPU, DeepSpeed's shared-memory
    collective op is skipped: gloo does the work, and the op would be JIT-compiled on first use
    (minutes on a small machine); VLMTRAIN_CPU_SHM=1 keeps it.
    """
    import deepspeed
    import torch.distributed as dist
    from deepspeed.accelerator import get_accelerator

    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    accel = get_accelerator()
    if accel.device_name() == "cpu" and os.environ.get("VLMTRAIN_CPU_SHM") != "1":
        import deepspeed.ops

        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=accel.communication_backend_name())
    return dist.get_rank(), dist.get_world_size()


# ---- optimizer, schedule, DeepSpeed config ---------------------------------------------------


@dataclass
class WarmupCosine:
    """LR factor at scheduler step s: linear warm-up, then cosine down to `min_ratio`."""

    warmup: int
    total: int
    min_ratio: float = 0.0

    def __call__(self, s: int) -> float:
        if s < self.warmup:
            return (s + 1) / self.warmup
        progress = min(1.0, (s - self.warmup) / max(1, self.total - self.warmup))
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def param_groups(model, weight_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters; no decay on biases, norms and 1-d tensors (the usual AdamW rule)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    if not decay and not no_decay:
        raise ValueError("no trainable parameters: check model.train")
    groups = [{"params": decay, "weight_decay": weight_decay}]
    return groups + [{"params": no_decay, "weight_decay": 0.0}] if no_decay else groups


def deepspeed_config(cfg: TrainConfig, world: int, micro: int) -> dict[str, Any]:
    """The DeepSpeed config dict (extra keys merged last); `micro`: examples per rank per
    micro-batch (the sum of the streams' per-step counts)."""
    ds = cfg.deepspeed
    zero: dict[str, Any] = {"stage": ds.zero_stage}
    if ds.offload_optimizer and ds.zero_stage >= 2:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
    out: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": ds.grad_accum,
        "train_batch_size": micro * ds.grad_accum * world,
        "gradient_clipping": cfg.optim.grad_clip,
        "zero_optimization": zero,
        "bf16": {"enabled": ds.precision == "bf16"},
        "fp16": {"enabled": ds.precision == "fp16", "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if ds.offload_optimizer:  # ZeRO-Offload needs DeepSpeed's CPU Adam (defined here, not ours)
        out["optimizer"] = {"type": "AdamW", "params": _adamw_args(cfg)}
    return _merge(out, ds.extra)


def _adamw_args(cfg: TrainConfig) -> dict[str, Any]:
    o = cfg.optim
    return {"lr": o.lr, "betas": list(o.betas), "eps": o.eps, "weight_decay": o.weight_decay}


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    for k, v in extra.items():
        base[k] = (
            _merge(dict(base[k]), v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        )
    return base


def lift_scalars(model) -> dict[str, tuple[int, ...]]:
    """Hold 0-d parameters (a learned temperature) as shape (1,); returns their true shapes.

    DeepSpeed broadcasts parameters as bytes (`p.data.view(torch.uint8)`), which fails for 0-d
    tensors. Arithmetic broadcasting makes (1,) behave the same in the losses.
    """
    shapes = {}
    for name, p in model.named_parameters():
        if p.ndim == 0:
            shapes[name] = tuple(p.shape)
            p.data = p.data.reshape(1)
    return shapes


def build_engine(cfg: TrainConfig, model, total_steps: int, world: int, micro: int):
    """`deepspeed.initialize` with AdamW + warm-up/cosine; returns the engine."""
    import deepspeed
    import torch

    from vlmtrain.train.perf import adamw_factory

    schedule = WarmupCosine(cfg.schedule.warmup_steps, total_steps, cfg.schedule.min_lr_ratio)
    ds_cfg = deepspeed_config(cfg, world, micro)
    groups = param_groups(model, cfg.optim.weight_decay)
    for module in list(model.modules()):  # gathered whole under ZeRO-3 (see the module's doc)
        for leaf in getattr(module, "zero3_leaf_modules", lambda: [])():
            deepspeed.utils.set_z3_leaf_module(leaf, True)
    optimizer = None
    if "optimizer" not in ds_cfg:  # built on the device (fused AdamW where supported)
        optimizer = adamw_factory(_adamw_args(cfg))
    engine, _, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=groups,
        optimizer=optimizer,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(opt, schedule),
        config=ds_cfg,
    )
    return engine


def initialize(cfg: TrainConfig, model, total_steps: int, world: int, micro: int):
    """(engine, true shapes of the 0-d parameters held as (1,) while training, for the export).

    They stay (1,) for the whole run: DeepSpeed's gradient clipping also breaks on 0-d grads.
    """
    shapes = lift_scalars(model)
    return build_engine(cfg, model, total_steps, world, micro), shapes


def _device_memory() -> dict[str, float]:
    """Peak accelerator memory of this rank in GiB (CUDA only; nothing on the CPU)."""
    import torch

    if not torch.cuda.is_available():
        return {}
    return {"max_mem_gib": torch.cuda.max_memory_allocated() / 2**30}


# ---- the loop -------------------------------------------------------------------------------


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


def _write_plots(out: Path) -> None:
    """RUN/plots/*.png at the end of a run; a plotting failure is reported, never fatal (the
    weights are saved by then, and `vlmtrain plot RUN` can redo the pictures)."""
    from vlmtrain.train.plots import write_run_plots

    try:
        written = write_run_plots(out)
    except Exception as e:  # noqa: BLE001 - pictures must not fail a finished run
        print(f"warning: run plots not written ({type(e).__name__}: {e})", flush=True)
        return
    print(f"plots: {Path(next(iter(written))).parent}", flush=True)


def _all_reduce(values: list[float]) -> list[float]:
    """Sums over ranks (for logging: loss averaged over the whole global batch)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64)
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t.tolist()


def _tokenizer_path(cfg: TrainConfig) -> str:
    path = cfg.model.tokenizer or cfg.model.lm
    if not path:
        raise ValueError("model.tokenizer (or model.lm) must name a local tokenizer")
    return path


def build_parts(cfg: TrainConfig):
    """(model, tokenizer, recipe, recipe context) as every rank builds them, identically."""
    import torch

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.model.vlm import build_model
    from vlmtrain.recipes import RecipeContext, get_recipe

    torch.manual_seed(cfg.seed)  # same random init on every rank
    tokenizer = load_tokenizer(_tokenizer_path(cfg))
    model = build_model(cfg.model, tokenizer)
    if cfg.init_projector:
        from vlmtrain.model.projector_init import load_llava_projector

        load_llava_projector(model.projector, cfg.init_projector)
    if cfg.init_from:
        init_from_export(model, cfg.init_from)
    recipe = get_recipe(cfg.recipe.name, **cfg.recipe.options)
    identifiers = None
    if cfg.data.ids:
        from vlmtrain.recipes.grace import load_identifiers

        identifiers = load_identifiers(cfg.data.ids, tokenizer)
    ctx = RecipeContext.for_model(model, identifiers=identifiers, max_length=cfg.data.max_length)
    return model, tokenizer, recipe, ctx


def init_from_export(model, path: str) -> None:
    """Start from a previous stage's export (LLaVA stage 2 from stage 1's projector)."""
    from vlmdata.core.errors import DataError
    from vlmtrain.train.checkpoint import WEIGHTS, find_export, read_weights

    export = find_export(path)
    try:
        model.load_trainable_state_dict(read_weights(export / WEIGHTS))
    except (KeyError, RuntimeError) as e:
        raise DataError(f"init_from: export does not fit this model: {e}", file=str(export)) from e


class Run:
    """One rank's training run: set-up, resume, steps, checkpoints, export."""

    def __init__(self, cfg: TrainConfig, rank: int, world: int) -> None:
        from vlmtrain.data.plan import total_steps
        from vlmtrain.data.train_data import TrainData
        from vlmtrain.train.perf import with_stage

        self.cfg, self.rank, self.world = cfg, rank, world
        self.out = Path(cfg.output_dir)
        self.ckpt_dir = self.out / CHECKPOINT_DIR
        self.model, self.tokenizer, self.recipe, ctx = build_parts(cfg)
        self.flop_model, self.peak = self._efficiency()  # also sets the recipe's packing
        self.data = TrainData(cfg, self.recipe, ctx, rank, world)
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

    def _efficiency(self):
        """(FLOP model, peak TFLOP/s of a device or None); packing set; announced on rank 0."""
        from vlmtrain.data.packing import configure_packing
        from vlmtrain.train.flops import FlopModel, device_peak

        d = self.cfg.data
        packing = configure_packing(self.recipe, d.packing, d.pack_length or d.max_length)
        flop_model = FlopModel.from_model(self.model)
        peak, source = device_peak(self.cfg.deepspeed.precision, self.cfg.log.peak_tflops)
        if self.rank == 0:
            print(packing, flush=True)
            print(f"{flop_model.describe()}; peak {peak or '?'} TFLOP/s ({source})", flush=True)
        return flop_model, peak

    def _parallelism(self) -> int:
        """The ZeRO stage for this world (logged), and torch.compile of the LM if asked."""
        from vlmtrain.train.perf import choose_stage_for, compile_lm

        stage, why = choose_stage_for(self.cfg, self.model, self.world)
        backend = compile_lm(self.model, self.cfg.model.compile)
        if self.rank == 0:
            print(f"deepspeed: {why}", flush=True)
            if backend:
                print(f"torch.compile of the LM: backend {backend}", flush=True)
        return stage

    # -- checkpoints --

    def save(self) -> None:
        """Every rank saves its partition (rank 0 alone would hang ZeRO-3); the checkpoint is
        committed (complete.json, then `latest`) only after every rank wrote everything."""
        import shutil

        import torch.distributed as dist

        from vlmtrain.train import resume as rs

        tag = rs.checkpoint_tag(self.step)
        pos = self.data.position(self.next_batch)
        testing.saving(self.step)
        if self.rank == 0:  # debris of a killed save of this very step
            shutil.rmtree(self.ckpt_dir / tag, ignore_errors=True)
        dist.barrier()
        self.engine.save_checkpoint(
            str(self.ckpt_dir),
            tag=tag,
            client_state={"data": pos, "step": self.step},
            save_latest=False,  # ours is written last, once the checkpoint is complete
            exclude_frozen_parameters=True,  # rebuilt by build_parts; a 7B frozen LM stays out
        )
        testing.reached("deepspeed_saved")
        rs.save_rng(self.ckpt_dir, tag, self.rank)
        dist.barrier()
        if self.rank == 0:
            rs.write_position(self.ckpt_dir, tag, pos)
            rs.mark_complete(self.ckpt_dir, tag)
            testing.reached("before_latest")
            rs.write_latest(self.ckpt_dir, tag)
            rs.prune_checkpoints(self.ckpt_dir, self.cfg.schedule.keep_checkpoints, [tag])
        testing.saving(None)
        dist.barrier()

    def resume(self) -> bool:
        """Load the newest complete checkpoint (weights, optimizer, LR, data position, RNG);
        False if there is none."""
        from vlmtrain.train.resume import load_rng, resume_tag

        tag = resume_tag(self.ckpt_dir)
        if tag is None:
            return False
        # frozen parameters are not in the checkpoint (see save), hence not strict
        path, client = self.engine.load_checkpoint(
            str(self.ckpt_dir), tag=tag, load_module_strict=False
        )
        if path is None:
            raise RuntimeError(f"DeepSpeed could not load checkpoint {self.ckpt_dir / tag}")
        self.next_batch = self.data.check_position(client["data"])
        self.step = int(client["step"])
        load_rng(self.ckpt_dir, tag, self.rank)
        return True

    def export(self) -> Path | None:
        """Gather the exported parameters (all ranks) and write OUTPUT/export (rank 0)."""
        import torch.distributed as dist

        from vlmtrain.train.checkpoint import export_names, gathered_state, write_export

        module = self.engine.module
        names = export_names(module, self.cfg.model, self.cfg.export)
        state = gathered_state(module, names, self.rank)
        for name, shape in self.lifted.items():
            if name in state:
                state[name] = state[name].reshape(shape)
        path = None
        if self.rank == 0:
            info = {"step": self.step, "mode": self.cfg.export, "recipe": self.cfg.recipe.name}
            path = write_export(self.out / "export", state, self.cfg, self.tokenizer, info)
        dist.barrier()
        return path

    # -- steps --

    def _dtype(self):
        import torch

        p = self.cfg.deepspeed.precision
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(p)

    def _log_step(self, logger, w: Window, elapsed: float) -> dict[str, Any]:
        from vlmtrain.train.flops import throughput

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

    def train(self, stop_after: int | None = None) -> dict[str, Any]:
        """Run to `total` optimizer steps (or stop after `stop_after`, as a kill would)."""
        from tqdm import tqdm

        from vlmtrain.data.batches import to_device
        from vlmtrain.train.flops import speed

        cfg, ga = self.cfg, self.cfg.deepspeed.grad_accum
        logger, keys_log = self._loggers()
        bar = tqdm(
            total=self.total,
            initial=self.step,
            desc="train",
            dynamic_ncols=True,
            disable=not (self.rank == 0 and cfg.log.progress),
        )
        w, t0, last = Window(), time.perf_counter(), {}
        dtype = self._dtype()
        self.engine.train()
        for sb in self.data.batches(self.next_batch, self.total * ga):
            if w.micro == 0:  # before engine.step() moves the scheduler on to the next step
                w.lr = float(self.engine.get_lr()[0])
            batch = to_device(sb.batch, self.engine.device, dtype)
            loss, metrics = self.recipe.loss(self.engine, batch)
            self.engine.backward(loss)
            self.engine.step()
            self.recipe.after_step(self.engine)
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
        if self.rank == 0 and last:
            print("last step: " + " ".join(f"{k} {v}" for k, v in speed(last).items()), flush=True)
        export = self.export() if self.step >= self.total else None
        logger.close()
        if self.rank == 0 and cfg.log.plots and last:
            _write_plots(self.out)
        if keys_log is not None:
            keys_log.close()
        return {"steps": self.step, "total": self.total, "last": last, "export": export}

    def _loggers(self):
        from vlmtrain.train.metrics_log import JsonlWriter, MetricsLogger, truncate_jsonl

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
