"""What both batch paths (indexed and streaming) share: the step batch, the config-safe row
filter and its streaming twin, the per-example RNG and the per-stream skip counters."""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import torch

from vlmtrain.data.config import StreamConfig

MAX_REDRAWS = 16  # replacement draws for an example the recipe could not make


@dataclass
class StepBatch:
    """One micro-batch of this rank: the recipe's collated batch plus its bookkeeping."""

    index: int  # position in the rank's batch sequence (the resumable data position)
    batch: dict[str, Any]
    keys: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> examples redrawn


def row_filter(filter: dict[str, Any] | None):
    """A polars expression from {column: value or [values]} (config-safe: no expressions)."""
    import polars as pl

    expr = None
    for col, want in (filter or {}).items():
        e = pl.col(col).is_in(list(want)) if isinstance(want, list) else pl.col(col) == want
        expr = e if expr is None else expr & e
    return expr


def meta_matches(meta: dict[str, Any], filter: dict[str, Any] | None) -> bool:
    """The streaming twin of `row_filter`, on a sample's KEY.json."""
    for col, want in (filter or {}).items():
        value = meta.get(col)
        if not (value in want if isinstance(want, list) else value == want):
            return False
    return True


def example_rng(seed: int, stream: int, position: int, attempt: int = 0) -> random.Random:
    """The recipe's random choices (which caption) for one example: reproducible on resume."""
    return random.Random(f"{seed}:{stream}:{position}:{attempt}")


def stream_contexts(ctx, streams: list[StreamConfig]) -> list:
    """One recipe context per stream: same tokenizer/transform, its own kind and skip counter."""
    return [dataclasses.replace(ctx, kind=s.kind, skipped=Counter()) for s in streams]


def take_skipped(contexts: list) -> dict[str, int]:
    """Skip counts since the last call, summed over streams (and reset)."""
    total: Counter = Counter()
    for c in contexts:
        total.update(c.skipped)
        c.skipped.clear()
    return dict(total)


def to_device(batch: dict[str, Any], device, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Tensors to `device`; floating ones (pixel values) to `dtype` when training in bf16/fp16."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device)
            if dtype is not None and v.is_floating_point():
                v = v.to(dtype)
        out[k] = v
    return out


@dataclass
class StreamSource:
    """What the streaming reader needs of a run: no back-reference to `TrainData`."""

    root: Any
    data_cfg: Any  # DataConfig
    seed: int
    rank: int
    world: int
    streams: list[StreamConfig]
    contexts: list
    recipe: Any
    batches_per_epoch: int
