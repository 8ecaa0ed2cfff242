"""`write_shards` (manifest + image folder → shards) and `write_samples` (streamed pairs → shards).

Manifest rows are records; a sample is one stored image with every record on it (group.py).
write_shards works in two passes so that it can write shards in parallel and resume:
1. plan: check every distinct image once (in worker processes), place the records on images in
   manifest order (rejects and duplicates by the rules in group.py), cut the image samples into
   shards by count/bytes, and compute the whole index from sizes;
2. write: each shard that is not already finished (same plan digest, size and checksum as its
   `_stats.json`) is written by a worker under a temp name and renamed.
Same inputs → same plan → byte-identical tars, index/index.parquet and wids.json, killed or not.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.layout import MANIFEST, REJECTS
from vlmdata.core.lifetime import die_with_parent, holds_out_lock
from vlmdata.core.manifest import OPTIONAL_COLUMNS, check_manifest_schema, manifest_schema
from vlmdata.core.rejects import RejectWriter, Tally
from vlmdata.core.storage import Location
from vlmdata.shards.distribute import Engine
from vlmdata.shards.group import Gate, Planned, image_key_of, per_text_samples
from vlmdata.shards.image_sources import PlanResult, folder_source, plan_task
from vlmdata.shards.images import ImageReject
from vlmdata.shards.options import ImageOptions, ShardOptions
from vlmdata.shards.output import (
    ShardFile,
    clean_stale,
    clean_top_temps,
    format_splits,
    index_table,
    shard_is_finished,
    shard_rel,
    split_patterns,
    write_sizes,
    write_wids,
)
from vlmdata.shards.prepare import (
    ImageProblem,
    Prepared,
    PreparedBytes,
    prepare_bytes,
)
from vlmdata.shards.records import records_schema
from vlmdata.shards.samples import layout, sample_pieces, sha256
from vlmdata.shards.tables import (
    ArrowRows,
    SideTables,
    drop_staged,
    publish_tables,
    stage_tables,
)
from vlmdata.shards.tarfmt import END_OF_ARCHIVE, RECORD


@dataclass
class ShardSummary(Tally):
    """What a run produced: kept records, rejects by reason, image samples, shards written /
    reused."""

    images: int = 0
    shards: int = 0
    written: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # "plan" and "write" phases
    # split folder -> (brace pattern under OUT, shards, samples): what a peer pastes
    splits: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    def format(self) -> str:
        return (
            self.table("records")
            + f"\nimages    {self.images:>10,}"
            + f"\nshards    {self.shards:>10,}  ({self.written} written, {self.skipped} reused, "
            f"{self.bytes / 1e6:,.1f} MB)"
            + "".join(f"\n{k:<9} {v:>10.2f} s" for k, v in self.seconds.items())
            + format_splits(self.splits)
        )


def _archive_size(samples_bytes: int) -> int:
    total = samples_bytes + len(END_OF_ARCHIVE)
    return total + (-total % RECORD)


class _Cutter:
    """Decides where shards end: at `samples_per_shard` or before the file would pass the cap."""

    def __init__(self, samples_per_shard: int, max_shard_bytes: int | None) -> None:
        if samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        self.n, self.cap = samples_per_shard, max_shard_bytes
        self.count = self.pos = 0

    def starts_new(self, sample_size: int) -> bool:
        """Count the sample in; True when it opens a new shard."""
        new = (
            self.count == 0
            or self.count >= self.n
            or (self.cap is not None and _archive_size(self.pos + sample_size) > self.cap)
        )
        if new:
            self.count, self.pos = 0, 0
        self.count += 1
        self.pos += sample_size
        return new


def _index_row(p: Planned, shard_rel: str, start: int, extras: list[str]) -> tuple[dict, int]:
    key, fmt = p.key, p.prepared.info.format
    lay = layout(key, fmt, p.sizes, start)
    row: dict[str, Any] = {"key": key, "shard": shard_rel, "sample_offset": lay.offset}
    row["size"] = lay.size
    hashes = {"image": p.prepared.sha256, "json": sha256(p.json), "txt": sha256(p.txt)}
    for role, (off, size) in lay.members.items():
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = off, size, hashes[role]
    row.update(format=fmt, width=p.prepared.info.width, height=p.prepared.info.height)
    row["n_records"] = max(1, p.n_records)
    for col in ("source", "split", "texts", "url", "path", *extras):
        row[col] = p.row.get(col)
    return row, lay.size


def _shard_digest(samples: list[Planned]) -> str:
    h = hashlib.sha256()
    for p in samples:
        line = f"{p.key}\t{p.prepared.info.format}\t{p.prepared.sha256}\t"
        h.update(line.encode() + sha256(p.json).encode() + sha256(p.txt).encode() + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class ShardJob:
    """Everything a task needs to write one planned shard (small: sent to workers/engines)."""

    out: Location
    rel: str  # the shard's name relative to OUT
    digest: str
    opts: ImageOptions
    source: Any  # FolderImages, RawImages: `read(key, ref, prepared, opts) -> bytes`
    entries: list[tuple[str, Any, Prepared, bytes, bytes]]  # key, ref, plan, json, txt


def write_planned_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard from its plan (one engine task per output shard)."""
    shard, stats = _fill_shard(job)
    shard.publish(stats)
    return stats


def _fill_shard(job: ShardJob, flusher: Executor | None = None) -> tuple[ShardFile, dict[str, Any]]:
    """Write the shard's bytes to its temp file; published by the caller."""
    shard = ShardFile(job.out, job.rel, job.digest, flusher)
    try:
        for key, ref, p, js, txt in job.entries:
            data = job.source.read(key, ref, p, job.opts)
            parts = {"image": data, "json": js, "txt": txt}
            shard.add_sample(sample_pieces(key, p.info.format, parts))
        return shard, shard.finish()
    except BaseException:
        shard.abort()
        raise


def _write_in_process(jobs: list[ShardJob]) -> Iterator[dict[str, Any]]:
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


def _executor(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    return ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=die_with_parent,  # a kill -9 of this process takes the workers with it
        initargs=(os.getpid(),),
    )


def _bar(progress: bool, total: int | None, desc: str, unit: str = "img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False)


def _plan(
    source, refs: list[Any], opts: ImageOptions, engine: Engine, progress: bool
) -> Iterator[PlanResult]:
    """Every row's plan result, in row order (the planning tasks run on the engine)."""
    with _bar(progress, len(refs), "checking images") as bar:
        for chunk in engine.map(plan_task, source.plan_tasks(refs, opts)):
            bar.update(len(chunk))
            yield from chunk


def _extras(columns: Iterable[str]) -> list[str]:
    return [c for c in OPTIONAL_COLUMNS if c in set(columns)]


def resolve_options(options: ShardOptions | None, overrides: dict[str, Any]) -> ShardOptions:
    """`options` (default ShardOptions()) with keyword overrides of its fields."""
    try:
        return replace(options or ShardOptions(), **overrides)
    except TypeError as e:
        known = ", ".join(ShardOptions.field_names())
        raise TypeError(f"{e}; ShardOptions fields are: {known}") from None


def _open_rejects(out: Location) -> tuple[RejectWriter, Path]:
    """A RejectWriter on a local temp file that `out.commit` publishes as OUT's rejects."""
    tmp = out.temp_for(REJECTS)
    return RejectWriter(tmp), tmp


@holds_out_lock
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
    return write_planned(
        _ManifestRows(_read_manifest(manifest_path)),
        None,
        folder_source(images_dir),
        _location(out_dir, storage_options),
        opt,
        manifest=manifest_path,
        prior_rejects=prior_rejects,
        reject_file=str(manifest_path),
        progress=progress,
    )


class _ManifestRows:
    """A manifest table's rows as dicts, ROWS at a time, each time it is iterated: the planned
    writer reads the rows twice and never holds them all as dicts (issue 23)."""

    ROWS = 8192

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for batch in self.table.to_batches(max_chunksize=self.ROWS):
            yield from batch.to_pylist()


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
    extras = _extras(pq.read_schema(manifest).names)
    opts = opt.image
    out.makedirs()
    clean_top_temps(out)
    summary = ShardSummary()
    rejects, rejects_tmp = _open_rejects(out)
    if prior_rejects is not None:
        rejects.add_table(pq.read_table(prior_rejects))
    records = ArrowRows(records_schema(extras))
    gate = Gate(rejects, reject_file, stage, opt.duplicate_images, records=records)
    engine = Engine(opt.distributor, opt.workers)
    t0 = time.perf_counter()
    tables: SideTables | None = None
    try:
        firsts: dict[Any, int] = {}  # image key -> its number: each image is checked once
        first_refs: list[Any] = []  # the image's ref (its first row's)
        for i, row in enumerate(rows):
            if firsts.setdefault(image_key_of(row), len(first_refs)) == len(first_refs):
                first_refs.append(row.get("path") if refs is None else refs[i])
        checked = _plan(source, first_refs, opts, engine, progress)
        planned = dict(zip(firsts, checked, strict=True))
        for line, row in enumerate(rows, 1):
            ik = image_key_of(row)
            sample = gate.admit(row, line, planned[ik])
            if sample is not None:
                sample.ref = first_refs[firsts[ik]]
        del firsts, first_refs
        kept = [p.seal() for p in gate.close()]
        if opt.every_text:
            taken = set(records.column("key").to_pylist()) | set(planned)
            kept = per_text_samples(kept, taken)
            del taken
        del planned
        for p in kept:
            p.release()
        shards = _assign(kept, opt.samples_per_shard, opt.max_shard_bytes)
        index_rows, jobs, stats = _layout_shards(
            shards, out, opt.name, opts, extras, source, opt.params()
        )
        del shards, kept
        clean_stale(out, opt.name, _split_counts([j.rel for j in jobs]))
        t1 = time.perf_counter()
        tables = SideTables(out, index_rows, records, extras, opt.params())
        todo = _write_jobs(jobs, stats, engine, progress)
        rejects.close()
        staged = tables.result()
    except BaseException:
        rejects.abort()
        rejects_tmp.unlink(missing_ok=True)
        if tables is not None:
            tables.drop()
        raise
    finally:
        engine.close()
    out.commit(rejects_tmp, REJECTS)
    _copy_manifest(manifest, out)
    summary.splits = _finish(out, opt.name, [j.rel for j in jobs], stats, staged)
    summary.seconds = {"plan": t1 - t0, "write": time.perf_counter() - t1}
    summary.kept, summary.rejects = len(gate.records), rejects.counts
    summary.images = gate.opened  # --every-text copies are samples, not images
    summary.shards, summary.written, summary.skipped = len(jobs), len(todo), len(jobs) - len(todo)
    summary.bytes = sum(s["filesize"] for s in stats)
    return summary


def _write_jobs(
    jobs: list[ShardJob], stats: list[dict | None], engine: Engine, progress: bool
) -> list[int]:
    """Write the shards not already finished (filling in `stats`); their job numbers."""
    todo = [i for i, job in enumerate(jobs) if stats[i] is None]
    with _bar(progress, len(todo), "writing shards", "shard") as bar:
        todo_jobs = [jobs[i] for i in todo]
        if engine.in_process:
            results = _write_in_process(todo_jobs)
        else:
            results = engine.map(write_planned_shard, todo_jobs)
        for i, st in zip(todo, results, strict=True):
            stats[i] = st
            bar.update(1)
    return todo


def _location(out_dir: str | os.PathLike | Location, storage_options) -> Location:
    if isinstance(out_dir, Location):
        return out_dir
    return Location(out_dir, storage_options)


def _read_manifest(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet manifest ({e})", file=str(path)) from None
    check_manifest_schema(table.schema, ("key", "path", "texts"), path)
    return table


def _assign(kept: list[Planned], spp: int, cap: int | None) -> list[tuple[Any, list[Planned]]]:
    """(split, samples) per shard: each split (in first-seen order) cut on its own, so a
    shard never mixes splits; a sample's split is its first record's."""
    by_split: dict[Any, list[Planned]] = {}
    for p in kept:
        by_split.setdefault(p.row.get("split"), []).append(p)
    shards: list[tuple[Any, list[Planned]]] = []
    for split, samples in by_split.items():
        cutter, mine = _Cutter(spp, cap), []
        for p in samples:
            size = layout(p.key, p.prepared.info.format, p.sizes, 0).size
            if cutter.starts_new(size):
                mine.append([])
            mine[-1].append(p)
        shards += [(split, m) for m in mine]
    return shards


def _split_counts(rels: list[str]) -> dict[str, int]:
    """Shards per split folder (what clean_stale keeps)."""
    counts: dict[str, int] = {}
    for rel in rels:
        folder = rel.split("/")[1]
        counts[folder] = counts.get(folder, 0) + 1
    return counts


def _layout_shards(
    shards: list[tuple[Any, list[Planned]]],
    out: Location,
    name: str,
    opts: ImageOptions,
    extras: list[str],
    source: Any,
    params: dict[str, Any] | None = None,
) -> tuple[ArrowRows, list[ShardJob], list[dict | None]]:
    """Index rows (from sizes alone, held as Arrow), a job per shard, and the stats of shards
    already done."""
    index_rows, jobs, stats = ArrowRows(index_table([], extras, params or {}).schema), [], []
    numbers: dict[Any, int] = {}
    for split, samples in shards:
        numbers[split] = number = numbers.get(split, -1) + 1
        rel = shard_rel(name, number, split)
        pos = 0
        for p in samples:
            row, size = _index_row(p, rel, pos, extras)
            index_rows.append(row)
            pos += size
        digest = _shard_digest(samples)
        entries = [(p.key, p.ref, p.prepared, p.json, p.txt) for p in samples]
        jobs.append(ShardJob(out, rel, digest, opts, source, entries))
        stats.append(shard_is_finished(out, rel, digest))
    return index_rows, jobs, stats


def _copy_manifest(manifest_path: Path, out: Location) -> None:
    if out.is_local:
        target = out.local(MANIFEST)
        if target.exists() and target.resolve() == manifest_path.resolve():
            return
    out.put_file(manifest_path, MANIFEST)


def _finish(
    out: Location, name: str, rels: list[str], stats: list[dict], tables: dict[str, Path]
) -> dict[str, tuple[str, int, int]]:
    """wids.json and each split's sizes.json, then the staged records/records.parquet and
    index/index.parquet (see tables.py); the split patterns."""
    pairs = list(zip(rels, stats, strict=True))
    try:
        write_wids(out, name, pairs)
        write_sizes(out, pairs)
        publish_tables(out, tables)
    except BaseException:
        drop_staged(tables)  # no temp files left behind in OUT
        raise
    return split_patterns([(rel, s["count"]) for rel, s in pairs], out)


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
    if opt.every_text:
        raise DataError("--every-text needs the planned writer (write_shards, download)")
    if opt.duplicate_images == "share":
        raise DataError(
            "--duplicate-images share needs the planned writer (local images): "
            "streamed writing cannot add records to a sample already written"
        )
    out = _location(out_dir, storage_options)
    out.makedirs()
    clean_top_temps(out)
    opts = opt.image
    rejects, rejects_tmp = _open_rejects(out)
    if prior_rejects is not None:
        rejects.add_table(pq.read_table(prior_rejects))
    gate = Gate(rejects, "", stage, opt.duplicate_images, grouped=False)
    clean_stale(out, opt.name, None)
    stream = _Stream(out, opt.name, opt.samples_per_shard, opt.max_shard_bytes)
    seen_rows: list[dict] = []
    pool = _executor(opt.workers)
    try:
        with _bar(progress, None, "sharding") as bar:
            for line, (row, result) in enumerate(_prepare_stream(items, opts, pool), 1):
                bar.update(1)
                if manifest is None:
                    seen_rows.append(row)
                if isinstance(result, PreparedBytes):
                    sample = gate.admit(row, line, result.prepared)
                    if sample is not None:
                        stream.add(sample.seal(), result.data)
                else:
                    gate.admit(row, line, result)
        stats = stream.close()
        rejects.close()
    except BaseException:
        stream.abort()
        rejects.abort()
        rejects_tmp.unlink(missing_ok=True)
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    rels = [rel for rel, _ in stats]
    clean_stale(out, opt.name, _split_counts(rels))
    out.commit(rejects_tmp, REJECTS)
    if manifest is not None:
        _copy_manifest(Path(manifest), out)
    extras = _extras(_column_names(manifest, seen_rows))
    if manifest is None:
        _write_rows_manifest(out, seen_rows, extras)
    tables = stage_tables(out, stream.index_rows(), gate.records, extras, opt.params())
    shard_stats = [st for _, st in stats]
    splits = _finish(out, opt.name, rels, shard_stats, tables)
    summary = ShardSummary(
        kept=len(gate.records),
        images=stream.kept,
        rejects=rejects.counts,
        shards=len(stats),
        written=len(stats),
        skipped=0,
        splits=splits,
    )
    summary.bytes = sum(s["filesize"] for s in shard_stats)
    return summary


def _column_names(manifest: str | os.PathLike | None, rows: list[dict]) -> list[str]:
    if manifest is not None:
        return pq.read_schema(manifest).names
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


def _prepare_stream(items, opts: ImageOptions, pool: Executor | None):
    if pool is None:
        return (_prepare_one(item, opts) for item in items)
    from functools import partial

    return pool.map(partial(_prepare_one, opts=opts), items, chunksize=16)


class _Stream:
    """Sequential shard writing for write_samples: one open shard per split (a shard never
    mixes splits); index rows are laid out as bytes go out."""

    def __init__(self, out: Location, name: str, spp: int, cap: int | None) -> None:
        self.out, self.name, self.spp, self.cap = out, name, spp, cap
        self.splits: dict[Any, _OpenSplit] = {}  # first-seen order: the shard order
        self.kept = 0

    def add(self, p: Planned, data: bytes) -> None:
        split = p.row.get("split")
        state = self.splits.get(split)
        if state is None:
            state = self.splits[split] = _OpenSplit(_Cutter(self.spp, self.cap))
        fmt = p.prepared.info.format
        size = layout(p.key, fmt, p.sizes, 0).size
        if state.cutter.starts_new(size):
            state.close_shard()
            rel = shard_rel(self.name, len(state.stats), split)
            state.shard = ShardFile(self.out, rel)
        row, _ = _index_row(p, state.shard.rel, state.shard.size, list(OPTIONAL_COLUMNS))
        if not state.samples:  # the first sample of a new shard
            state.rows.append([])
        state.rows[-1].append(row)
        state.samples.append(p)
        state.shard.add_sample(
            sample_pieces(p.key, fmt, {"image": data, "json": p.json, "txt": p.txt})
        )
        self.kept += 1

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
    cutter: _Cutter
    shard: ShardFile | None = None
    samples: list[Planned] = field(default_factory=list)
    rows: list[list[dict]] = field(default_factory=list)  # index rows per shard
    stats: list[tuple[str, dict]] = field(default_factory=list)

    def close_shard(self) -> None:
        if self.shard is not None:
            self.shard.plan_digest = _shard_digest(self.samples)
            self.stats.append((self.shard.rel, self.shard.close()))
            self.shard, self.samples = None, []
