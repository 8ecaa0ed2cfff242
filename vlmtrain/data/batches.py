"""What both batch paths (indexed and streaming) share: the step batch, THE row filter, THE
redraw rule, the per-example RNG and the per-stream skip counters."""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch

from vlmdata.core.errors import DataError
from vlmtrain.data.config import StreamConfig

# Draws in a row that make no example before a stream is an error (docs/DESIGN.md, "The data
# path"): high enough that a stream where the recipe cannot make a real share of the records
# never trips it by chance (at 1 in 2, 16 would fail once in 65,536 examples), low enough that
# a stream that makes nothing fails within seconds.
MAX_DRAWS = 1000


@dataclass
class StepBatch:
    """One micro-batch of this rank: the recipe's collated batch plus its bookkeeping."""

    index: int  # position in the rank's batch sequence (the resumable data position)
    batch: dict[str, Any]
    keys: list[str]
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> examples redrawn


@dataclass(frozen=True)
class RecordFilter:
    """THE row filter of both training paths: `data.filter`'s {column: value or [values]}
    (config-safe: no expressions). A record passes when each column's value is one of the
    values; a null passes nothing. `expr` applies the rule to a records table (the indexed
    path, stream sizes), `keeps` to one `Record` (the streaming path: DataLoader workers are
    forked, and polars must not run in a forked child)."""

    terms: tuple[tuple[str, tuple], ...] = ()

    @classmethod
    def of(cls, spec: dict[str, Any] | None) -> RecordFilter:
        return cls(
            tuple((c, tuple(w) if isinstance(w, list) else (w,)) for c, w in (spec or {}).items())
        )

    def expr(self):
        """A polars expression (None: keep every record)."""
        import polars as pl

        expr = None
        for col, values in self.terms:
            e = pl.col(col).is_in(list(values))  # a null is in no list
            expr = e if expr is None else expr & e
        return expr

    def keeps(self, record: Any) -> bool:
        for col, values in self.terms:
            value = getattr(record, col, None)
            if value is None or value not in values:
                return False
        return True


def row_filter(filter: dict[str, Any] | None):
    """`data.filter` as a polars expression (RecordFilter.expr)."""
    return RecordFilter.of(filter).expr()


def first_example(recipe, ctx, draws: Iterable[tuple[dict, random.Random]], stream: int):
    """THE redraw rule of both paths: the first example the recipe makes from `draws` (sample,
    rng) of one stream, each draw replacing one it could not make (counted in ctx.skipped);
    MAX_DRAWS draws in a row without one is a DataError. The indexed path draws deterministic
    random rows, the streaming path the next records of its shuffled stream."""
    for sample, rng in itertools.islice(draws, MAX_DRAWS):
        ctx.rng = rng
        example = recipe.example(sample, ctx)
        if example is not None:
            return example
    raise DataError(
        f"stream {stream} ({ctx.kind}): the recipe made no example in {MAX_DRAWS} draws in a row "
        f"(skipped: {dict(ctx.skipped)}); check data.filter / ids / max_length"
    )


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
