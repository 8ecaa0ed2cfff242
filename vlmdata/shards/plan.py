"""The planned writer's first pass: every distinct image checked once, records placed on images
(group.py), the image samples cut into shards and the whole index laid out from sizes.

Same inputs → same plan: the plan's digest per shard is what lets a rerun keep the shards an
earlier run finished (output.shard_is_finished), and the index is known before any tar byte
is written, since tar headers are fixed-size (samples.layout).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from vlmdata.core.manifest import OPTIONAL_COLUMNS
from vlmdata.core.storage import Location
from vlmdata.shards.distribute import Engine
from vlmdata.shards.group import Gate, Planned, image_key_of, per_text_samples
from vlmdata.shards.image_sources import PlanResult, plan_task
from vlmdata.shards.options import ImageOptions, ShardOptions
from vlmdata.shards.output import index_table, shard_is_finished, shard_rel
from vlmdata.shards.prepare import Prepared
from vlmdata.shards.samples import layout, sha256
from vlmdata.shards.tables import ArrowRows
from vlmdata.shards.tarfmt import END_OF_ARCHIVE, RECORD


def extras_of(columns: Iterable[str]) -> list[str]:
    """The optional manifest columns present, in their declared order."""
    return [c for c in OPTIONAL_COLUMNS if c in set(columns)]


def progress_bar(progress: bool, total: int | None, desc: str, unit: str = "img"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not progress, leave=False)


def _archive_size(samples_bytes: int) -> int:
    total = samples_bytes + len(END_OF_ARCHIVE)
    return total + (-total % RECORD)


class Cutter:
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


def index_row(p: Planned, shard: str, start: int, extras: list[str]) -> tuple[dict, int]:
    """The sample's index row when it starts at byte `start` of `shard`; its size in bytes."""
    key, fmt = p.key, p.prepared.info.format
    lay = layout(key, fmt, p.sizes, start)
    row: dict[str, Any] = {"key": key, "shard": shard, "sample_offset": lay.offset}
    row["size"] = lay.size
    hashes = {"image": p.prepared.sha256, "json": sha256(p.json), "txt": sha256(p.txt)}
    for role, (off, size) in lay.members.items():
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = off, size, hashes[role]
    row.update(format=fmt, width=p.prepared.info.width, height=p.prepared.info.height)
    row["n_records"] = max(1, p.n_records)
    for col in ("source", "split", "texts", "url", "path", *extras):
        row[col] = p.row.get(col)
    return row, lay.size


def shard_digest(samples: list[Planned]) -> str:
    """What the plan puts in a shard (keys, formats, member hashes): its `_stats.json` marker."""
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


@dataclass
class ShardPlan:
    """The plan of a whole run: a job per shard, the stats of shards an earlier run finished
    (None: to write), the index and records tables, and the samples' count."""

    jobs: list[ShardJob]
    done: list[dict | None]
    index: ArrowRows
    images: int

    @property
    def rels(self) -> list[str]:
        return [j.rel for j in self.jobs]


def plan_shards(
    rows: Iterable[dict[str, Any]],
    refs: list[Any] | None,
    source: Any,
    out: Location,
    opt: ShardOptions,
    gate: Gate,
    engine: Engine,
    extras: list[str],
    progress: bool,
) -> ShardPlan:
    """Check every image, place every record (`gate`), cut and lay out the shards."""
    kept = place_records(rows, refs, source, opt, gate, engine, progress)
    shards = cut_shards(kept, opt.samples_per_shard, opt.max_shard_bytes)
    del kept
    index, jobs, done = _layout_shards(shards, out, opt, extras, source)
    return ShardPlan(jobs, done, index, gate.opened)


def _check(source, refs: list[Any], opts: ImageOptions, engine: Engine, progress: bool):
    """Every image's plan result, in order (the planning tasks run on the engine)."""
    with progress_bar(progress, len(refs), "checking images") as bar:
        for chunk in engine.map(plan_task, source.plan_tasks(refs, opts)):
            bar.update(len(chunk))
            yield from chunk


def place_records(
    rows: Iterable[dict[str, Any]],
    refs: list[Any] | None,
    source: Any,
    opt: ShardOptions,
    gate: Gate,
    engine: Engine,
    progress: bool,
) -> list[Planned]:
    """The image samples in order, their records placed and KEY.json / KEY.txt made.

    `rows` is read twice: once for each image's first ref (so each image is checked once),
    once to place the records on the checked images in row order."""
    firsts: dict[Any, int] = {}  # image key -> its number
    first_refs: list[Any] = []  # the image's ref (its first row's)
    for i, row in enumerate(rows):
        if firsts.setdefault(image_key_of(row), len(first_refs)) == len(first_refs):
            first_refs.append(row.get("path") if refs is None else refs[i])
    checked: Iterator[PlanResult] = _check(source, first_refs, opt.image, engine, progress)
    planned = dict(zip(firsts, checked, strict=True))
    for line, row in enumerate(rows, 1):
        ik = image_key_of(row)
        sample = gate.admit(row, line, planned[ik])
        if sample is not None:
            sample.ref = first_refs[firsts[ik]]
    del firsts, first_refs
    kept = [p.seal() for p in gate.close()]
    if opt.every_text:
        kept = per_text_samples(kept, set(gate.records.column("key").to_pylist()) | set(planned))
    for p in kept:
        p.release()
    return kept


def cut_shards(kept: list[Planned], spp: int, cap: int | None) -> list[tuple[Any, list[Planned]]]:
    """(split, samples) per shard: each split (in first-seen order) cut on its own, so a
    shard never mixes splits; a sample's split is its first record's."""
    by_split: dict[Any, list[Planned]] = {}
    for p in kept:
        by_split.setdefault(p.row.get("split"), []).append(p)
    shards: list[tuple[Any, list[Planned]]] = []
    for split, samples in by_split.items():
        cutter, mine = Cutter(spp, cap), []
        for p in samples:
            if cutter.starts_new(layout(p.key, p.prepared.info.format, p.sizes, 0).size):
                mine.append([])
            mine[-1].append(p)
        shards += [(split, m) for m in mine]
    return shards


def _layout_shards(
    shards: list[tuple[Any, list[Planned]]],
    out: Location,
    opt: ShardOptions,
    extras: list[str],
    source: Any,
) -> tuple[ArrowRows, list[ShardJob], list[dict | None]]:
    """Index rows (from sizes alone, held as Arrow), a job per shard, and the stats of shards
    already done."""
    index = ArrowRows(index_table([], extras, opt.params()).schema)
    jobs, done, numbers = [], [], {}
    for split, samples in shards:
        numbers[split] = number = numbers.get(split, -1) + 1
        rel = shard_rel(opt.name, number, split)
        pos = 0
        for p in samples:
            row, size = index_row(p, rel, pos, extras)
            index.append(row)
            pos += size
        digest = shard_digest(samples)
        entries = [(p.key, p.ref, p.prepared, p.json, p.txt) for p in samples]
        jobs.append(ShardJob(out, rel, digest, opt.image, source, entries))
        done.append(shard_is_finished(out, rel, digest))
    return index, jobs, done
