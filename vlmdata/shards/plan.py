"""The planned writer's first pass: every distinct image checked once, records placed on images
(group.py), the image samples cut into shards and the whole index laid out from sizes.

Same inputs → same plan: the plan's digest per shard is what lets a rerun keep the shards an
earlier run finished (output.shard_is_finished), and the index is known before any tar byte
is written, since tar headers are fixed-size (samples.layout).
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pyarrow as pa

from vlmdata.core.manifest import OPTIONAL_COLUMNS
from vlmdata.core.record import Record, columns_of, records_from_arrow, stored_under
from vlmdata.core.storage import Location
from vlmdata.shards.distribute import Engine
from vlmdata.shards.group import Columns, Gate, Planned, image_key_of, text_copies
from vlmdata.shards.image_sources import plan_task
from vlmdata.shards.options import ImageOptions, ShardOptions
from vlmdata.shards.output import index_table, shard_is_finished, shard_rel
from vlmdata.shards.prepare import Prepared
from vlmdata.shards.samples import layout
from vlmdata.shards.spill import Spill, open_spill, read_pair
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


def shard_digest(samples: list[Planned]) -> str:
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

    def inlined(self) -> ShardJob:
        """The same job with its json / txt bytes inside (no spill file needed)."""
        if self.spill is None:
            return self
        with open_spill(self.spill) as fd:
            entries = [(k, ref, p, read_pair(fd, slot)) for k, ref, p, slot in self.entries]
        return replace(self, entries=entries, spill=None)

    def members(self) -> Iterator[tuple[str, Any, Prepared, bytes, bytes]]:
        """(key, ref, plan, json, txt) per sample, read from the spill file when there is one."""
        if self.spill is None:
            for key, ref, p, (js, txt) in self.entries:
                yield key, ref, p, js, txt
            return
        with open_spill(self.spill) as fd:
            for key, ref, p, slot in self.entries:
                yield key, ref, p, *read_pair(fd, slot)


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


Placing = tuple[Record, Columns]  # a record and the manifest columns it was read with


class ManifestRecords:
    """A manifest table's rows as (Record, columns) pairs, ROWS at a time, each time it is
    iterated: the planned writer reads the rows twice and never holds them all (issue 23)."""

    ROWS = 8192

    def __init__(self, table: pa.Table) -> None:
        self.table = table

    def __iter__(self) -> Iterator[Placing]:
        columns = tuple(columns_of(self.table.schema.names))
        for batch in self.table.to_batches(max_chunksize=self.ROWS):
            for record in records_from_arrow(batch):
                yield record, columns

    def image_refs(self) -> Iterator[tuple[Any, Any]]:
        """(image key, path) per row, read from two or three columns (the first pass needs
        no more: no Record is made)."""
        names = self.table.schema.names
        for batch in self.table.to_batches(max_chunksize=self.ROWS):
            n = batch.num_rows
            key, path = (batch.column(c).to_pylist() if c in names else [None] * n
                         for c in ("key", "path"))  # fmt: skip
            if "image_key" not in names:
                yield from zip(key, path, strict=True)
            else:
                iks = batch.column("image_key").to_pylist()
                yield from zip(map(stored_under, key, iks), path, strict=True)


@dataclass(frozen=True)
class PlanInput:
    """What is planned: the records in output order, iterated twice: (Record, columns) pairs
    (a manifest read in batches: ManifestRecords) or manifest row dicts (download's
    lists), and where `source` finds row i's image (`refs[i]`; None: the record's `path`)."""

    rows: Iterable[Placing | Mapping[str, Any]]
    refs: list[Any] | None
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
    """Check every image, place every record (`run.gate`), cut and lay out the shards."""
    kept = place_records(inp, run)
    shards = cut_shards(kept, run.opt.samples_per_shard, run.opt.max_shard_bytes)
    del kept
    index, jobs, done = _layout_shards(shards, out, run.opt, extras, inp.source, run.spill.path)
    return ShardPlan(jobs, done, index, run.gate.opened)


def _check(source, refs: list[Any], opts: ImageOptions, engine: Engine, progress: bool):
    """Every image's plan result, in order (the planning tasks run on the engine)."""
    with progress_bar(progress, len(refs), "checking images") as bar:
        for chunk in engine.map(plan_task, source.plan_tasks(refs, opts)):
            bar.update(len(chunk))
            yield from chunk


def place_records(inp: PlanInput, run: Planner) -> list[Planned]:
    """The image samples in order, their records placed and KEY.json / KEY.txt made (and
    moved to the spill file: the samples keep their slots).

    The rows are read twice: once for each image's first ref (so each image is checked once),
    once to place the records on the checked images in row order."""
    first_refs, image_of, image_keys = _number_images(inp, run.opt.every_text)
    checked = list(_check(inp.source, first_refs, run.opt.image, run.engine, run.progress))
    for line, (record, columns) in enumerate(placings(inp.rows), 1):
        number = image_of[line - 1]
        sample = run.gate.admit(record, columns, line, checked[number])
        if sample is not None:
            sample.ref = first_refs[number]
    del first_refs, checked, image_of
    taken = None
    if image_keys is not None:  # every-text copies' keys must not repeat these
        taken = set(run.gate.records.column("key").to_pylist()) | image_keys
    kept: list[Planned] = []
    for p in run.gate.close():
        p.seal()
        copies = text_copies(p, taken) if taken is not None else []
        p.release()
        for q in (p, *copies):
            q.spill(run.spill)
            kept.append(q)
    return kept


def _number_images(inp: PlanInput, every_text: bool) -> tuple[list[Any], array, set | None]:
    """The first pass: each distinct image's ref (its first row's), each row's image number
    (8 bytes a row, where a dict entry would stay alive through the second pass), and the
    image keys when --every-text needs them."""
    firsts: dict[Any, int] = {}  # image key -> its number
    first_refs: list[Any] = []
    image_of = array("q")
    for i, (image_key, path) in enumerate(_image_refs(inp.rows)):
        number = firsts.setdefault(image_key, len(first_refs))
        if number == len(first_refs):
            first_refs.append(path if inp.refs is None else inp.refs[i])
        image_of.append(number)
    return first_refs, image_of, set(firsts) if every_text else None


def _image_refs(rows: Iterable[Placing | Mapping[str, Any]]) -> Iterator[tuple[Any, Any]]:
    """(image key, path) per row (the first pass)."""
    if isinstance(rows, ManifestRecords):
        return rows.image_refs()
    return ((image_key_of(r), r.path) for r, _ in placings(rows))


_COLUMNS: dict[Columns, Columns] = {}  # one tuple object per set of columns seen


def placing(row: Mapping[str, Any]) -> Placing:
    """A manifest row dict as the gate takes it: its Record and its columns (a tuple shared
    by every row with the same columns)."""
    columns = tuple(columns_of(row))
    return Record.from_row(row), _COLUMNS.setdefault(columns, columns)


def placings(rows: Iterable[Placing | Mapping[str, Any]]) -> Iterator[Placing]:
    """(Record, columns) per input row: pairs as they come, row dicts made Records once."""
    for row in rows:
        yield row if isinstance(row, tuple) else placing(row)


def cut_shards(kept: list[Planned], spp: int, cap: int | None) -> list[tuple[Any, list[Planned]]]:
    """(split, samples) per shard: each split (in first-seen order) cut on its own, so a
    shard never mixes splits; a sample's split is its first record's."""
    by_split: dict[Any, list[Planned]] = {}
    for p in kept:
        by_split.setdefault(p.split, []).append(p)
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
    spill: str,
) -> tuple[ArrowRows, list[ShardJob], list[dict | None]]:
    """Index rows (from sizes alone, held as Arrow), a job per shard, and the stats of shards
    already done. Empties `shards` as it goes: a job keeps only what writing needs."""
    index = ArrowRows(index_table([], extras, opt.params()).schema)
    jobs, done, numbers = [], [], {}
    for i, (split, samples) in enumerate(shards):
        shards[i] = (split, [])  # its samples are freed once their entries are made
        numbers[split] = number = numbers.get(split, -1) + 1
        rel = shard_rel(opt.name, number, split)
        pos = 0
        for p in samples:
            row, size = index_row(p, rel, pos, extras)
            index.append(row)
            pos += size
        digest = shard_digest(samples)
        entries = [(p.key, p.ref, p.prepared, p.slot) for p in samples]
        jobs.append(ShardJob(out, rel, digest, opt.image, source, entries, spill))
        done.append(shard_is_finished(out, rel, digest))
    return index, jobs, done
