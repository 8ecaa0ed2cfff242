"""Streaming batches: sequential tar reads split by rank and worker, shuffle buffer, resampling.

Each rank runs `W = max(1, num_workers)` "slots"; batch `b` of an epoch belongs to slot
`b % W` and is that slot's `b // W`-th batch. A slot's sample stream is seeded by (seed, epoch,
rank, slot, stream): with `resampled` it draws shards with replacement (OpenCLIP), otherwise it
cycles through its share of the shards in a per-epoch shuffled order. Every slot produces exactly
`batches_per_epoch / W` batches, so every rank yields the same number (no ZeRO-3 hang).

Resuming at batch `b` replays each slot's stream up to its next batch without collating: the same
samples are read, so the continuation equals an uninterrupted run (given the same worker count).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from vlmdata.core.errors import DataError
from vlmtrain.data.batches import (
    RecordFilter,
    StepBatch,
    StreamSource,
    first_example,
    take_skipped,
)


def shard_sequence(
    shards: list,
    seed: int,
    epoch: int,
    rank: int,
    world: int,
    slot: int,
    slots: int,
    stream: int,
    resampled: bool,
) -> Iterator:
    """Endless shard order of one slot (resampled, or its share of the shards repeated)."""
    rng = np.random.default_rng([seed, epoch, rank, slot, stream, 1])
    if resampled:
        while True:
            yield shards[int(rng.integers(len(shards)))]
    order = np.random.default_rng([seed, epoch, 2]).permutation(len(shards))  # same for all streams
    total_slots = world * slots
    mine = [shards[int(i)] for i in order[rank * slots + slot :: total_slots]]
    if not mine:
        raise DataError(
            f"{len(shards)} shard(s) cannot feed {world} rank(s) x {slots} worker(s) without "
            "resampling: set data.resampled=true, or write more, smaller shards"
        )
    yield from itertools.cycle(mine)


def shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """WebDataset-style buffer shuffle: fill `size`, then emit a random held item per new one."""
    buf: list = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        i = rng.randrange(size)
        buf[i], item = item, buf[i]
        yield item
    rng.shuffle(buf)
    yield from buf


class StreamingBatches(IterableDataset):
    """Batches `start` .. `stop - 1` of one rank; DataLoader workers split them by slot."""

    def __init__(self, data: StreamSource, start: int, stop: int) -> None:
        self.data, self.start, self.stop = data, start, stop
        self.slots = max(1, data.data_cfg.num_workers)

    def _samples(self, epoch: int, slot: int, k: int) -> Iterator[dict[str, Any]]:
        from vlmdata.shards import list_shards

        d, cfg = self.data, self.data.data_cfg
        shards = list_shards(d.root)
        if not shards:
            raise DataError("no shards", file=str(d.root))
        seq = shard_sequence(
            shards, d.seed, epoch, d.rank, d.world, slot, self.slots, k, cfg.resampled
        )
        samples = _matching(seq, d.streams[k].filter, patience=2 * len(shards) + 8)
        rng = random.Random(f"{d.seed}:{epoch}:{d.rank}:{slot}:{k}:shuffle")
        return shuffled(samples, max(1, cfg.shuffle_buffer), rng)

    def _examples(self, epoch: int, slot: int, k: int) -> Iterator[dict[str, Any]]:
        """Endless examples of stream k for one slot, each the first the recipe makes from the
        slot's next records (batches.first_example: the indexed path's rule)."""
        d = self.data
        draws = (
            (sample, random.Random(f"{d.seed}:{k}:{epoch}:{d.rank}:{slot}:{n}"))
            for n, sample in enumerate(self._samples(epoch, slot, k))
        )
        while True:
            yield first_example(d.recipe, d.contexts[k], draws, k)

    def _epoch(self, epoch: int, slot: int, first: int) -> Iterator[tuple[int, list]]:
        """(local batch j, examples) for j >= first; earlier batches are read and dropped."""
        d = self.data
        per_slot = d.batches_per_epoch // self.slots
        streams = [self._examples(epoch, slot, k) for k in range(len(d.streams))]
        for j in range(per_slot):
            examples = [e for k, s in enumerate(d.streams) for e in _take(streams[k], s.per_step)]
            if j >= first:
                yield j, examples

    def __iter__(self) -> Iterator[StepBatch]:
        info = get_worker_info()
        if info is None:
            slots = list(range(self.slots))  # inline: this process plays every slot
        elif info.num_workers != self.slots:
            raise DataError("streaming: DataLoader workers must equal data.num_workers")
        else:  # worker w yields batches start+w, start+w+W, ...: all of one slot
            slots = [(self.start + info.id) % self.slots]
        gens = {s: self._slot_batches(s) for s in slots}
        per_epoch = self.data.batches_per_epoch
        for b in range(self.start, self.stop):
            slot = (b % per_epoch) % self.slots
            if slot in gens:
                yield next(gens[slot])

    def _slot_batches(self, slot: int) -> Iterator[StepBatch]:
        d, per_epoch = self.data, self.data.batches_per_epoch
        epoch = self.start // per_epoch
        within = self.start % per_epoch
        first = (within - slot + self.slots - 1) // self.slots  # first local batch >= start
        while True:
            take_skipped(d.contexts)
            for j, examples in self._epoch(epoch, slot, first):
                yield StepBatch(
                    index=epoch * per_epoch + j * self.slots + slot,
                    batch=d.recipe.collate(examples),
                    keys=[e["key"] for e in examples],
                    skipped=take_skipped(d.contexts),
                )
            epoch, first = epoch + 1, 0


def _matching(shard_seq: Iterator, filter: dict | None, patience: int) -> Iterator[dict]:
    """Records of the shard sequence that pass `filter` (batches.RecordFilter, the indexed
    path's rule), as Samples; an error after `patience` shards in a row without one (a slot
    whose shards hold none would otherwise spin forever)."""
    from vlmdata.shards.records import iter_records

    keep, dry = RecordFilter.of(filter), 0
    for path in shard_seq:
        found = False
        for record, image, ext in iter_records(path):
            if keep.keeps(record):
                found = True
                yield record.sample(image, ext)
        dry = 0 if found else dry + 1
        if dry >= patience:
            raise DataError(
                f"streaming: {dry} shards in a row hold no sample matching {filter} "
                "(without resampling, each worker reads only its share of the shards)"
            )


def _take(it: Iterator, n: int) -> list:
    out = list(itertools.islice(it, n))
    if len(out) < n:
        raise DataError("a stream ran dry (no resampling and no repeat?)")
    return out
