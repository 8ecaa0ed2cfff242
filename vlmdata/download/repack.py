"""The repack: img2dataset's raw shards -> our shards, planned like `vlmdata shard`.

A planning task per raw shard checks and hashes its images; the driver then drops duplicates
and failures in manifest order (exact, whatever ran the tasks) and cuts the output shards; a
task per output shard re-reads its images from the raw shards and writes it. With
`--distributor pyspark|ray` both kinds of task run on that engine (shards/distribute.py), and a
killed repack resumes: output shards already finished with the same plan are kept.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.atomic import atomic_path
from vlmdata.download.img2dataset_run import KEY_COLUMN
from vlmdata.download.results import Fetched, read_shard, read_status
from vlmdata.shards.image_sources import PlanResult, check_planned
from vlmdata.shards.images import ImageReject
from vlmdata.shards.options import ImageOptions
from vlmdata.shards.prepare import ImageProblem, Prepared, prepare_bytes

RawRef = tuple[int, str]  # (raw shard number, manifest key)


@dataclass
class RawImages:
    """img2dataset's output folder as an image source; a row's ref is (raw shard, key)."""

    raw_dir: str
    raw_format: str
    encode_format: str
    key_column: str = KEY_COLUMN  # img2dataset's own "key" for an ingested folder
    _cache: tuple[int, dict[str, Fetched]] | None = field(default=None, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": None}  # tasks load their own raw shards

    def _shard(self, shard_id: int) -> dict[str, Fetched]:
        if self._cache is None or self._cache[0] != shard_id:
            loaded = read_shard(
                Path(self.raw_dir), shard_id, self.raw_format, self.encode_format, self.key_column
            )
            self._cache = (shard_id, loaded)
        return self._cache[1]

    def _bytes(self, ref: RawRef) -> bytes:
        got = self._shard(ref[0]).get(ref[1])
        return (got.image if got is not None else None) or b""  # empty: rejected as empty_file

    def plan_tasks(self, refs: list[RawRef], opts: ImageOptions) -> list[tuple]:
        """One planning task per raw shard (rows come grouped by raw shard, in order)."""
        return [
            (self, list(group), opts) for _, group in itertools.groupby(refs, key=lambda r: r[0])
        ]

    def plan(self, refs: list[RawRef], opts: ImageOptions) -> list[PlanResult]:
        out: list[PlanResult] = []
        for ref in refs:
            try:
                out.append(prepare_bytes(self._bytes(ref), opts)[1])
            except ImageReject as e:
                out.append(ImageProblem.of(e))
        return out

    def read(self, key: str, ref: RawRef, p: Prepared, opts: ImageOptions) -> bytes:
        return check_planned(self._bytes(ref), p, opts, f"raw shard {ref[0]}, key {key}")


class RawRefs:
    """Row i's ref, (raw shard, manifest key), made on request from an int32 per row and the
    row's own Record (`shards.planrows.image_ref`): the key is the row's, so no key column is
    held beside the rows (issue 23: at 10^6 CC3M-like rows that column was 19 MB of the
    repack's peak)."""

    def __init__(self, shard_ids: np.ndarray) -> None:
        self.shard_ids = shard_ids

    def __len__(self) -> int:
        return len(self.shard_ids)

    def of_record(self, row: int, record: Any) -> RawRef:
        return int(self.shard_ids[row]), record.key


def fetched_rows(rows: Any, raw: Path, shard_size: int, done: set[int], path: Path) -> RawRefs:
    """The manifest rows img2dataset fetched successfully, in manifest order, written to
    `path` a raw shard at a time (`rows`: a ManifestFile, read in slices of `shard_size`),
    and their refs: an int32 per row, no table of every row (issue 23).

    Failures are already in the fetch rejects (written before the repack starts)."""
    shard_of: list[np.ndarray] = []
    schema = pq.read_schema(rows.path)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as out:
        for shard_id, part in enumerate(rows.slices(shard_size)):
            if shard_id not in done:
                continue
            status = read_status(raw, shard_id)
            ok = [(got := status.get(k)) is not None and got.status == "success"
                  for k in part.column("key").to_pylist()]  # fmt: skip
            kept = part.take(pa.array(np.flatnonzero(np.array(ok, dtype=bool)), type=pa.int64()))
            out.write_table(kept)
            shard_of.append(np.full(kept.num_rows, shard_id, dtype=np.int32))
    return RawRefs(np.concatenate(shard_of) if shard_of else np.empty(0, dtype=np.int32))
