"""The shard plan partitioned on the engine (`--distributor pyspark|ray`, issue 23): the rules
run in tasks over hash partitions, the driver keeps per-partition and per-shard state.

Every rule of group.py is "the first row in manifest order wins" within a group of rows that
share a record key, an image key or (once checked) an image's bytes; rows in no common group
never affect each other. So the rows are split into components of those links and each
component is planned whole, in manifest order, by the local planner's own code:

1. (driver) the manifest cut into slices of SLICE_ROWS rows (Parquet, in the scratch folder;
   read from its file a slice at a time: `ManifestFile`);
2. `hash_slice` per slice: each row's key and image-key hashes, by hash partition;
3. `check_bucket` per image-key partition: each image checked once, from its first row (the
   results kept for placement); source sha256 -> image key, by sha partition;
4. `edges_bucket` per partition: image keys linked by a shared record key or equal bytes;
5. `find_components` (cluster_links.py): min-label rounds over the links' partitions, then
   each row's component partition (an unlinked image key's is its own hash partition);
6. `destinations` per image-key partition, then `route_slice` per slice: rows and check
   results to their component's partition;
7. `place_bucket` per component partition (cluster_place.py): placed, sealed, written out;
8. `clash_bucket` per partition (--every-text): copy keys against placed and image keys;
9. (driver) the slices read in order: records.parquet rows and rejects from each row's
   outcome (rejects in row order, as one run writes them); the kept samples of each split
   read in opening order (a sample's number is its opening row), cut by the same Cutter,
   index rows and digests made; each shard's entries go to a job file its task reads.

The driver holds one slice's rows, then one slice's kept samples (download passes its fetched
rows' file, and their raw refs: an int32 per row). The output is byte-identical to
the local plan because each component's decisions are made by the same code in the same row
order, and everything laid out after placement is ordered by row numbers alone
(tests/shards/test_cluster_plan.py).
"""

from __future__ import annotations

import os
import shutil
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.record import records_from_arrow
from vlmdata.core.storage import Location
from vlmdata.shards.cluster_files import REF, REF_SHARD, Scratch, load_tables, pieces, refs_of
from vlmdata.shards.cluster_files import save_table as _save_table
from vlmdata.shards.cluster_links import find_components
from vlmdata.shards.cluster_place import SAMPLE_COLUMNS, place_bucket
from vlmdata.shards.cluster_tasks import (
    ROW,
    check_bucket,
    clash_bucket,
    destinations,
    edges_bucket,
    hash_slice,
    route_slice,
    slice_path,
)
from vlmdata.shards.options import ShardOptions
from vlmdata.shards.output import index_table, shard_is_finished, shard_rel
from vlmdata.shards.placement import Facts, Info
from vlmdata.shards.plan import (
    Cutter,
    PlanInput,
    Planner,
    ShardJob,
    ShardPlan,
    index_row,
    progress_bar,
    shard_digest,
)
from vlmdata.shards.planrows import ManifestFile, ManifestRecords
from vlmdata.shards.samples import layout
from vlmdata.shards.tables import ArrowRows

SLICE_ROWS = 65536  # manifest rows per slice (what the driver holds at once)
BUCKETS: int | None = None  # hash partitions; None: `partitions(rows, workers)`
BUCKET_ROWS = 1 << 20  # rows a placing task gets, about (when links do not join more)


def partitions(rows: int, workers: int) -> int:
    """Hash partitions: 2 per worker, and enough that each gets ~BUCKET_ROWS rows."""
    return max(2, 2 * workers, -(-rows // BUCKET_ROWS))


def on_engine(opt: ShardOptions) -> bool:
    """The plan is made on the engine (Spark or Ray)."""
    return opt.distributor in ("pyspark", "ray")


def partitioned(inp: PlanInput, run: Planner) -> bool:
    """Plan on the engine: Spark or Ray, rows in a file or a table (a manifest, or
    download's fetched rows with their raw refs)."""
    refs_ok = inp.refs is None or hasattr(inp.refs, "shard_ids")  # download.repack.RawRefs
    tabular = isinstance(inp.rows, ManifestRecords | ManifestFile)
    return on_engine(run.opt) and tabular and refs_ok


@dataclass
class ClusterPlan(ShardPlan):
    """A ShardPlan whose shards' entries wait in job files, one per shard (read by the task)."""

    tables: list[str] = field(default_factory=list)

    def job(self, i: int) -> ShardJob:
        rel, digest, _, _ = self.shards[i]
        out, opts, source, _ = self.make
        return ShardJob(out, rel, digest, opts, source, [], None, table=self.tables[i])


def plan_on_cluster(inp: PlanInput, run: Planner, out: Location, extras: list[str]) -> ShardPlan:
    """Stages 1-9 of the module doc; the plan's scratch folder goes when the plan does."""
    rows = inp.rows
    assert isinstance(rows, ManifestRecords | ManifestFile)
    buckets = BUCKETS or partitions(len(rows), run.engine.workers)
    scratch = Scratch.make(SLICE_ROWS, buckets)
    try:
        n_slices = _write_slices(_slices(rows, inp.refs, scratch.slice_rows), scratch)
        images = _place_on_engine(scratch, n_slices, inp.source, run)
        _emit_rows(scratch, n_slices, rows.columns, run)
        plan = _layout(scratch, n_slices, out, run.opt, extras, images)
    except BaseException:
        shutil.rmtree(scratch.root, ignore_errors=True)
        raise
    weakref.finalize(plan, shutil.rmtree, scratch.root, True)
    return plan


def _with_refs(table: pa.Table, refs: Any, start: int) -> pa.Table:
    """Rows start.. with a download's raw refs (shard, key) beside them, so tasks find them."""
    if refs is None:
        return table
    n = table.num_rows
    shards = pa.array(np.asarray(refs.shard_ids[start : start + n], dtype=np.int32), pa.int32())
    keys = table.column("key").cast(pa.string())  # a raw ref's key is its row's (RawRefs)
    return table.append_column(REF, keys).append_column(REF_SHARD, shards)


def _slices(rows: ManifestRecords | ManifestFile, refs: Any, n: int) -> Iterator[pa.Table]:
    """The rows n at a time, from the manifest's file or the rows given (download's fetched
    rows: their raw refs beside)."""
    parts = rows.slices(n) if isinstance(rows, ManifestFile) else rows.arrow_slices(n)
    start = 0
    for part in parts:
        yield _with_refs(part, refs, start)
        start += part.num_rows


def _write_slices(slices: Iterator[pa.Table], scratch: Scratch) -> int:
    count = 0
    for i, part in enumerate(slices):
        _save_table(slice_path(scratch, i), part)
        count = i + 1
    return count


def _place_on_engine(scratch: Scratch, n_slices: int, source: Any, run: Planner) -> int:
    """Stages 2-8 on the engine; the image samples' count."""
    engine, opt, parts = run.engine, run.opt, range(scratch.buckets)
    with progress_bar(run.progress, 7, "planning on the engine", "stage") as bar:
        list(engine.map(hash_slice, [(scratch, i) for i in range(n_slices)]))
        bar.update(1)
        list(engine.map(check_bucket, [(scratch, j, source, opt.image) for j in parts]))
        bar.update(1)
        list(engine.map(edges_bucket, [(scratch, j) for j in parts]))
        bar.update(1)
        find_components(engine, scratch)
        bar.update(1)
        list(engine.map(destinations, [(scratch, j) for j in parts]))
        list(engine.map(route_slice, [(scratch, i) for i in range(n_slices)]))
        bar.update(1)
        images = sum(engine.map(place_bucket, [(scratch, c, source, opt) for c in parts]))
        bar.update(1)
        if opt.every_text:
            clashes = [c for c in engine.map(clash_bucket, [(scratch, j) for j in parts]) if c]
            if clashes:
                copy = min(clashes)[2]
                raise DataError(f"--every-text: sample key {copy!r} is also a record key")
        bar.update(1)
    run.gate.opened += images
    return images


OUTCOME = ("key", "reason", "detail")


def _emit_rows(scratch: Scratch, n_slices: int, columns: tuple, run: Planner) -> None:
    """Each row, in manifest order, placed (records.parquet) or rejected, as decided."""
    gate = run.gate
    for i in range(n_slices):
        part = pq.read_table(slice_path(scratch, i))
        outcome = load_tables(scratch.path("out", f"s{i}"))
        assert outcome is not None and outcome.num_rows == part.num_rows
        outcome = outcome.sort_by(ROW)
        keys, reasons, details = (outcome.column(c).to_pylist() for c in OUTCOME)
        line = i * scratch.slice_rows + 1
        for n, record in enumerate(records_from_arrow(part)):
            if keys[n] is not None:
                gate.records.place(record, keys[n])
            else:
                gate.reject(record, columns, line + n, reasons[n], details[n])


OPENING = [("__open", "ascending"), ("__copy", "ascending")]  # a split's sample order
JOB_BYTES = 8 << 20  # a job file's row group: samples up to this many JSON + text bytes


def _kept(scratch: Scratch, n_slices: int, columns: list[str] | None = None
          ) -> Iterator[tuple[pa.Table, pa.Array]]:  # fmt: skip
    """Each slice's kept samples (opening row in the slice) as read, and the order that puts
    them in opening order (opening row, then copy): sorted by index, not copied."""
    for i in range(n_slices):
        t = load_tables(scratch.path("smp", f"s{i}"), columns)
        if t is not None and t.num_rows:
            if "split" not in t.schema.names:  # a manifest without splits: all None
                t = t.append_column("split", pa.nulls(t.num_rows, pa.string()))
            yield t, pc.sort_indices(t.select(["__open", "__copy"]), sort_keys=OPENING)


def take_rows(t: pa.Table, rows: np.ndarray) -> pa.Table:
    """t's rows at the indices `rows`, taken from each chunk on its own: Arrow's `take` on a
    chunked column joins all its chunks first, a copy of the whole column for every call
    (measured: 38 MB allocated to take 100 rows of a 4-chunk binary column)."""
    batches = [b for b in t.to_batches() if b.num_rows]
    ends = np.cumsum([b.num_rows for b in batches])
    which = np.searchsorted(ends, rows, side="right")
    parts, placed = [], []
    for b in np.unique(which).tolist():
        mine = np.flatnonzero(which == b)
        start = int(ends[b]) - batches[b].num_rows
        parts.append(batches[b].take(pa.array(rows[mine] - start)))
        placed.append(mine)
    if len(parts) <= 1:  # none, or one chunk: already in order
        return pa.Table.from_batches(parts, schema=t.schema)
    joined = pa.Table.from_batches(parts, schema=t.schema).combine_chunks()
    del parts  # the joined copy alone: the result's rows twice at most
    return joined.take(pa.array(np.argsort(np.concatenate(placed), kind="stable")))


def _split_order(scratch: Scratch, n_slices: int) -> list[Any]:
    """The samples' splits in first-seen order (a sample's split is its first record's)."""
    seen: dict[Any, None] = {}
    columns = ["__open", "__copy"]
    if _has_split(scratch, n_slices):
        columns.append("split")
    for t, order in _kept(scratch, n_slices, columns):
        seen.update(dict.fromkeys(t.column("split").take(order).to_pylist()))
    return list(seen)


def _has_split(scratch: Scratch, n_slices: int) -> bool:
    """The manifest has a split column (every sample piece carries the manifest's columns)."""
    for i in range(n_slices):
        for piece in pieces(scratch.path("smp", f"s{i}"), ".parquet"):
            return "split" in pq.read_schema(piece).names
    return False


def _layout(scratch: Scratch, n_slices: int, out: Location, opt: ShardOptions,
            extras: list[str], images: int) -> ClusterPlan:  # fmt: skip
    """Each split cut on its own, in the order its samples were opened (plan.layout_shards)."""
    index = ArrowRows(index_table([], extras, opt.params()).schema)
    plan = ClusterPlan([], np.empty(0, dtype=np.int64), [], index, images)
    for split in _split_order(scratch, n_slices):
        _Cut(plan, scratch, split, out, opt, extras).run(n_slices)
    return plan


@dataclass(slots=True)
class _Sample:
    """A kept sample as index_row and shard_digest read it."""

    key: str
    record: Any
    prepared: Facts
    sizes: dict[str, int]
    digests: tuple[str, str]
    n_records: int

    def member_sha256(self) -> tuple[str, str]:
        return self.digests


FACT_COLUMNS = ("__key", "__fmt", "__w", "__h", "__isize", "__isha", "__jsha", "__tsha", "__n")
JOB_COLUMNS = ["__key", "__ref", "__ref_shard", "__fmt", "__w", "__h", "__isize", "__isha",
               "__file", "__st0", "__st1", "__json", "__txt"]  # fmt: skip


class _Cut:
    """One split's shards: samples in opening order through the Cutter; per shard its index
    rows, digest, finished stats and job file. A slice's samples are held once, as read: each
    shard's rows are taken from it by index, a row group of at most JOB_BYTES at a time, and
    written to the job file as they are taken (not the shard's rows copied whole)."""

    def __init__(self, plan: ClusterPlan, scratch: Scratch, split: Any, out: Location,
                 opt: ShardOptions, extras: list[str]) -> None:  # fmt: skip
        self.plan, self.scratch, self.split, self.out = plan, scratch, split, out
        self.extras, self.name, self.number = extras, opt.name, 0
        self.cutter = Cutter(opt.samples_per_shard, opt.max_shard_bytes)
        self.samples: list[_Sample] = []
        self.job: pq.ParquetWriter | None = None  # the open shard's job file
        self.written = 0  # its rows so far

    def run(self, n_slices: int) -> None:
        for t, order in _kept(self.scratch, n_slices):
            split = t.column("split").take(order)
            mine = pc.is_null(split) if self.split is None else pc.equal(split, self.split)
            rows = order.filter(pc.fill_null(mine, False)).to_numpy()
            jobs = t.select(JOB_COLUMNS)
            nj, nt = (pc.binary_length(t.column(c)).take(rows) for c in ("__json", "__txt"))  # ints
            size = pc.fill_null(pc.add(nj, nt), 0).to_numpy(zero_copy_only=False)
            start = 0
            for n, sample in enumerate(self._samples(t, rows, nj, nt)):
                if self._starts(sample):
                    self._write(jobs, rows[start:n], size[start:n])
                    start = n
                    self._close()
            self._write(jobs, rows[start:], size[start:])
        self._close()

    def _samples(self, t: pa.Table, rows: np.ndarray, nj: pa.Array, nt: pa.Array
                 ) -> Iterator[_Sample]:  # fmt: skip
        """The split's samples of one slice, in opening order (`rows`: their indices in t)."""
        first = take_rows(t.select([c for c in t.schema.names if c not in SAMPLE_COLUMNS]), rows)
        facts = take_rows(t.select(FACT_COLUMNS), rows)
        cols = {c: facts.column(c).to_pylist() for c in FACT_COLUMNS}
        records = records_from_arrow(first)
        for n, (record, j, x) in enumerate(
            zip(records, nj.to_pylist(), nt.to_pylist(), strict=True)
        ):
            info = Info(cols["__fmt"][n], cols["__w"][n], cols["__h"][n])
            facts = Facts(info, cols["__isize"][n], cols["__isha"][n])
            member = {"image": facts.size, "json": j, "txt": x}
            digests = (cols["__jsha"][n], cols["__tsha"][n])
            sample = _Sample(cols["__key"][n], record, facts, member, digests, cols["__n"][n])
            self.samples.append(sample)
            yield sample

    def _starts(self, s: _Sample) -> bool:
        return self.cutter.starts_new(layout(s.key, s.prepared.info.format, s.sizes, 0).size)

    def _write(self, jobs: pa.Table, rows: np.ndarray, size: np.ndarray) -> None:
        """The open shard's next rows of `jobs` (by index) to its job file, in row groups of
        at most JOB_BYTES of JSON and text (at least one row each)."""
        if not len(rows):
            return
        if self.job is None:
            path = self._job_path()
            path.parent.mkdir(parents=True, exist_ok=True)
            self.job = pq.ParquetWriter(path.with_name(f".{path.name}.tmp"), jobs.schema)
        start, held = 0, 0
        for n, b in enumerate(size.tolist()):
            if n > start and held + b > JOB_BYTES:
                self.job.write_table(take_rows(jobs, rows[start:n]))
                start, held = n, 0
            held += b
        self.job.write_table(take_rows(jobs, rows[start:]))
        self.written += len(rows)

    def _job_path(self) -> Path:
        return self.scratch.path("jobs", f"s{len(self.plan.shards)}.parquet")

    def _close(self) -> None:
        """The shard so far (its samples are the first `written` of those counted)."""
        if self.job is None:
            return
        self.job.close()
        self.job, n, self.written = None, self.written, 0
        job = self._job_path()
        os.replace(job.with_name(f".{job.name}.tmp"), job)
        samples, self.samples = self.samples[:n], self.samples[n:]
        rel = shard_rel(self.name, self.number, self.split)
        self.number += 1
        pos = 0
        for s in samples:
            row, size = index_row(s, rel, pos, self.extras)
            self.plan.index.append(row)
            pos += size
        digest, k = shard_digest(samples), len(self.plan.shards)
        self.plan.shards.append((rel, digest, k, k))
        self.plan.done.append(shard_is_finished(self.out, rel, digest))
        self.plan.tables.append(str(job))


def job_entries(table_path: str) -> Iterator[tuple[str, Any, Any, bytes, bytes]]:
    """(key, ref, Prepared, json, txt) per sample of a shard's job file (read by its task)."""
    from vlmdata.shards.images import ImageInfo
    from vlmdata.shards.prepare import Prepared

    t = pq.read_table(table_path)
    refs = refs_of(t.column(REF).to_pylist(), t.column(REF_SHARD).to_pylist())
    for ref, r in zip(refs, t.to_pylist(), strict=True):
        stamp = None if r["__st0"] is None else (r["__st0"], r["__st1"])
        info = ImageInfo(r["__fmt"], r["__w"], r["__h"])
        p = Prepared(info, r["__isize"], r["__isha"], "", r["__file"], stamp)
        yield r["__key"], ref, p, r["__json"], r["__txt"]


__all__ = [
    "ClusterPlan",
    "ManifestFile",
    "job_entries",
    "on_engine",
    "partitioned",
    "plan_on_cluster",
]
