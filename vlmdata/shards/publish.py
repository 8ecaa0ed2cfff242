"""The planned writer's second pass: each planned shard written under a temp name, then
published (fsync, rename or upload, then its `_stats.json` commit marker).

In one process a thread publishes a shard while the next is written, so the disk flush
overlaps the writes; with workers or an engine each task writes and publishes its own shard.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any

from vlmdata.shards.distribute import Engine
from vlmdata.shards.output import ShardFile
from vlmdata.shards.plan import ShardJob, ShardPlan, progress_bar
from vlmdata.shards.samples import sample_pieces


def write_planned_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard from its plan (one engine task per output shard)."""
    shard, stats = _fill_shard(job)
    shard.publish(stats)
    return stats


def _fill_shard(job: ShardJob, flusher: Executor | None = None) -> tuple[ShardFile, dict[str, Any]]:
    """Write the shard's bytes to its temp file; published by the caller."""
    shard = ShardFile(job.out, job.rel, job.digest, flusher)
    try:
        for key, ref, p, js, txt in job.members():
            data = job.source.read(key, ref, p, job.opts)
            parts = {"image": data, "json": js, "txt": txt}
            shard.add_sample(sample_pieces(key, p.info.format, parts))
        return shard, shard.finish()
    except BaseException:
        shard.abort()
        raise


def _write_in_process(jobs: Iterable[ShardJob]) -> Iterator[dict[str, Any]]:
    """One process writes the shards in turn while a thread publishes (fsync, rename, stats)
    the one before: the disk flush overlaps the next shard's writes. The same thread also
    fdatasyncs the shard being written every FLUSH_EVERY bytes, so the last shard's fsync is
    short. Every shard is published before this returns; a kill leaves the unpublished ones
    to the rerun."""
    with ThreadPoolExecutor(1) as publisher:  # on an error, exiting waits for the pending
        pending: list[Future] = []
        for job in jobs:
            shard, stats = _fill_shard(job, publisher)
            pending.append(publisher.submit(shard.publish, stats))
            yield stats
        for f in pending:
            f.result()  # the first failed publish propagates


ENGINE_WINDOW = 64  # shards whose jobs exist at once when an engine writes them


def write_jobs(plan: ShardPlan, engine: Engine, progress: bool) -> int:
    """Write the shards not already finished, filling in their stats in `plan.done`; how
    many were written. Jobs are made as they are written (a window at a time for an engine),
    never all at once: a job lists its samples."""
    todo = [i for i, st in enumerate(plan.done) if st is None]
    with progress_bar(progress, len(todo), "writing shards", "shard") as bar:
        for i, st in zip(todo, _results(plan, todo, engine), strict=True):
            plan.done[i] = st
            bar.update(1)
    return len(todo)


def _results(plan: ShardPlan, todo: list[int], engine: Engine) -> Iterator[dict[str, Any]]:
    if engine.in_process:
        yield from _write_in_process(plan.job(i) for i in todo)
        return
    window = max(ENGINE_WINDOW, 4 * engine.workers)
    for a in range(0, len(todo), window):
        jobs = [plan.job(i) for i in todo[a : a + window]]
        if engine.distributor != "multiprocessing":  # Spark / Ray: no shared spill file
            jobs = [job.inlined() for job in jobs]
        yield from engine.map(write_planned_shard, jobs)
