"""A rank's set-up before its first step: torch.distributed, the model / tokenizer / recipe every
rank builds identically (GRACE's identifiers included), and the DeepSpeed engine.

The optimizer is torch's AdamW with a warm-up + cosine LambdaLR, handed to
`deepspeed.initialize`, which wraps both for ZeRO 0-3 and bf16/fp16; no data set is given to
DeepSpeed (our loader decides what each rank reads, see vlmtrain.data.train_data).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import deepspeed
import deepspeed.ops
import torch
import torch.distributed as dist
from deepspeed.accelerator import get_accelerator

from vlmdata.core.net import free_port
from vlmdata.core.tokenizer import load_tokenizer
from vlmtrain.data.packing import packing_decision
from vlmtrain.errors import ConfigError
from vlmtrain.model.projector_init import load_llava_projector
from vlmtrain.model.vlm import build_model
from vlmtrain.recipes import Recipe, RecipeContext, get_recipe
from vlmtrain.recipes.grace import load_identifiers
from vlmtrain.train.checkpoint import init_from_export
from vlmtrain.train.config import TrainConfig
from vlmtrain.train.perf import adamw_factory

# ---- distributed set-up ------------------------------------------------------------------------


def setup_distributed() -> tuple[int, int]:
    """(rank, world) after initialising torch.distributed via DeepSpeed (gloo on CPU).

    Without launcher variables the process is a world of one. On CPU, DeepSpeed's shared-memory
    collective op is skipped: gloo does the work, and the op would be JIT-compiled on first use
    (minutes on a small machine); VLMTRAIN_CPU_SHM=1 keeps it.
    """
    if "RANK" not in os.environ:
        os.environ.update(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
    accel = get_accelerator()
    if accel.device_name() == "cpu" and os.environ.get("VLMTRAIN_CPU_SHM") != "1":
        deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    if not dist.is_initialized():
        deepspeed.init_distributed(dist_backend=accel.communication_backend_name())
    return dist.get_rank(), dist.get_world_size()


# ---- model, tokenizer, recipe ------------------------------------------------------------------


def _tokenizer_path(cfg: TrainConfig) -> str:
    path = cfg.model.tokenizer or cfg.model.lm
    if not path:
        raise ConfigError("model.tokenizer (or model.lm) must name a local tokenizer")
    return path


@dataclass
class Parts:
    """What every rank builds identically from the config before the engine."""

    model: Any
    tokenizer: Any
    recipe: Recipe
    ctx: RecipeContext
    packing: str  # the log line that says whether and how rows are packed


def build_parts(cfg: TrainConfig) -> Parts:
    """The model, tokenizer, recipe (packing rows where `data.packing` and the recipe allow:
    `packed_recipe`) and recipe context, built the same on every rank."""
    torch.manual_seed(cfg.seed)  # same random init on every rank
    tokenizer = load_tokenizer(_tokenizer_path(cfg))
    model = build_model(cfg.model, tokenizer)
    if cfg.init_projector:
        load_llava_projector(model.projector, cfg.init_projector)
    if cfg.init_from:
        init_from_export(model, cfg.init_from)
    identifiers = load_identifiers(cfg.data.ids, tokenizer) if cfg.data.ids else None  # GRACE
    ctx = RecipeContext.for_model(model, identifiers=identifiers, max_length=cfg.data.max_length)
    recipe, packing = packed_recipe(cfg)
    return Parts(model, tokenizer, recipe, ctx, packing)


def packed_recipe(cfg: TrainConfig) -> tuple[Recipe, str]:
    """(the config's recipe, packing rows where `data.packing` and the recipe allow; the line
    that says so for the run's log). A new recipe object: nothing is set on one after it is
    built."""
    recipe = get_recipe(cfg.recipe.name, **cfg.recipe.options)
    d = cfg.data
    pack_length, line = packing_decision(recipe, d.packing, d.pack_length or d.max_length)
    return (recipe.packed(pack_length) if pack_length else recipe), line


# ---- optimizer, schedule, DeepSpeed engine -----------------------------------------------------


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
        raise ConfigError("no trainable parameters: check model.train")
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
