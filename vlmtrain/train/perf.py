"""Parallelism and kernel defaults: the ZeRO stage for the world, fused AdamW, torch.compile.

ZeRO partitions optimizer states (stage 1), gradients (2) and parameters (3) over the ranks; over
a world of one there is nothing to partition, and stage 3 still gathers and releases every
module's parameters around each forward and backward (hooks, copies, host syncs). The rule
(`deepspeed.zero_stage: auto`, the default):

- one rank: stage 0 (with `offload_optimizer`: stage 2, which DeepSpeed's CPU offload needs);
  if the model states do not fit even so, stage 1 (the ZeRO optimizer keeps one copy less);
- several ranks: the lowest of stages 0, 1, 2, 3 whose model states per rank fit in half of one
  device's memory (the rest for activations); unknown memory (CPU): stage 0.

An explicit stage is kept; stage >= 1 over one rank without offload logs a warning.
Model-state bytes per parameter (mixed precision with fp32 Adam, ZeRO paper §3.1): trainable
2 (weights) + 2 (grads) + 12 (fp32 master, m, v), plus DeepSpeed's fp32 gradient copy at stage 0
(+4); fp32 training: 4 + 4 + 8; frozen parameters: their own bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

STAGES = (0, 1, 2, 3)
FIT_SHARE = 0.5  # of one device's memory for model states; the rest for activations


def state_bytes(stage: int, world: int, trainable: int, frozen: int, precision: str) -> float:
    """Model-state bytes per rank at ZeRO `stage` (see the module doc)."""
    weight = 4 if precision == "fp32" else 2
    grad = weight
    optim = 8 if precision == "fp32" else 12
    extra = 4 if stage == 0 and precision != "fp32" else 0
    per = {
        0: weight + grad + optim + extra,
        1: weight + grad + optim / world,
        2: weight + (grad + optim) / world,
        3: (weight + grad + optim) / world,
    }[stage]
    return trainable * per + frozen * weight / (world if stage == 3 else 1)


def choose_zero_stage(
    configured: int | str,
    world: int,
    trainable: int,
    frozen: int,
    precision: str,
    device_bytes: int | None,
    offload: bool = False,
) -> tuple[int, str]:
    """(stage, why) for `deepspeed.zero_stage` (an int is kept; "auto" follows the rule)."""
    if configured != "auto":
        stage = int(configured)
        if world == 1 and stage >= 1 and not offload:
            return stage, (
                f"ZeRO-{stage} over a world of one partitions nothing and costs time "
                "(deepspeed.zero_stage=auto would use 0)"
            )
        return stage, f"ZeRO-{stage} (configured)"
    if offload:
        return 2, "ZeRO-2 (auto: deepspeed.offload_optimizer needs ZeRO >= 2 here)"

    def fits(stage: int) -> bool:
        need = state_bytes(stage, world, trainable, frozen, precision)
        return device_bytes is None or need <= FIT_SHARE * device_bytes

    candidates = (0, 1) if world == 1 else STAGES
    stage = next((s for s in candidates if fits(s)), candidates[-1])
    gib = state_bytes(stage, world, trainable, frozen, precision) / 2**30
    return stage, f"ZeRO-{stage} (auto: {world} rank(s), model states {gib:.1f} GiB per rank)"


def choose_stage_for(cfg, model, world: int) -> tuple[int, str]:
    """`choose_zero_stage` for a TrainConfig and a built model on this rank's device."""
    ds = cfg.deepspeed
    trainable, frozen = parameter_counts(model)
    return choose_zero_stage(
        ds.zero_stage,
        world,
        trainable,
        frozen,
        ds.precision,
        device_memory(),
        ds.offload_optimizer,
    )


def with_stage(cfg, stage: int):
    """A copy of `cfg` with the chosen ZeRO stage (the saved config keeps what was asked)."""
    return dataclasses.replace(cfg, deepspeed=dataclasses.replace(cfg.deepspeed, zero_stage=stage))


def parameter_counts(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, frozen) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    return trainable, frozen


def device_memory() -> int | None:
    """Bytes of this rank's CUDA device, or None (CPU)."""
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory)


def adamw_factory(args: dict[str, Any]):
    """A callable DeepSpeed calls with the parameter groups once they are on the device: torch's
    AdamW, fused (one kernel for all tensors) where the device supports it, else foreach."""

    def make(groups) -> torch.optim.Optimizer:
        from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

        params = [p for g in groups for p in (g["params"] if isinstance(g, dict) else [g])]
        supported = set(_get_fused_kernels_supported_devices())
        fused = all(p.device.type in supported and p.is_floating_point() for p in params)
        return torch.optim.AdamW(groups, fused=fused or None, **args)

    return make


def compile_lm(model, setting: bool | str) -> str | None:
    """torch.compile the LM in place (`nn.Module.compile`: parameter names unchanged, so
    checkpoints and exports read the same); `setting` True means inductor. Returns the backend."""
    if setting is False or setting is None:
        return None
    backend = "inductor" if setting is True else str(setting)
    model.lm.compile(backend=backend, dynamic=True)
    return backend
