"""Training batches from vlmdata shards: per-rank, equal in count, mixed per step, resumable.

The unit is the RECORD (records/records.parquet: a caption set, a conversation, a question), not the
stored image: an epoch of a stream visits each of its records once, and records sharing an
image each read it (one `pread` through the index). `data.filter` selects record columns.

`TrainData(cfg, recipe, ctx, rank, world)` yields `StepBatch`es, each the recipe's collated
micro-batch made of exactly `per_step` examples of every stream (kind). Batch `b` of a rank is a
pure function of (seed, b, rank, world) on the indexed path, and of (seed, epoch, b, rank, world,
workers) on the streaming path, so the data position saved with a checkpoint is one number,
`next_batch`, and `--resume` continues the very same sample stream.

Both paths read records (core/record.py `Record`, made into Samples by vlmdata.shards.records),
filter them with one expression (`batches.row_filter`) and redraw by one rule
(`batches.first_example`): an example the recipe cannot make (returns None; it counts why in
`ctx.skipped`) is replaced by the stream's next draw (indexed: a deterministic random row;
streaming: the next record), MAX_DRAWS in a row without one is an error. So batch sizes stay
equal on every rank (InfoNCE gathers across ranks and needs equal shapes) and the skips are
reported per batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmtrain.data.batches import (
    StepBatch,
    StreamSource,
    example_rng,
    first_example,
    row_filter,
    stream_contexts,
    take_skipped,
)
from vlmtrain.data.config import RunData, StreamConfig, resolve_streams
from vlmtrain.data.plan import StepPlan, streaming_batches
from vlmtrain.data.stream import StreamingBatches


class IndexedBatches(Dataset):
    """Map-style: item `b` is this rank's collated batch `b` (see data/plan.py StepPlan)."""

    def __init__(self, readers: list, plan: StepPlan, recipe, contexts: list, seed: int) -> None:
        self.readers, self.plan, self.recipe = readers, plan, recipe
        self.contexts, self.seed = contexts, seed

    def __len__(self) -> int:  # endless in principle; the sampler bounds it
        return 2**62

    def _draws(self, k: int, row: int, pos: int) -> Iterator[tuple[dict[str, Any], Any]]:
        """The planned row, then deterministic replacements from the same stream."""
        reader = self.readers[k]
        for attempt in itertools.count():
            if attempt:
                row = example_rng(self.seed, k, pos, attempt).randrange(len(reader))
            yield reader[row], example_rng(self.seed, k, pos, attempt)

    def _example(self, k: int, row: int, pos: int) -> dict[str, Any]:
        return first_example(self.recipe, self.contexts[k], self._draws(k, row, pos), k)

    def __getitem__(self, b: int) -> StepBatch:
        take_skipped(self.contexts)
        examples = [self._example(k, row, pos) for k, row, pos in self.plan.batch_rows(b)]
        return StepBatch(
            index=int(b),
            batch=self.recipe.collate(examples),
            keys=[e["key"] for e in examples],
            skipped=take_skipped(self.contexts),
        )


def _keep(item: StepBatch) -> StepBatch:
    return item  # DataLoader collate_fn: batches are already collated (module level: picklable)


class TrainData:
    """This rank's batches for a training run (indexed or streaming, see the module doc)."""

    def __init__(self, cfg: RunData, recipe, ctx, rank: int, world: int) -> None:
        self.cfg, self.recipe = cfg, recipe
        self.rank, self.world, self.seed = rank, world, cfg.seed
        self.streams = resolve_streams(cfg.data, dict(recipe.mix))
        self.contexts = stream_contexts(ctx, self.streams)
        from vlmdata.core.storage import Location

        # a folder or an fsspec URL (s3://bucket/prefix: credentials from the environment)
        self.location = Location(cfg.data.shards)
        self.root = self.location.local() if self.location.is_local else self.location.url
        if not self.location.exists(layout.INDEX):
            raise DataError("no index: not a `vlmdata shard` output", file=str(self.root))
        if cfg.data.mode != "indexed" and (cfg.data.unique_in_batch or cfg.data.subset):
            raise DataError("data.unique_in_batch and data.subset need data.mode: indexed")
        self._subset = None
        if cfg.data.subset:
            from vlmtrain.data.unique_groups import subset_filter

            self._subset = subset_filter(cfg.data.subset)
        self.sizes = self._stream_sizes()
        if cfg.data.mode == "indexed":
            self._readers = self._open_readers()
            self.plan = StepPlan(
                self.sizes, [s.per_step for s in self.streams], world, rank, cfg.seed,
                groups=self._groups(),
            )  # fmt: skip
            self.batches_per_epoch = self.plan.batches_per_epoch()
        else:
            workers = max(1, cfg.data.num_workers)
            self.batches_per_epoch = streaming_batches(
                self.sizes[0], self.streams[0].per_step, world, workers
            )

    def _stream_sizes(self) -> list[int]:
        from vlmdata.shards import load_records

        records = load_records(self.location)
        if self._subset is not None:
            records = records.filter(self._subset)
        return stream_sizes(records, self.streams, where=str(self.root))

    def _open_readers(self) -> list:
        from vlmdata.shards import RecordReader

        out = []
        for s in self.streams:
            expr = row_filter(s.filter)
            if self._subset is not None:
                expr = self._subset if expr is None else expr & self._subset
            out.append(RecordReader(self.location, filter=expr))
        return out

    def _groups(self) -> list | None:
        """Per stream, the group code of each row (data.unique_in_batch), or None."""
        col = self.cfg.data.unique_in_batch
        if not col:
            return None
        from vlmtrain.data.unique_groups import group_codes

        for r in self._readers:
            if col not in r.records.columns:
                raise DataError(f"data.unique_in_batch: records have no column {col!r}",
                                file=str(self.root))  # fmt: skip
        return [group_codes(r.records[col].to_list()) for r in self._readers]

    def dataset(self, start: int, stop: int):
        """The torch dataset behind `batches` (exposed for tests and custom loops)."""
        if self.cfg.data.mode == "indexed":
            return IndexedBatches(self._readers, self.plan, self.recipe, self.contexts, self.seed)
        source = StreamSource(
            root=self.root,
            data_cfg=self.cfg.data,
            seed=self.seed,
            rank=self.rank,
            world=self.world,
            streams=self.streams,
            contexts=self.contexts,
            recipe=self.recipe,
            batches_per_epoch=self.batches_per_epoch,
        )
        return StreamingBatches(source, start, stop)

    def batches(self, start: int, stop: int) -> Iterator[StepBatch]:
        """Batches `start` .. `stop - 1` of this rank, in order."""
        ds = self.dataset(start, stop)
        workers = self.cfg.data.num_workers
        kwargs: dict[str, Any] = dict(batch_size=None, num_workers=workers, collate_fn=_keep)
        # its own generator: creating the iterator must not draw from the global torch RNG
        # (that would shift the dropout masks of a resumed run against an uninterrupted one)
        kwargs["generator"] = torch.Generator().manual_seed(self.seed)
        if workers:
            kwargs["persistent_workers"] = False
            kwargs["prefetch_factor"] = 2
        if self.cfg.data.mode == "indexed":
            kwargs["sampler"] = range(start, stop)
        yield from DataLoader(ds, **kwargs)

    def position(self, next_batch: int) -> dict[str, Any]:
        """What a checkpoint stores to continue this exact stream."""
        return {
            "next_batch": int(next_batch),
            "seed": self.seed,
            "world": self.world,
            "mode": self.cfg.data.mode,
            "num_workers": self.cfg.data.num_workers if self.cfg.data.mode == "streaming" else 0,
            "streams": [[s.kind, s.per_step] for s in self.streams],
            "sizes": list(self.sizes),
            "unique_in_batch": self.cfg.data.unique_in_batch,
            "subset": self.cfg.data.subset,
        }

    def check_position(self, state: dict[str, Any]) -> int:
        """The batch to resume at; refuses a state made with another plan (it would differ)."""
        mine = self.position(int(state.get("next_batch", 0)))
        diff = [k for k in mine if k != "next_batch" and state.get(k) != mine[k]]
        if diff:
            detail = ", ".join(f"{k}: {state.get(k)} -> {mine[k]}" for k in diff)
            raise DataError(f"cannot resume the same sample stream: {detail}")
        return mine["next_batch"]


def stream_sizes(records, streams: list[StreamConfig], where: str = "") -> list[int]:
    """Records each stream's filter selects (a polars frame of record columns); DataError
    naming the stream when a filter is invalid or selects nothing (a run would train on
    nothing, or hang). The launcher's pre-flight and the shipped-config test use it too."""
    import polars as pl

    sizes = []
    for s in streams:
        expr = row_filter(s.filter)
        try:
            n = records.height if expr is None else records.filter(expr).height
        except pl.exceptions.PolarsError as e:
            raise DataError(f"data filter {s.filter}: {e}", file=where or None) from e
        if n == 0:
            values = ""
            if "split" in records.columns:
                values = f" (splits here: {sorted(records['split'].unique().drop_nulls())})"
            raise DataError(
                f"stream {s.kind!r}: filter {s.filter} selects no record{values}",
                file=where or None,
            )
        sizes.append(n)
    return sizes
