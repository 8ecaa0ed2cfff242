"""`write_samples`: the same output as `write_shards`, fed with (manifest row, image bytes)
pairs in order and written in one pass, shard after shard (the set-up and clean-up are
run.py's, shared with the planned writer)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.layout import MANIFEST
from vlmdata.core.lifetime import die_with_parent, holds_out_lock
from vlmdata.core.manifest import OPTIONAL_COLUMNS, manifest_schema
from vlmdata.core.storage import Location
from vlmdata.shards.group import Gate, Planned
from vlmdata.shards.images import ImageReject
from vlmdata.shards.options import ImageOptions, ShardOptions
from vlmdata.shards.output import ShardFile, clean_stale, shard_rel
from vlmdata.shards.plan import Cutter, extras_of, index_row, placing, progress_bar, shard_digest
from vlmdata.shards.prepare import ImageProblem, PreparedBytes, prepare_bytes
from vlmdata.shards.run import ShardRun, ShardSummary, location, resolve_options, split_counts
from vlmdata.shards.samples import layout, sample_pieces
from vlmdata.shards.tables import stage_tables


@holds_out_lock
def write_samples(
    items: Iterable[tuple[dict[str, Any], bytes]],
    out_dir: str | os.PathLike | Location,
    options: ShardOptions | None = None,
    *,
    manifest: str | os.PathLike | None = None,
    prior_rejects: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
    stage: str = "shard",
    **overrides: Any,
) -> ShardSummary:
    """The same output as `write_shards`, fed with (manifest row, image bytes) pairs in order.

    For download: `manifest` is copied to OUT's manifest table (else the rows fed are written
    there); `prior_rejects` (a contract-2 parquet, e.g. failed URLs) is put first in
    OUT's rejects table and counted. Streaming: shards are written one after another, so a
    rerun rewrites them (with identical bytes) instead of skipping them, and a written sample
    cannot take more records: every row's image is stored on its own (`image_key` is not
    grouped) and byte-identical images are `duplicate_image` rejects ("share" is refused).
    """
    opt = resolve_options(options, overrides)
    _check_streamable(opt)
    out = location(out_dir, storage_options)
    seen_rows: list[dict] = []
    pool = _executor(opt.workers)
    try:
        with ShardRun(out, prior_rejects) as run:
            gate = Gate(run.rejects, "", stage, opt.duplicate_images, grouped=False)
            clean_stale(out, opt.name, None)
            stream = _Stream(out, opt.name, opt.samples_per_shard, opt.max_shard_bytes)
            with stream, progress_bar(progress, None, "sharding") as bar:
                for line, (row, result) in enumerate(_prepare_stream(items, opt.image, pool), 1):
                    bar.update(1)
                    if manifest is None:
                        seen_rows.append(row)
                    stream.admit(gate, row, line, result)
                stats = stream.close()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rels = [rel for rel, _ in stats]
    clean_stale(out, opt.name, split_counts(rels))
    run.commit_rejects(None if manifest is None else Path(manifest))
    extras = extras_of(pq.read_schema(manifest).names if manifest else _row_columns(seen_rows))
    if manifest is None:
        _write_rows_manifest(out, seen_rows, extras)
    tables = stage_tables(out, stream.index_rows(), gate.records, extras, opt.params())
    shard_stats = [st for _, st in stats]
    splits = run.publish(opt.name, rels, shard_stats, tables)
    summary = ShardSummary(kept=len(gate.records), images=stream.kept, rejects=run.rejects.counts)
    summary.shards = summary.written = len(stats)
    summary.splits = splits
    summary.bytes = sum(s["filesize"] for s in shard_stats)
    return summary


def _check_streamable(opt: ShardOptions) -> None:
    if opt.every_text:
        raise DataError("--every-text needs the planned writer (write_shards, download)")
    if opt.duplicate_images == "share":
        raise DataError(
            "--duplicate-images share needs the planned writer (local images): "
            "streamed writing cannot add records to a sample already written"
        )


def _executor(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    import multiprocessing

    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,  # a kill -9 of this process takes the workers with it
        initargs=(os.getpid(),),
    )


def _row_columns(rows: list[dict]) -> list[str]:
    return sorted({k for r in rows for k in r})


def _write_rows_manifest(out: Location, rows: list[dict], extras: list[str]) -> None:
    schema = manifest_schema(extras)
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    with out.staged(MANIFEST) as tmp:
        pq.write_table(table, tmp)


def _prepare_one(
    item: tuple[dict, bytes], opts: ImageOptions
) -> tuple[dict, PreparedBytes | ImageProblem]:
    row, data = item
    try:
        return row, PreparedBytes(*prepare_bytes(data, opts))
    except ImageReject as e:
        return row, ImageProblem.of(e)


def _prepare_stream(
    items: Iterable[tuple[dict, bytes]], opts: ImageOptions, pool: Executor | None
) -> Iterator[tuple[dict, PreparedBytes | ImageProblem]]:
    if pool is None:
        return (_prepare_one(item, opts) for item in items)
    return pool.map(partial(_prepare_one, opts=opts), items, chunksize=16)


class _Stream:
    """Sequential shard writing: one open shard per split (a shard never mixes splits); index
    rows are laid out as bytes go out. Leaving its block on an error drops the open shards."""

    def __init__(self, out: Location, name: str, spp: int, cap: int | None) -> None:
        self.out, self.name, self.spp, self.cap = out, name, spp, cap
        self.splits: dict[Any, _OpenSplit] = {}  # first-seen order: the shard order
        self.kept = 0

    def admit(self, gate: Gate, row: dict, line: int, result: Any) -> None:
        """Place the row as a Record (group.py's rules); write its sample when it opened one."""
        record, columns = placing(row)
        if isinstance(result, PreparedBytes):
            sample = gate.admit(record, columns, line, result.prepared)
            if sample is not None:
                self.add(sample.seal(), result.data)
        else:
            gate.admit(record, columns, line, result)

    def add(self, p: Planned, data: bytes) -> None:
        split = p.split
        state = self.splits.get(split)
        if state is None:
            state = self.splits[split] = _OpenSplit(Cutter(self.spp, self.cap))
        fmt = p.prepared.info.format
        if state.cutter.starts_new(layout(p.key, fmt, p.sizes, 0).size):
            state.close_shard()
            state.shard = ShardFile(self.out, shard_rel(self.name, len(state.stats), split))
        row, _ = index_row(p, state.shard.rel, state.shard.size, list(OPTIONAL_COLUMNS))
        if not state.samples:  # the first sample of a new shard
            state.rows.append([])
        state.rows[-1].append(row)
        state.samples.append(p)
        state.shard.add_sample(
            sample_pieces(p.key, fmt, {"image": data, "json": p.json, "txt": p.txt})
        )
        self.kept += 1

    def __enter__(self) -> _Stream:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if kind is not None:
            self.abort()

    def close(self) -> list[tuple[str, dict]]:
        """(rel, stats) of every shard, split by split."""
        for state in self.splits.values():
            state.close_shard()
        return [pair for state in self.splits.values() for pair in state.stats]

    def index_rows(self) -> list[dict]:
        return [row for state in self.splits.values() for rows in state.rows for row in rows]

    def abort(self) -> None:
        for state in self.splits.values():
            if state.shard is not None:
                state.shard.abort()


@dataclass
class _OpenSplit:
    cutter: Cutter
    shard: ShardFile | None = None
    samples: list[Planned] = field(default_factory=list)
    rows: list[list[dict]] = field(default_factory=list)  # index rows per shard
    stats: list[tuple[str, dict]] = field(default_factory=list)

    def close_shard(self) -> None:
        if self.shard is not None:
            self.shard.plan_digest = shard_digest(self.samples)
            self.stats.append((self.shard.rel, self.shard.close()))
            self.shard, self.samples = None, []
