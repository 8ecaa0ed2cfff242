"""The planned writer's first pass: every distinct image checked once, records placed on images
(group.py's rules; placement.py), every KEY.json made (sealing.py), the image samples cut into
shards and the whole index laid out from sizes.

Same inputs → same plan: the plan's digest per shard is what lets a rerun keep the shards an
earlier run finished (output.shard_is_finished), and the index is known before any tar byte
is written, since tar headers are fixed-size (samples.layout). The plan holds numbers and
hashes per row and per sample (numpy), not objects (issue 23); a shard's job is made when it
is written.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from vlmdata.core.heap import release_free_heap
from vlmdata.core.manifest import OPTIONAL_COLUMNS
from vlmdata.core.storage import Location
from vlmdata.shards.compact import index_dtype
from vlmdata.shards.distribute import Engine
from vlmdata.shards.group import Gate, Planned
from vlmdata.shards.options import ImageOptions, ShardOptions
from vlmdata.shards.output import index_table, shard_is_finished, shard_rel
from vlmdata.shards.planrows import ManifestRecords, Placing, placing, placings, plan_rows
from vlmdata.shards.prepare import Prepared
from vlmdata.shards.samples import layout
from vlmdata.shards.spill import Spill, open_spill, read_pair
from vlmdata.shards.tables import ArrowRows
from vlmdata.shards.tarfmt import END_OF_ARCHIVE, RECORD

if TYPE_CHECKING:
    from vlmdata.shards.sealing import SampleViews

__all__ = ["ManifestRecords", "Placing", "placing", "placings"]


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


def index_row(p: Planned | Any, shard: str, start: int, extras: list[str]) -> tuple[dict, int]:
    """The sample's index row when it starts at byte `start` of `shard`; its size in bytes."""
    key, fmt = p.key, p.prepared.info.format
    lay = layout(key, fmt, p.sizes, start)
    row: dict[str, Any] = {"key": key, "shard": shard, "sample_offset": lay.offset}
    row["size"] = lay.size
    js, txt = p.member_sha256()
    hashes = {"image": p.prepared.sha256, "json": js, "txt": txt}
    for role, (off, size) in lay.members.items():
        row[f"{role}_offset"], row[f"{role}_size"], row[f"{role}_sha256"] = off, size, hashes[role]
    row.update(format=fmt, width=p.prepared.info.width, height=p.prepared.info.height)
    row["n_records"] = max(1, p.n_records)
    first = p.record
    for col in ("source", "split", "texts", "url", "path", *extras):
        row[col] = getattr(first, col)
    return row, lay.size


def shard_digest(samples: list[Planned] | list[Any]) -> str:
    """What the plan puts in a shard (keys, formats, member hashes): its `_stats.json` marker."""
    h = hashlib.sha256()
    for p in samples:
        js, txt = p.member_sha256()
        h.update(f"{p.key}\t{p.prepared.info.format}\t{p.prepared.sha256}\t{js}{txt}\n".encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ShardJob:
    """Everything a task needs to write one planned shard (small: sent to workers/engines).

    Each entry is (key, ref, the image's plan, json + txt): their Slot in the `spill` file,
    or, once `inlined()` for a Spark / Ray task, the (json, txt) bytes themselves."""

    out: Location
    rel: str  # the shard's name relative to OUT
    digest: str
    opts: ImageOptions
    source: Any  # FolderImages, RawImages: `read(key, ref, prepared, opts) -> bytes`
    entries: list[tuple[str, Any, Prepared, Any]]
    spill: str | None = None
    table: str | None = None  # a partitioned plan's job file (cluster_plan.py): read here

    def inlined(self) -> ShardJob:
        """The same job with its json / txt bytes inside (no spill file needed)."""
        if self.spill is None:
            return self
        with open_spill(self.spill) as fd:
            entries = [(k, ref, p, read_pair(fd, slot)) for k, ref, p, slot in self.entries]
        return replace(self, entries=entries, spill=None)

    def members(self) -> Iterator[tuple[str, Any, Prepared, bytes, bytes]]:
        """(key, ref, plan, json, txt) per sample, read from the spill file when there is one
        (or from the job file of a plan made on the engine)."""
        if self.table is not None:
            from vlmdata.shards.cluster_plan import job_entries

            yield from job_entries(self.table)
            return
        if self.spill is None:
            for key, ref, p, (js, txt) in self.entries:
                yield key, ref, p, js, txt
            return
        with open_spill(self.spill) as fd:
            for key, ref, p, slot in self.entries:
                yield key, ref, p, *read_pair(fd, slot)


@dataclass
class ShardPlan:
    """The plan of a whole run: per shard its name, digest and samples (a range of `order`,
    numbers of kept samples), the stats of shards an earlier run finished (None: to write),
    the index table and the samples' count. Jobs are made one shard at a time (`job`)."""

    shards: list[tuple[str, str, int, int]]  # (rel, digest, start, end)
    order: np.ndarray
    done: list[dict | None]
    index: ArrowRows
    images: int
    views: SampleViews | None = None  # what the jobs are made from (None once written)
    make: tuple = ()  # (out, image options, source, spill path)

    @property
    def rels(self) -> list[str]:
        return [rel for rel, *_ in self.shards]

    def job(self, i: int) -> ShardJob:
        """Shard i's job: its samples' keys, refs, checked images and spill slots."""
        rel, digest, start, end = self.shards[i]
        out, opts, source, spill = self.make
        views = self.views.views(self.order[start:end], for_writing=True)
        entries = [(v.key, v.ref, v.prepared, v.slot) for v in views]
        return ShardJob(out, rel, digest, opts, source, entries, spill)


@dataclass(frozen=True)
class PlanInput:
    """What is planned: the records in output order, read several times: (Record, columns)
    pairs (a manifest read in batches: ManifestRecords) or manifest row dicts (download's
    lists), and where `source` finds row i's image (`image_ref`; None: the record's `path`)."""

    rows: Iterable[Placing | Mapping[str, Any]]
    refs: Any  # a sequence, an object with `of_record(row, record)`, or None
    source: Any  # FolderImages, RawImages (image_sources.py, download/repack.py)


@dataclass(frozen=True)
class Planner:
    """The run's options and the tools planning uses: the gate placing records, the engine
    running the checks, the spill file taking KEY.json / KEY.txt."""

    opt: ShardOptions
    gate: Gate
    engine: Engine
    spill: Spill
    progress: bool = True


def plan_shards(inp: PlanInput, run: Planner, out: Location, extras: list[str]) -> ShardPlan:
    """Check every image, place every record (`run.gate`), make every KEY.json, cut and lay
    out the shards; on Spark / Ray, partitioned on the engine (cluster_plan.py)."""
    from vlmdata.shards import cluster_plan

    if cluster_plan.partitioned(inp, run):
        plan = cluster_plan.plan_on_cluster(inp, run, out, extras)
        plan.make = (out, run.opt.image, inp.source, None)
        return plan
    views = place_records(inp, run)
    plan = layout_shards(views, out, run.opt, extras)
    plan.make = (out, run.opt.image, inp.source, run.spill.path)
    return plan


def place_records(inp: PlanInput, run: Planner) -> SampleViews:
    """Passes 1-3: image keys numbered, rows placed, samples sealed; what the layout reads."""
    from vlmdata.shards.placement import Placer, number_images
    from vlmdata.shards.sealing import SampleViews, seal_samples

    rows = plan_rows(inp.rows)
    images = number_images(rows, run.opt.every_text)
    release_free_heap()
    placer = Placer(rows, inp.refs, inp.source, images, run)
    with progress_bar(run.progress, len(rows), "placing records", "row") as bar:
        placer.run(bar)
    images.placed()
    placer.finish(keep_keys=run.opt.every_text)  # copy keys are checked against placed keys
    release_free_heap()
    kept = seal_samples(placer, run.spill, run.opt.every_text)
    kept_samples = np.empty(len(kept), dtype=index_dtype(len(placer.samples)))  # image samples
    for a in range(0, len(kept), 65536):  # KEPT rows read back 65,536 at a time
        b = min(a + 65536, len(kept))
        kept_samples[a:b] = kept.read(np.arange(a, b))["sample"]
    images.keys = None
    samples = placer.samples
    del placer  # its key set, hash map and per-row samples
    release_free_heap()
    return SampleViews(kept, kept_samples, samples, images, rows, inp.refs)


LAYOUT_WINDOW = 4096


def layout_shards(
    views: SampleViews, out: Location, opt: ShardOptions, extras: list[str]
) -> ShardPlan:
    """Each split (in first-seen order) cut on its own, so a shard never mixes splits (a
    sample's split is its first record's); index rows from sizes alone, held as Arrow; each
    shard's digest and the stats of shards already done."""
    index = ArrowRows(index_table([], extras, opt.params()).schema)
    codes = views.split_codes()
    splits = len(views.samples.splits)
    # kept samples by split, first-seen order within one (a stable sort: each split's part)
    order = np.argsort(codes, kind="stable").astype(index_dtype(len(codes)))
    bounds = np.zeros(splits + 1, dtype=np.int64)
    np.cumsum(np.bincount(codes, minlength=splits), out=bounds[1:])
    del codes
    plan = ShardPlan([], order, [], index, len(views.samples), views)
    for code in range(splits):
        mine = order[bounds[code] : bounds[code + 1]]
        split = views.samples.split_of(code)
        _cut_split(plan, views, mine, split, int(bounds[code]), out, opt, extras)
    return plan


def _cut_split(plan: ShardPlan, views, mine: np.ndarray, split: Any, base: int,
               out: Location, opt: ShardOptions, extras: list[str]) -> None:  # fmt: skip
    cutter, current, start = Cutter(opt.samples_per_shard, opt.max_shard_bytes), [], 0
    rels = (shard_rel(opt.name, number, split) for number in range(len(mine)))
    for a in range(0, len(mine), LAYOUT_WINDOW):
        for i, v in enumerate(views.views(mine[a : a + LAYOUT_WINDOW]), a):
            if cutter.starts_new(layout(v.key, v.prepared.info.format, v.sizes, 0).size):
                if current:
                    _add_shard(plan, current, next(rels), base + start, base + i, out, extras)
                current, start = [], i
            current.append(v)
    if current:
        _add_shard(plan, current, next(rels), base + start, base + len(mine), out, extras)


def _add_shard(plan: ShardPlan, samples: list, rel: str, start: int, end: int,
               out: Location, extras: list[str]) -> None:  # fmt: skip
    """One shard's index rows, digest and done stats (its samples: order[start:end])."""
    pos = 0
    for p in samples:
        row, size = index_row(p, rel, pos, extras)
        plan.index.append(row)
        pos += size
    digest = shard_digest(samples)
    plan.shards.append((rel, digest, start, end))
    plan.done.append(shard_is_finished(out, rel, digest))
