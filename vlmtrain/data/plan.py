"""Which sample each rank reads at each batch: pure arithmetic on (seed, stream, batch, rank).

Indexed path: every stream is an endless sequence of epochs, each a seeded permutation of the
stream's rows. Batch `b` of rank `r` takes positions `(b * world + r) * n + j` (j < n) of each
stream with n examples per batch. Consequences, all by construction:
- every rank gets the same number of batches (the count is a number, not a data-loader length),
- the GRACE mix is exact at every step (n_k examples of stream k in every batch),
- resuming at batch b reads exactly what an uninterrupted run would have (no replay needed).

A stream given `groups` (one code per row, e.g. its entity) orders each epoch so that every
global batch (ranks x n positions) holds each group at most once (AutoVER's one class per batch,
vlmtrain.data.unique_groups); its epoch is then floor(size / (world x n)) global batches.

Streaming path: OpenCLIP's recipe for equal work per rank (docs/DESIGN.md, field notes).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from vlmdata.core.errors import DataError


def permutation(size: int, seed: int, stream: int, epoch: int) -> np.ndarray:
    """The row order of one epoch of one stream (numpy's PCG64, stable across platforms)."""
    return np.random.default_rng([seed, stream, epoch]).permutation(size)


class StepPlan:
    """Rows of each stream that rank `rank` of `world` reads in batch `b` (see module doc)."""

    def __init__(
        self,
        sizes: Sequence[int],
        per_step: Sequence[int],
        world: int,
        rank: int,
        seed: int,
        groups: Sequence[np.ndarray | None] | None = None,
    ) -> None:
        if len(sizes) != len(per_step):
            raise ValueError("one per_step count per stream")
        for k, size in enumerate(sizes):
            if size <= 0:
                raise ValueError(f"stream {k} selects no samples")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world of {world}")
        self.sizes, self.per_step = list(sizes), list(per_step)
        self.world, self.rank, self.seed = world, rank, seed
        self.groups = list(groups) if groups is not None else [None] * len(self.sizes)
        if len(self.groups) != len(self.sizes):
            raise ValueError("one groups array (or None) per stream")
        self.epoch_sizes = [
            size if g is None else (size // (n * world)) * n * world
            for size, n, g in zip(self.sizes, self.per_step, self.groups, strict=True)
        ]
        for k, n in enumerate(self.epoch_sizes):
            if n == 0:
                raise DataError(f"stream {k}: {self.sizes[k]} rows, fewer than one global batch of "
                                f"{self.per_step[k]} x {world} ranks with each group at most "
                                "once (data.batch_size, --num-gpus, or more data)")  # fmt: skip
        self._perms: dict[tuple[int, int], np.ndarray] = {}

    def _perm(self, stream: int, epoch: int) -> np.ndarray:
        key = (stream, epoch)
        if key not in self._perms:
            if len(self._perms) > 4 * len(self.sizes):
                self._perms.clear()
            groups = self.groups[stream]
            if groups is None:
                self._perms[key] = permutation(self.sizes[stream], self.seed, stream, epoch)
            else:
                from vlmtrain.data.unique_groups import unique_group_permutation

                block = self.per_step[stream] * self.world
                perm = unique_group_permutation(groups, block, self.seed, stream, epoch)
                self._perms[key] = perm
        return self._perms[key]

    def positions(self, stream: int, batch: int) -> range:
        """Global positions in the stream's endless sequence that this rank reads in `batch`."""
        n = self.per_step[stream]
        start = (batch * self.world + self.rank) * n
        return range(start, start + n)

    def batch_rows(self, batch: int) -> list[tuple[int, int, int]]:
        """(stream, row, position) for every example of this rank's batch, stream by stream."""
        out = []
        for k, size in enumerate(self.epoch_sizes):
            for pos in self.positions(k, batch):
                epoch, i = divmod(pos, size)
                out.append((k, int(self._perm(k, epoch)[i]), pos))
        return out

    def batches_per_epoch(self) -> int:
        """Batches for one pass over the FIRST stream by all ranks together (rounded up)."""
        return math.ceil(self.epoch_sizes[0] / (self.per_step[0] * self.world))


def streaming_batches(num_samples: int, per_step: int, world: int, workers: int) -> int:
    """Batches per rank per epoch on the streaming path, equal on every rank.

    OpenCLIP: `ceil(samples / (batch x world))`, rounded up to a multiple of the workers, since
    each worker produces `ceil(num_batches / workers)` batches (repeating shards as needed).
    """
    if num_samples <= 0:
        raise ValueError("no samples to stream")
    workers = max(1, workers)
    num_batches = math.ceil(num_samples / (per_step * world))
    return math.ceil(num_batches / workers) * workers


def total_steps(batches_per_epoch: int, epochs: float, grad_accum: int) -> int:
    """Optimizer steps for `epochs` passes (at least one step)."""
    return max(1, math.ceil(batches_per_epoch * epochs / grad_accum))
