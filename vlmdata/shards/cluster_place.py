"""Stage 6 of the partitioned plan: one task places the rows of one component partition.

The rows arrive in manifest order with their row numbers. Every rule links rows only through
a record key, an image key or an image's bytes, and the partition holds whole components of
those links (cluster_plan.py), so the local planner's own code (placement.py's Placer,
sealing.py) places them exactly as a run over the whole manifest would. What it writes:
each row's outcome (its sample's key, or the reject reason and detail), each kept sample
with its first row, KEY.json / KEY.txt and checked image (by the slice of its opening row),
and for --every-text the copy keys and placed keys by hash partition (the clash check is
global: stage 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from vlmdata.core.keyset import HashSet
from vlmdata.shards.cluster_files import (
    HASH,
    REF,
    REF_SHARD,
    Scratch,
    load_tables,
    ref_arrays,
    refs_of,
    save_array,
    save_table,
)
from vlmdata.shards.cluster_tasks import ROW, results_of
from vlmdata.shards.compact import value_hashes
from vlmdata.shards.distribute import Engine
from vlmdata.shards.options import ShardOptions
from vlmdata.shards.placement import Placer, number_images
from vlmdata.shards.planrows import ManifestRecords
from vlmdata.shards.sealing import WINDOW, SampleViews, seal_samples
from vlmdata.shards.spill import Spill, open_spill, read_pair


class _Keys(list):
    """The placed rows' sample keys, in row order (what the gate's record sink gets)."""

    def place(self, record: Any, image_key: str) -> None:
        self.append(image_key)


@dataclass
class _TaskGate:
    """The gate a Placer reports to inside a task: outcomes kept, nothing written."""

    rule: str | None
    opened: int = 0
    records: _Keys = field(default_factory=_Keys)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)  # (local row, why)

    def reject(self, record: Any, columns: Any, line: int, reason: str, detail: str) -> None:
        self.rejected.append((line - 1, reason, detail))


@dataclass
class _TaskRun:
    """What Placer reads of a Planner."""

    opt: ShardOptions
    gate: _TaskGate
    engine: Engine
    spill: Spill


@dataclass(frozen=True)
class Prechecked:
    """An image source whose checks were made in stage 2: their results by ref (each image
    is checked once per run, as in the local plan); reading is the source's own."""

    source: Any
    results: dict[Any, Any]

    def plan_tasks(self, refs: list[Any], opts: Any) -> list[tuple]:
        return [(self, refs, opts)]

    def plan(self, refs: list[Any], opts: Any) -> list[Any]:
        missing = [r for r in refs if r not in self.results]
        if missing:  # not checked in stage 2 (cannot happen: each image's first row is)
            self.results.update(zip(missing, self.source.plan(missing, opts), strict=True))
        return [self.results[r] for r in refs]

    def read(self, key: str, ref: Any, p: Any, opts: Any) -> bytes:
        return self.source.read(key, ref, p, opts)


class _Quiet:
    def update(self, n: int) -> None:
        pass


def place_bucket(task: tuple) -> int:
    """Place, seal and write out one component partition; its image samples' count."""
    scratch, c, source, opt = task
    table = load_tables(scratch.path("comp", f"c{c}"))
    if table is None:
        return 0
    rows_at = table.column(ROW).to_numpy()
    refs = None
    if REF_SHARD in table.schema.names:  # a download's raw refs, beside the rows
        refs = refs_of(table.column(REF).to_pylist(), table.column(REF_SHARD).to_pylist())
        table = table.drop_columns([REF, REF_SHARD])
    manifest = table.drop_columns([ROW])
    rows = ManifestRecords(manifest)
    checked = load_tables(scratch.path("chk", f"c{c}"))
    source = Prechecked(source, {} if checked is None else results_of(checked))
    gate, spill, engine = _TaskGate(opt.duplicate_images), Spill(), Engine("multiprocessing", 1)
    try:
        images = number_images(rows, False)  # copy-key clashes: stage 7, over every row
        placer = Placer(rows, refs, source, images, _TaskRun(opt, gate, engine, spill))
        placer.run(_Quiet())
        placed = np.flatnonzero(placer.sample_of_row >= 0)
        _write_outcomes(scratch, c, rows_at, placed, gate)
        if opt.every_text:
            keys = manifest.column("key").take(placed).to_pylist()
            _save_hashes(scratch, "pk", c, *value_hashes(keys))
        placer.keys = HashSet()  # the local clash check off: stage 7 checks globally
        kept = seal_samples(placer, spill, opt.every_text)
        kept_samples = kept.read(np.arange(len(kept)))["sample"]
        views = SampleViews(kept, kept_samples, placer.samples, images, rows, refs)
        _write_samples(scratch, c, rows_at, manifest, views, spill.path, opt.every_text)
        return len(placer.samples)
    finally:
        spill.close()
        engine.close()


OUTCOME = pa.schema(
    [(ROW, pa.int64()), ("key", pa.string()), ("reason", pa.string()), ("detail", pa.string())]
)


def _write_outcomes(scratch: Scratch, c: int, rows_at, placed: np.ndarray, gate: _TaskGate):
    n = len(rows_at)
    if len(placed) + len(gate.rejected) != n:
        raise AssertionError("a row was neither placed nor rejected")
    keys: list[str | None] = [None] * n
    reasons: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for row, key in zip(placed.tolist(), gate.records, strict=True):
        keys[row] = key
    for row, reason, detail in gate.rejected:
        reasons[row], details[row] = reason, detail
    out = pa.table([rows_at, keys, reasons, details], schema=OUTCOME)
    _save_by_slice(scratch, "out", c, out, rows_at)


def _save_by_slice(scratch: Scratch, stage: str, c: int, table: pa.Table, rows_at) -> None:
    slices = np.asarray(rows_at) // scratch.slice_rows
    for i in np.unique(slices).tolist():
        part = table.take(np.flatnonzero(slices == i))
        save_table(scratch.path(stage, f"s{i}", f"s{c}.parquet"), part)


def _save_hashes(scratch: Scratch, stage: str, c: int, hi, lo) -> None:
    pairs = np.zeros(len(hi), dtype=HASH)
    pairs["hi"], pairs["lo"] = hi, lo
    buckets = scratch.bucket_of(pairs["hi"])
    for b in np.unique(buckets).tolist():
        save_array(scratch.path(stage, f"b{b}", f"s{c}.npy"), pairs[buckets == b])


SAMPLE_COLUMNS = {  # a kept sample's facts beside its first row's manifest columns
    "__open": pa.int64(),  # its opening row (first record) in the whole manifest
    "__copy": pa.int32(),  # 0, or J of an --every-text copy KEY_tJ
    "__key": pa.string(),
    "__fmt": pa.string(),
    "__w": pa.int64(),
    "__h": pa.int64(),
    "__isize": pa.int64(),
    "__isha": pa.string(),
    "__jsha": pa.string(),
    "__tsha": pa.string(),
    "__n": pa.int64(),
    "__json": pa.binary(),
    "__txt": pa.binary(),
    "__ref": pa.string(),  # the image's ref: its path, or a download's raw key ...
    "__ref_shard": pa.int32(),  # ... and raw shard (null for a path)
    "__file": pa.string(),
    "__st0": pa.int64(),
    "__st1": pa.int64(),
}


def _write_samples(scratch: Scratch, c: int, rows_at, manifest: pa.Table,
                   views: SampleViews, spill_path: str, every_text: bool) -> None:  # fmt: skip
    """The kept samples (image samples, then their copies) as rows, by opening row's slice."""
    columns: dict[str, list] = {name: [] for name in SAMPLE_COLUMNS}
    opening: list[np.ndarray] = []
    with open_spill(spill_path) as fd:
        for a in range(0, len(views), WINDOW):
            which = np.arange(a, min(a + WINDOW, len(views)))
            copies = views.kept.read(which)["copy"].tolist()
            local = views.samples.hot.read(views.kept_samples[which].astype(np.int64))["row"]
            opening.append(local)
            for v, copy, row in zip(views.views(which, True), copies, local.tolist(), strict=True):
                _add_sample(columns, v, copy, int(rows_at[row]), read_pair(fd, v.slot))
    local = np.concatenate(opening) if opening else np.empty(0, dtype=np.int64)
    table = manifest.take(local)
    arrays = dict(zip((REF, REF_SHARD), ref_arrays(columns[REF]), strict=True))
    for name, kind in SAMPLE_COLUMNS.items():
        array = arrays[name] if name in arrays else pa.array(columns[name], type=kind)
        table = table.append_column(name, array)
    _save_by_slice(scratch, "smp", c, table, columns["__open"])
    if every_text:
        mask = np.array(columns["__copy"], dtype=np.int64) > 0
        _save_copy_keys(scratch, c, table.filter(pa.array(mask)))


def _add_sample(columns: dict[str, list], v: Any, copy: int, row: int, pair: tuple) -> None:
    p = v.prepared
    stamp = p.file_stamp or (None, None)
    jsha, tsha = v.member_sha256()
    info = (p.info.format, p.info.width, p.info.height, p.size, p.sha256)
    values = (row, copy, v.key, *info, jsha, tsha, v.n_records, *pair, v.ref, p.file, *stamp)
    names = [n for n in SAMPLE_COLUMNS if n != REF_SHARD]  # "__ref" holds the ref whole
    for name, value in zip(names, values, strict=True):
        columns[name].append(value)


def _save_copy_keys(scratch: Scratch, c: int, copies: pa.Table) -> None:
    if not copies.num_rows:
        return
    keys = copies.column("__key").to_pylist()
    hi, lo = value_hashes(keys)
    table = pa.table({"hi": hi, "lo": lo, "open": copies.column("__open"),
                      "copy": copies.column("__copy"), "key": keys})  # fmt: skip
    buckets = scratch.bucket_of(hi)
    for b in np.unique(buckets).tolist():
        part = table.take(np.flatnonzero(buckets == b))
        save_table(scratch.path("ck", f"b{b}", f"s{c}.parquet"), part)
