"""`write_shards` (manifest + image folder → shards) and `write_samples` (streamed pairs → shards).

write_shards works in two passes so that it can write shards in parallel and resume:
1. plan: check every image (in worker processes), drop rejects and duplicates in manifest order,
   cut the kept samples into shards by count/bytes, and compute the whole index from sizes;
2. write: each shard that is not already finished (same plan digest, size and md5 as its
   `_stats.json`) is written by a worker under a temp name and renamed.
Same inputs → same plan → byte-identical tars, index.parquet and wids.json, killed or not.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import KEY_RE, OPTIONAL_COLUMNS, manifest_schema
from vlmdata.core.rejects import RejectWriter, Tally
from vlmdata.shards.images import DEFAULT_MAX_PIXELS, ImageReject
from vlmdata.shards.output import (
    SHARDS_DIR,
    ShardFile,
    clean_stale,
    shard_filename,
    shard_is_finished,
    write_index,
    write_wids,
)
from vlmdata.shards.prepare import (
    ImageOptions,
    Prepared,
    prepare_bytes,
    prepare_chunk,
    read_stamped,
)
from vlmdata.shards.samples import json_bytes, layout, sample_bytes, sha256, txt_bytes
from vlmdata.shards.tarfmt import END_OF_ARCHIVE, RECORD

CHUNK = 64  # rows per planning task


@dataclass
class ShardSummary(Tally):
    """What a run produced: kept samples, rejects by reason, shards written / reused."""

    shards: int = 0
    written: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # "plan" and "write" phases

    def format(self) -> str:
        return (
            self.table("samples")
            + f"\nshards    {self.shards:>10,}  ({self.written} written, {self.skipped} reused, "
            f"{self.bytes / 1e6:,.1f} MB)"
            + "".join(f"\n{k:<9} {v:>10.2f} s" for k, v in self.seconds.items())
        )


@dataclass
class Planned:
    """A kept sample with everything the index needs; bytes are read again when writing."""

    row: dict[str, Any]
    prepared: Prepared
    json: bytes
    txt: bytes

    @property
    def sizes(self) -> dict[str, int]:
        return {"image": self.prepared.size, "json": len(self.json), "txt": len(self.txt)}


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
    key, fmt = p.row["key"], p.prepared.info.format
    lay = layout(key, fmt, p.sizes, start)
    row: dict[str, Any] = {"key": key, "shard": shard_rel, "offset": lay.offset, "size": lay.size}
    hashes = {"image": p.prepared.sha256, "json": sha256(p.json), "txt": sha256(p.txt)}
    for role, (off, size) in lay.members.items():
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = off, size, hashes[role]
    row.update(format=fmt, width=p.prepared.info.width, height=p.prepared.info.height)
    for col in ("source", "split", "texts", "url", "path", *extras):
        row[col] = p.row.get(col)
    return row, lay.size


def _shard_digest(samples: list[Planned]) -> str:
    h = hashlib.sha256()
    for p in samples:
        line = f"{p.row['key']}\t{p.prepared.info.format}\t{p.prepared.sha256}\t"
        h.update(line.encode() + sha256(p.json).encode() + sha256(p.txt).encode() + b"\n")
    return h.hexdigest()


@dataclass(frozen=True)
class ShardJob:
    """Everything a worker needs to write one planned shard (small, sent to a process)."""

    path: str
    digest: str
    opts: ImageOptions
    entries: list[tuple[str, str, Prepared, bytes, bytes]]  # key, manifest path, plan, json, txt


def _planned_image(rel: str, p: Prepared, opts: ImageOptions) -> bytes:
    """The image bytes the plan measured, re-read from its file; DataError if it changed.

    Unchanged (size, mtime_ns) is trusted without re-hashing the original; transformed images
    are re-made (deterministic) and compared by hash.
    """
    try:
        data, stamp = read_stamped(p.file)
    except OSError as e:
        raise DataError(f"{rel}: unreadable during the run ({e})") from None
    if stamp != p.file_stamp:
        raise DataError(f"{rel}: image changed during the run (size or mtime differs from plan)")
    if opts.transforms:
        data = prepare_bytes(data, opts)[0]
        if sha256(data) != p.sha256:
            raise DataError(f"{rel}: resized image differs from the plan")
    return data


def write_planned_shard(job: ShardJob) -> dict[str, Any]:
    """Write one shard from its plan."""
    shard = ShardFile(Path(job.path), job.digest)
    try:
        for key, rel, p, js, txt in job.entries:
            data = _planned_image(rel, p, job.opts)
            parts = {"image": data, "json": js, "txt": txt}
            shard.add_sample(sample_bytes(key, p.info.format, parts))
        return shard.close()
    except BaseException:
        shard.abort()
        raise


def _executor(workers: int) -> Executor | None:
    if workers <= 1:
        return None
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))


def _bar(progress: bool, total: int | None, desc: str, unit: str = "img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False)


def _plan_images(
    rows: list[dict], images_dir: Path, opts: ImageOptions, pool: Executor | None, progress: bool
) -> Iterator[Prepared | tuple[str, str]]:
    rels = [r.get("path") for r in rows]
    chunks = [rels[i : i + CHUNK] for i in range(0, len(rels), CHUNK)]
    with _bar(progress, len(rels), "checking images") as bar:
        if pool is None:
            results = (prepare_chunk(str(images_dir), c, opts) for c in chunks)
        else:
            results = pool.map(
                prepare_chunk, [str(images_dir)] * len(chunks), chunks, [opts] * len(chunks)
            )
        for chunk in results:
            bar.update(len(chunk))
            yield from chunk


class _Gate:
    """Key and duplicate-image checks, in input order; counts rejects as it writes them."""

    def __init__(self, rejects: RejectWriter, file: str, stage: str) -> None:
        self.rejects, self.file, self.stage = rejects, file, stage
        self.keys: set[str] = set()
        self.hashes: dict[str, str] = {}

    def reject(self, row: dict, line: int, reason: str, detail: str) -> None:
        key = row.get("key") if isinstance(row.get("key"), str) else None
        self.rejects.add(
            reason, stage=self.stage, file=self.file, line=line, key=key, detail=detail, record=row
        )

    def key_problem(self, row: dict) -> tuple[str, str] | None:
        key = row.get("key")
        if not isinstance(key, str) or not KEY_RE.match(key):
            return "bad_key", f"key {key!r} is not [A-Za-z0-9_-]+"
        if key in self.keys:
            return "duplicate_key", f"key {key!r} seen before"
        return None

    def admit(self, row: dict, line: int, result: Prepared | tuple[str, str]) -> bool:
        problem = self.key_problem(row)
        if problem is None and not isinstance(result, Prepared):
            problem = result
        if problem is None and result.source_sha256 in self.hashes:
            problem = (
                "duplicate_image",
                f"same bytes as key {self.hashes[result.source_sha256]!r}",
            )
        if problem is not None:
            self.reject(row, line, *problem)
            return False
        self.keys.add(row["key"])
        self.hashes[result.source_sha256] = row["key"]
        return True


def _extras(columns: Iterable[str]) -> list[str]:
    return [c for c in OPTIONAL_COLUMNS if c in set(columns)]


def _params(name: str, spp: int, cap: int | None, opts: ImageOptions) -> dict[str, Any]:
    return {
        "name": name,
        "samples_per_shard": spp,
        "max_shard_bytes": cap,
        "min_side": opts.min_side,
        "max_pixels": opts.max_pixels,
        "resize": opts.resize,
        "image_size": opts.image_size if opts.resize else None,
        "reencode": opts.reencode,
        "decode_check": opts.decode,
        "checksum": "sha256",
    }


def write_shards(
    manifest_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    name: str = "data",
    samples_per_shard: int = 1000,
    max_shard_bytes: int | None = None,
    workers: int = 1,
    min_side: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resize: str | None = None,
    image_size: int = 256,
    reencode: str | None = None,
    decode_check: bool = True,
    progress: bool = True,
) -> ShardSummary:
    """Shard a manifest's local images into OUT (layout: docs/DESIGN.md, contract 3).

    Rerunning after a kill skips shards that are already complete and ends byte-identical.
    """
    manifest_path, images_dir, out = Path(manifest_path), Path(images_dir), Path(out_dir)
    if not images_dir.is_dir():
        raise DataError("image folder not found", file=str(images_dir))
    table = _read_manifest(manifest_path)
    rows = table.to_pylist()
    extras = _extras(table.column_names)
    opts = ImageOptions(min_side, max_pixels, resize, image_size, reencode, decode_check)
    out.mkdir(parents=True, exist_ok=True)
    summary = ShardSummary()
    rejects = RejectWriter(out / "rejects.parquet")
    gate = _Gate(rejects, str(manifest_path), "shard")
    pool = _executor(workers)
    t0 = time.perf_counter()
    try:
        kept = [
            Planned(row, res, json_bytes(row), txt_bytes(row))
            for line, (row, res) in enumerate(
                zip(rows, _plan_images(rows, images_dir, opts, pool, progress), strict=True), 1
            )
            if gate.admit(row, line, res)
        ]
        shards = _assign(kept, samples_per_shard, max_shard_bytes)
        index_rows, jobs, stats = _layout_shards(shards, out, name, opts, extras)
        clean_stale(out / SHARDS_DIR, name, len(shards))
        t1 = time.perf_counter()
        todo = [i for i, job in enumerate(jobs) if stats[i] is None]
        with _bar(progress, len(todo), "writing shards", "shard") as bar:
            results = (pool.map if pool else map)(write_planned_shard, [jobs[i] for i in todo])
            for i, st in zip(todo, results, strict=True):
                stats[i] = st
                bar.update(1)
        rejects.close()
    except BaseException:
        rejects.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    _copy_manifest(manifest_path, out)
    params = _params(name, samples_per_shard, max_shard_bytes, opts)
    _finish(out, name, index_rows, extras, params, stats)
    summary.seconds = {"plan": t1 - t0, "write": time.perf_counter() - t1}
    summary.kept, summary.rejects = len(kept), rejects.counts
    summary.shards, summary.written, summary.skipped = len(jobs), len(todo), len(jobs) - len(todo)
    summary.bytes = sum(s["filesize"] for s in stats)
    return summary


def _read_manifest(path: Path) -> pa.Table:
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"not a readable Parquet manifest ({e})", file=str(path)) from None
    missing = [c for c in ("key", "path", "texts") if c not in table.column_names]
    if missing:
        raise DataError(f"manifest lacks columns {missing} (contract 1)", file=str(path))
    return table


def _assign(kept: list[Planned], spp: int, cap: int | None) -> list[list[Planned]]:
    cutter, shards = _Cutter(spp, cap), []
    for p in kept:
        size = layout(p.row["key"], p.prepared.info.format, p.sizes, 0).size
        if cutter.starts_new(size):
            shards.append([])
        shards[-1].append(p)
    return shards


def _layout_shards(
    shards: list[list[Planned]], out: Path, name: str, opts: ImageOptions, extras: list[str]
) -> tuple[list[dict], list[ShardJob], list[dict | None]]:
    """Index rows (from sizes alone), a job per shard, and the stats of shards already done."""
    index_rows, jobs, stats = [], [], []
    for number, samples in enumerate(shards):
        rel = f"{SHARDS_DIR}/{shard_filename(name, number)}"
        pos = 0
        for p in samples:
            row, size = _index_row(p, rel, pos, extras)
            index_rows.append(row)
            pos += size
        digest = _shard_digest(samples)
        entries = [(p.row["key"], p.row["path"], p.prepared, p.json, p.txt) for p in samples]
        jobs.append(ShardJob(str(out / rel), digest, opts, entries))
        stats.append(shard_is_finished(out / rel, digest))
    return index_rows, jobs, stats


def _copy_manifest(manifest_path: Path, out: Path) -> None:
    target = out / "manifest.parquet"
    if target.exists() and target.resolve() == manifest_path.resolve():
        return
    from vlmdata.core.atomic import atomic_path

    with atomic_path(target) as tmp:
        shutil.copyfile(manifest_path, tmp)


def _finish(out: Path, name: str, index_rows, extras, params, stats) -> None:
    n = len(stats)
    rels = [f"{SHARDS_DIR}/{shard_filename(name, i)}" for i in range(n)]
    write_index(out, index_rows, extras, params)
    write_wids(out, name, list(zip(rels, stats, strict=True)))


def write_samples(
    items: Iterable[tuple[dict[str, Any], bytes]],
    out_dir: str | os.PathLike,
    *,
    manifest: str | os.PathLike | None = None,
    prior_rejects: str | os.PathLike | None = None,
    name: str = "data",
    samples_per_shard: int = 1000,
    max_shard_bytes: int | None = None,
    workers: int = 1,
    min_side: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    resize: str | None = None,
    image_size: int = 256,
    reencode: str | None = None,
    decode_check: bool = True,
    progress: bool = True,
    stage: str = "shard",
) -> ShardSummary:
    """The same output as `write_shards`, fed with (manifest row, image bytes) pairs in order.

    For download: `manifest` is copied to OUT/manifest.parquet (else the rows fed are written
    there); `prior_rejects` (a contract-2 parquet, e.g. failed URLs) is put first in
    OUT/rejects.parquet and counted. Streaming: shards are written one after another, so a
    rerun rewrites them (with identical bytes) instead of skipping them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    opts = ImageOptions(min_side, max_pixels, resize, image_size, reencode, decode_check)
    rejects = RejectWriter(out / "rejects.parquet")
    if prior_rejects is not None:
        rejects.add_table(pq.read_table(prior_rejects))
    gate = _Gate(rejects, "", stage)
    clean_stale(out / SHARDS_DIR, name, 1 << 40)
    stream = _Stream(out, name, samples_per_shard, max_shard_bytes)
    seen_rows: list[dict] = []
    pool = _executor(workers)
    try:
        with _bar(progress, None, "sharding") as bar:
            for line, (row, result) in enumerate(_prepare_stream(items, opts, pool), 1):
                bar.update(1)
                if manifest is None:
                    seen_rows.append(row)
                if isinstance(result[0], bytes):  # (final bytes, Prepared), else (reason, detail)
                    data, prepared = result
                    if gate.admit(row, line, prepared):
                        stream.add(Planned(row, prepared, json_bytes(row), txt_bytes(row)), data)
                else:
                    gate.admit(row, line, result)
        stats = stream.close()
        rejects.close()
    except BaseException:
        stream.abort()
        rejects.abort()
        raise
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    clean_stale(out / SHARDS_DIR, name, len(stats))
    if manifest is not None:
        _copy_manifest(Path(manifest), out)
    extras = _extras(_column_names(manifest, seen_rows))
    if manifest is None:
        _write_rows_manifest(out, seen_rows, extras)
    _finish(
        out,
        name,
        stream.index_rows,
        extras,
        _params(name, samples_per_shard, max_shard_bytes, opts),
        stats,
    )
    summary = ShardSummary(
        kept=stream.kept,
        rejects=rejects.counts,
        shards=len(stats),
        written=len(stats),
        skipped=0,
    )
    summary.bytes = sum(s["filesize"] for s in stats)
    return summary


def _column_names(manifest: str | os.PathLike | None, rows: list[dict]) -> list[str]:
    if manifest is not None:
        return pq.read_schema(manifest).names
    return sorted({k for r in rows for k in r})


def _write_rows_manifest(out: Path, rows: list[dict], extras: list[str]) -> None:
    from vlmdata.core.atomic import atomic_path

    schema = manifest_schema(extras)
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)
    with atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(table, tmp)


def _prepare_one(item: tuple[dict, bytes], opts: ImageOptions):
    row, data = item
    try:
        return row, prepare_bytes(data, opts)
    except ImageReject as e:
        return row, (e.reason, e.detail)


def _prepare_stream(items, opts: ImageOptions, pool: Executor | None):
    if pool is None:
        return (_prepare_one(item, opts) for item in items)
    from functools import partial

    return pool.map(partial(_prepare_one, opts=opts), items, chunksize=16)


class _Stream:
    """Sequential shard writing for write_samples: index rows are laid out as bytes go out."""

    def __init__(self, out: Path, name: str, spp: int, cap: int | None) -> None:
        self.out, self.name = out, name
        self.cutter = _Cutter(spp, cap)
        self.shard: ShardFile | None = None
        self.samples: list[Planned] = []
        self.stats: list[dict] = []
        self.index_rows: list[dict] = []
        self.kept = 0

    def add(self, p: Planned, data: bytes) -> None:
        fmt = p.prepared.info.format
        size = layout(p.row["key"], fmt, p.sizes, 0).size
        if self.cutter.starts_new(size):
            self._close_shard()
            path = self.out / SHARDS_DIR / shard_filename(self.name, len(self.stats))
            self.shard = ShardFile(path)
        rel = f"{SHARDS_DIR}/{self.shard.path.name}"
        row, _ = _index_row(p, rel, self.shard.size, list(OPTIONAL_COLUMNS))
        self.index_rows.append(row)
        self.samples.append(p)
        self.shard.add_sample(
            sample_bytes(p.row["key"], fmt, {"image": data, "json": p.json, "txt": p.txt})
        )
        self.kept += 1

    def _close_shard(self) -> None:
        if self.shard is not None:
            self.shard.plan_digest = _shard_digest(self.samples)
            self.stats.append(self.shard.close())
            self.shard, self.samples = None, []

    def close(self) -> list[dict]:
        self._close_shard()
        return self.stats

    def abort(self) -> None:
        if self.shard is not None:
            self.shard.abort()
