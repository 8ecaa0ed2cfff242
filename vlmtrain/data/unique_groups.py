"""AutoVER's data recipe: a subset file for the entity split and one record per entity per
global batch.

- `subset_filter(path)`: AutoVER trains on `oven_entity_train_0.5.jsonl`, half of OVEN's entity
  split, whose selection rule is not published (MrZilinXiao/AutoVER has the file's name in its
  README command, not the code that made it). So the file itself is read: records of the splits
  it covers (their `data_split`) are kept only when their data_id is listed; other splits (the
  query split) pass whole.
- `unique_group_permutation`: the row order of one epoch in which every block of `block`
  consecutive positions (one global batch: ranks x per-rank examples) holds `block` different
  groups (entities), as AutoVER's `--one_class_per_batch` sampler
  (`get_one_class_per_batch_indices_v2` in common_utils/sampling_utils.py): each block draws
  `block` distinct entities without replacement, with probability proportional to how many of
  their records remain, and takes one remaining record of each; when fewer than `block`
  entities have records left, the block is completed with distinct other entities' records
  drawn again (AutoVER's cycling repeats records the same way). An epoch is
  floor(rows / block) blocks, so every global batch lies inside one epoch; the few rows left
  over differ from epoch to epoch. Deterministic in (seed, stream, epoch), numpy's PCG64.
"""

from __future__ import annotations

import os

import numpy as np

from vlmdata.core.errors import DataError


def subset_filter(path: str | os.PathLike):
    """A polars expression over record columns (split, data_id) for an OVEN subset JSONL."""
    import polars as pl

    from vlmtrain.data.jsonl import iter_jsonl

    ids, splits = set(), set()
    for line, rec in iter_jsonl(path):
        if "data_id" not in rec or "data_split" not in rec:
            raise DataError("subset record needs data_id and data_split", file=str(path),
                            line=line)  # fmt: skip
        ids.add(str(rec["data_id"]))
        splits.add(str(rec["data_split"]))
    if not ids:
        raise DataError("subset file lists no record", file=str(path))
    return ~pl.col("split").is_in(sorted(splits)) | pl.col("data_id").is_in(sorted(ids))


def group_codes(values) -> np.ndarray:
    """Dense integer codes of group values (None is its own group per row: never repeated)."""
    out, codes = np.empty(len(values), dtype=np.int64), {}
    fresh = -1
    for i, v in enumerate(values):
        if v is None:
            out[i], fresh = fresh, fresh - 1
        else:
            out[i] = codes.setdefault(v, len(codes))
    return out


def unique_group_permutation(
    groups: np.ndarray, block: int, seed: int, stream: int, epoch: int
) -> np.ndarray:
    """Row order of one epoch: floor(len/block) blocks of `block` distinct groups each."""
    uniq, inverse = np.unique(groups, return_inverse=True)
    if len(uniq) < block:
        raise DataError(f"one record per entity per global batch needs >= {block} entities "
                        f"(ranks x batch size); the stream has {len(uniq)}")  # fmt: skip
    rng = np.random.default_rng([seed, stream, epoch, 1])
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(uniq) + 1))
    rows = [rng.permutation(order[bounds[g] : bounds[g + 1]]) for g in range(len(uniq))]
    left = np.array([len(r) for r in rows], dtype=np.int64)  # records not yet taken, per group
    out = np.empty((len(groups) // block) * block, dtype=np.int64)
    for b in range(len(out) // block):
        live = np.flatnonzero(left)
        if len(live) >= block:
            chosen = rng.choice(live, size=block, replace=False, p=left[live] / left[live].sum())
        else:
            spent = np.setdiff1d(np.arange(len(uniq)), live)
            extra = rng.choice(spent, size=block - len(live), replace=False)
            chosen = np.concatenate([live, extra])
        for j, g in enumerate(rng.permutation(chosen)):
            n = len(rows[g])
            if left[g]:
                left[g] -= 1
                out[b * block + j] = rows[g][n - 1 - left[g]]
            else:
                out[b * block + j] = rows[g][rng.integers(n)]  # a record drawn again
    return out
