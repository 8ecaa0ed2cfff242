"""`write_shards` (manifest + image folder → shards) and `write_planned`, which download shares.

Manifest rows are records; a sample is one stored image with every record on it (group.py).
The planned writer works in two passes so that it can write shards in parallel and resume:
1. plan (plan.py): check every distinct image once (in worker processes), place the records
   on images in manifest order, cut the image samples into shards by count/bytes, and compute
   the whole index from sizes;
2. write (publish.py): each shard that is not already finished (same plan digest, size and
   checksum as its `_stats.json`) is written by a worker under a temp name and renamed.
Same inputs → same plan → byte-identical tars, index/index.parquet and wids.json, killed or not.
The streamed writer for (row, bytes) pairs is stream.py; both share run.py's set-up/clean-up.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.heap import lean_allocators, release_free_heap
from vlmdata.core.lifetime import holds_out_lock
from vlmdata.core.storage import Location
from vlmdata.shards import tables
from vlmdata.shards.cluster_plan import on_engine
from vlmdata.shards.distribute import Engine
from vlmdata.shards.group import Gate, RecordRows
from vlmdata.shards.image_sources import folder_source
from vlmdata.shards.options import ShardOptions
from vlmdata.shards.output import clean_stale
from vlmdata.shards.plan import PlanInput, Planner, extras_of, plan_shards
from vlmdata.shards.planrows import ManifestFile, manifest_schema
from vlmdata.shards.planrows import SpooledManifest as _ManifestRows
from vlmdata.shards.publish import write_jobs
from vlmdata.shards.records import records_schema
from vlmdata.shards.run import ShardRun, ShardSummary, location, resolve_options, split_counts
from vlmdata.shards.spill import Spill
from vlmdata.shards.stream import write_samples

__all__ = ["ShardSummary", "write_planned", "write_samples", "write_shards"]


@holds_out_lock
@lean_allocators()
def write_shards(
    manifest_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike | Location,
    options: ShardOptions | None = None,
    *,
    prior_rejects: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
    **overrides: Any,
) -> ShardSummary:
    """Shard a manifest's local images into OUT (layout: docs/DESIGN.md, contract 3).

    OUT is a folder or an fsspec URL (`s3://bucket/prefix`, with `storage_options`).
    `overrides` are ShardOptions fields (`write_shards(m, i, o, samples_per_shard=100)`);
    `prior_rejects` (contract 2, e.g. the source reader's) go first in OUT/rejects/rejects.parquet.
    Rerunning after a kill skips shards that are already complete and ends byte-identical.
    """
    opt = resolve_options(options, overrides)
    manifest_path, images_dir = Path(manifest_path), Path(images_dir)
    if not images_dir.is_dir():
        raise DataError("image folder not found", file=str(images_dir))
    # the partitioned plan reads the file a slice at a time; the local one a spooled copy
    rows = ManifestFile.open(manifest_path) if on_engine(opt) else _read_manifest(manifest_path)
    try:
        return write_planned(
            rows,
            None,
            folder_source(images_dir),
            location(out_dir, storage_options),
            opt,
            manifest=manifest_path,
            prior_rejects=prior_rejects,
            reject_file=str(manifest_path),
            progress=progress,
        )
    finally:
        if isinstance(rows, _ManifestRows):
            rows.close()


def _read_manifest(path: Path) -> _ManifestRows:
    """The manifest's rows, checked (contract 1) and spooled, not held as a table (issue 23)."""
    manifest_schema(path)
    return _ManifestRows(path)


@lean_allocators()
def write_planned(
    rows: Iterable[dict[str, Any]],
    refs: list[Any] | None,
    source: Any,
    out: Location,
    opt: ShardOptions,
    *,
    manifest: Path,
    prior_rejects: str | os.PathLike | None = None,
    reject_file: str = "",
    stage: str = "shard",
    progress: bool = True,
) -> ShardSummary:
    """Plan (check + hash every distinct image once, in tasks), then write one task per shard.

    `rows` are manifest rows (records) in output order, iterated twice (a list, or rows read
    in batches); `refs[i]` is where `source` finds row i's image (None: its `path`);
    `manifest` is copied to OUT. Records are placed on images on the driver from the
    plan's hashes, in row order (group.py), so they are exact whatever engine ran the tasks;
    shards already finished by an earlier run with the same plan are skipped.
    """
    extras = extras_of(pq.read_schema(manifest).names)
    engine = Engine(opt.distributor, opt.workers)
    spill = Spill()  # KEY.json / KEY.txt bytes until their shard is written
    t0 = time.perf_counter()
    records = RecordRows(records_schema(extras))
    plan, staged = None, {}
    try:
        with ShardRun(out, prior_rejects) as run:
            gate = Gate(run.rejects, reject_file, stage, opt.duplicate_images, records=records)
            planner = Planner(opt, gate, engine, spill, progress)
            plan = plan_shards(PlanInput(rows, refs, source), planner, out, extras)
            del rows, refs  # the plan holds them until its shards are written
            clean_stale(out, opt.name, split_counts(plan.rels))
            t1 = time.perf_counter()
            written = write_jobs(plan, engine, progress)
            plan.views = None  # the rows and samples: the tables are made from their columns
            release_free_heap()
            staged = tables.stage_tables(out, plan.index, records, extras, opt.params())
    except BaseException:
        tables.drop_staged(staged)  # staged before a later step failed (closing the rejects)
        raise
    finally:
        engine.close()
        spill.close()
        records.close()
        if plan is not None:
            plan.index.close()
    run.commit_rejects(manifest)
    summary = ShardSummary(kept=len(gate.records), rejects=run.rejects.counts)
    summary.splits = run.publish(opt.name, plan.rels, plan.done, staged)
    summary.seconds = {"plan": t1 - t0, "write": time.perf_counter() - t1}
    summary.images = plan.images  # --every-text copies are samples, not images
    summary.shards, summary.written = len(plan.shards), written
    summary.skipped = len(plan.shards) - written
    summary.bytes = sum(s["filesize"] for s in plan.done)
    return summary
