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

import pyarrow as pa

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


def fetched_rows(
    rows: pa.Table, raw: Path, shard_size: int, done: set[int]
) -> tuple[list[dict], list[RawRef]]:
    """The manifest rows img2dataset fetched successfully, in manifest order, and their refs.

    Failures are already in the fetch rejects (written before the repack starts)."""
    kept, refs = [], []
    for shard_id in sorted(done):
        status = read_status(raw, shard_id)
        for row in rows.slice(shard_id * shard_size, shard_size).to_pylist():
            got = status.get(row["key"])
            if got is not None and got.status == "success":
                kept.append(row)
                refs.append((shard_id, row["key"]))
    return kept, refs
