"""`vlmdata download`: a data set's published files in, the same OUT as `vlmdata shard` out.

URL data sets (cc3m; coco through `coco_url`; oven-kb through `wikipedia_image_url`):
  source reader -> filter-urls -> img2dataset (child process) -> repack (download/repack.py)
Local data sets (karpathy/flickr30k, coco folders, oven, llava; `--images DIR`):
  source reader -> write_shards

Repack, not index-in-place: img2dataset's tars carry positional keys, its own JSON, the
extension it was told rather than the true format, no dedup, and members in thread-completion
order (not reproducible), so they are rewritten in manifest order: planned like `vlmdata shard`
(check + hash, then one task per output shard, on img2dataset's distributor as well).
benchmarks/RESULTS.md (download section) has the figures. Work files live in OUT/.download/: the URL
list, the raw img2dataset output (deleted when complete unless keep_raw), state and log.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.atomic import atomic_path, write_json
from vlmdata.core.errors import DataError
from vlmdata.core.heap import lean_allocators, release_free_heap
from vlmdata.core.lifetime import holds_out_lock
from vlmdata.core.rejects import RejectWriter, Tally, format_summary
from vlmdata.core.storage import Location
from vlmdata.download.img2dataset_run import (
    KEY_COLUMN,
    FetchOptions,
    check_options,
    fetch_policy,
    finished_shards,
    img2dataset_kwargs,
    reject_reason,
    run_img2dataset,
)
from vlmdata.download.results import read_status
from vlmdata.shards.cluster_plan import on_engine
from vlmdata.shards.options import ShardOptions
from vlmdata.shards.output import format_splits, splits_from_wids
from vlmdata.shards.planrows import ManifestFile, SpooledManifest, exact_slices

WORK_DIR = ".download"
STAGE = "download"
ROWS_AT_ONCE = 65536  # rows read at once from the URL list (issue 23: none held whole)
# rows of the kept manifest filtered at once into WORK/fetch_rows.parquet (a row group each):
# pyarrow's reader peaks near 3x a batch, 267 MB of Arrow for 65,536 rows of 1 KB captions
FETCH_ROWS_BATCH = 8192
URL_LIST = "url_list"  # WORK/url_list/NNNNNN.parquet: img2dataset's input, in parts
ALIASES = {"flickr30k": "karpathy", "flickr8k": "karpathy"}


@dataclass
class DownloadSummary(Tally):
    """Kept samples, rejects by reason (all stages), shards, and what the download did."""

    shards: int = 0
    bytes: int = 0
    urls: int = 0  # URLs handed to img2dataset
    incomplete: list[int] = field(default_factory=list)  # img2dataset shards still unfinished
    up_to_date: bool = False
    splits: dict[str, tuple[str, int, int]] = field(default_factory=dict)  # see format_splits

    @classmethod
    def of(cls, summary, **more) -> DownloadSummary:
        """From the shard writer's ShardSummary, plus the download's own fields."""
        return cls(
            kept=summary.kept,
            rejects=Counter(summary.rejects),
            shards=summary.shards,
            bytes=summary.bytes,
            splits=summary.splits,
            **more,
        )

    def format(self) -> str:
        lines = [format_summary(self.kept, self.rejects, "samples")]
        lines.append(f"shards    {self.shards:>10,}  ({self.bytes / 1e6:,.1f} MB)")
        if self.urls:
            lines.append(f"urls      {self.urls:>10,}  fetched through img2dataset")
        if self.up_to_date:
            lines.append("up to date: nothing fetched (same inputs and options as the last run)")
        if self.incomplete:
            lines.append(
                f"incomplete {len(self.incomplete):>9,}  img2dataset shards did not finish: "
                "their URLs are in rejects as download_failed; rerun to retry them"
            )
        return "\n".join(lines) + format_splits(self.splits)


def source_name(dataset: str) -> str:
    from vlmdata.sources import SOURCES

    name = ALIASES.get(dataset, dataset)
    if name not in SOURCES:
        known = ", ".join([*SOURCES, *ALIASES])
        raise DataError(f"unknown data set {dataset!r}; known: {known}")
    return name


def _read_source(
    name: str,
    inputs: Sequence[str | os.PathLike],
    work: Path,
    *,
    split: str | None = None,
    restval: str | None = None,
    images: str | None = None,
):
    """The source reader into WORK/source. `images` (download's local image folder) goes to
    the readers that use it themselves (oven); a --split or --restval the data set does not
    take is refused by read_source, not dropped."""
    from vlmdata.sources import SOURCES, read_source

    options: dict[str, str | None] = {"split": split, "restval": restval}
    if "images" in SOURCES[name].options:
        options["images"] = images
    return read_source(name, inputs, work / "source", **options)


@holds_out_lock
def download(
    dataset: str,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    work_dir: str | os.PathLike | None = None,
    storage_options: dict[str, Any] | None = None,
    images: str | os.PathLike | None = None,
    split: str | None = None,
    restval: str | None = None,
    fetch: FetchOptions | None = None,
    shard: ShardOptions | None = None,
    allow_private: bool = False,
    denylist: str | os.PathLike | None = None,
    overwrite: bool = False,
    keep_raw: bool = False,
    progress: bool = True,
) -> DownloadSummary:
    """Build OUT (shards/, wids.json, the index, records, rejects and manifest tables).

    With `images`, the data set's images are read from that folder; otherwise its URLs are
    fetched. A rerun with the same arguments resumes (img2dataset's incremental mode) and ends
    with the same bytes; `overwrite` throws away earlier downloads first.

    OUT may be an fsspec URL (`s3://bucket/prefix`, `storage_options` or the environment for
    credentials); the work files (source rows, img2dataset's raw output, state) then stay on
    this machine, in `work_dir` (default: default_work_dir(OUT)), so a rerun resumes there.
    """
    name = source_name(dataset)
    fetch, shard = fetch or FetchOptions(), shard or ShardOptions()
    out = Location(out_dir, storage_options)
    work = Path(work_dir) if work_dir is not None else default_work_dir(out)
    if overwrite and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    src_opts = {"split": split, "restval": restval}
    if images is not None:
        return _shard_local(name, inputs, out, work, Path(images), shard, progress, src_opts)
    check_options(fetch)
    source = _read_source(name, inputs, work, **src_opts)
    return _download_urls(
        source.out_dir, out, work, fetch, shard, allow_private, denylist, keep_raw, progress
    )


def default_work_dir(out: Location) -> Path:
    """OUT/.download for a local OUT; for a URL, a folder under the user's cache named after
    it (XDG_CACHE_HOME, else ~/.cache), so a rerun with the same OUT finds it again."""
    if out.is_local:
        return out.local(WORK_DIR)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(out.url.encode()).hexdigest()[:16]
    return cache / "vlmdata" / "download" / digest


def _shard_local(name, inputs, out, work, images, shard, progress, src_opts) -> DownloadSummary:
    from vlmdata.shards import write_shards

    source = _read_source(name, inputs, work, images=str(images), **src_opts)
    source_rejects = source.out_dir / layout.REJECTS
    summary = write_shards(
        source.out_dir / layout.MANIFEST,
        images,
        out,
        shard,
        prior_rejects=source_rejects if source_rejects.exists() else None,
        progress=progress,
    )
    shutil.rmtree(work)  # the manifest was copied to OUT; nothing here is needed to resume
    return DownloadSummary.of(summary)


def _fetch_list(src: Path, work: Path, allow_private: bool, denylist) -> tuple[ManifestFile, Path]:
    """Run filter-urls over the source manifest; rows without a URL go to WORK/no_url.parquet.

    Returns the rows to fetch (manifest columns, manifest order), in WORK/fetch_rows.parquet
    and read from there a raw shard at a time (issue 23: no table of every row is held), and
    the filter's rejects.
    """
    from vlmdata.filter.urls import filter_urls

    _check_has_urls(src / layout.MANIFEST)
    filter_urls(
        src / layout.MANIFEST,
        work / "urls",
        fmt="manifest",
        allow_private=allow_private,
        denylist=denylist,
    )
    kept = work / "urls" / layout.MANIFEST
    rows = work / "fetch_rows.parquet"
    # buffered reads, no pre-buffering: pre-buffered, pyarrow holds a row group's whole
    # compressed column chunks (filter-urls writes one 1,048,576-row group)
    file = pq.ParquetFile(kept, buffer_size=1 << 20, pre_buffer=False)
    with (
        RejectWriter(work / "no_url.parquet") as rejects,
        atomic_path(rows) as tmp,
        pq.ParquetWriter(tmp, file.schema_arrow) as out,
    ):
        for batch in file.iter_batches(batch_size=FETCH_ROWS_BATCH, use_threads=False):
            has_url = pc.is_valid(batch.column("url"))
            for row in batch.filter(pc.invert(has_url)).to_pylist():
                _add_reject(rejects, row, "missing_url", "manifest row has no url", src)
            out.write_batch(batch.filter(has_url))
    return ManifestFile.open(rows), work / "urls" / layout.REJECTS


def _check_has_urls(manifest: Path) -> None:
    """A data set whose every row lacks a URL cannot be fetched (read a batch at a time)."""
    file = pq.ParquetFile(manifest)
    urls = (b.column("url") for b in file.iter_batches(ROWS_AT_ONCE, columns=["url"]))
    if file.metadata.num_rows and not any(u.null_count < len(u) for u in urls):
        raise DataError(
            "this data set has no image URLs; pass --images DIR to shard local images",
            file=str(manifest),
        )


def _add_reject(w: RejectWriter, row: dict, reason: str, detail: str, src: Path) -> None:
    w.add(reason, stage=STAGE, file=str(src / layout.MANIFEST), key=row.get("key"),
          detail=detail, record=row)  # fmt: skip


def key_url_slices(rows: ManifestFile, n: int) -> Iterator[pa.Table]:
    """`rows.slices(n)` with only the key and url columns read: what the fingerprint and the
    URL list need. The other columns (texts: ~1 KB a row in the benchmark) cost ~2x a
    slice's Arrow memory to read (issue 23); the slices are cut (and chunked) alike."""
    f = pq.ParquetFile(rows.path)
    schema = pa.schema([field for field in f.schema_arrow if field.name in ("key", "url")])
    batches = f.iter_batches(n, columns=schema.names, use_threads=False)
    return exact_slices(batches, n, schema)


def _fetch_fingerprint(rows: ManifestFile, fetch: FetchOptions) -> str:
    """What img2dataset's raw output depends on: the (key, url) list and the fetch options.
    A change means its positional shards no longer match, so old raw output is discarded."""
    h = hashlib.sha256()
    for part in key_url_slices(rows, ROWS_AT_ONCE):
        keys, urls = part.column("key").to_pylist(), part.column("url").to_pylist()
        for key, url in zip(keys, urls, strict=True):
            h.update(f"{key}\t{url}\n".encode())
    h.update(json.dumps(fetch.fingerprint_fields(), sort_keys=True).encode())
    return h.hexdigest()


def _output_fingerprint(fetch_fp: str, inputs: list[Path], shard: ShardOptions) -> str:
    """What OUT depends on besides the raw images: every row's metadata (captions...), the
    earlier stages' rejects and the shard options. Same value -> an up-to-date rerun."""
    h = hashlib.sha256(fetch_fp.encode())
    for path in inputs:
        if not path.exists():
            h.update(b"-")
            continue
        with open(path, "rb") as f:  # a MiB at a time: CC3M's manifest is ~200 MB (issue 23)
            while block := f.read(1 << 20):
                h.update(block)
    h.update(json.dumps(shard.params(), sort_keys=True).encode())
    return h.hexdigest()


def _load_state(work: Path) -> dict[str, Any]:
    path = work / "state.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}


@lean_allocators()
def _download_urls(
    src: Path,
    out: Location,
    work: Path,
    fetch: FetchOptions,
    shard: ShardOptions,
    allow_private: bool,
    denylist,
    keep_raw: bool,
    progress: bool,
) -> DownloadSummary:
    rows, url_rejects = _fetch_list(src, work, allow_private, denylist)
    release_free_heap()  # filter-urls' blocks: not held through the fetch (issue 23)
    raw = work / "raw"
    earlier = [src / layout.REJECTS, url_rejects, work / "no_url.parquet"]
    fetch_fp = _fetch_fingerprint(rows, fetch)
    output_fp = _output_fingerprint(fetch_fp, [src / layout.MANIFEST, *earlier], shard)
    state = _load_state(work)
    done_before = state.get("output") == output_fp and state.get("complete")
    if done_before and not raw.exists() and out.exists(layout.INDEX):
        return _existing_summary(out, len(rows))
    if state.get("fetch") != fetch_fp and raw.exists():
        shutil.rmtree(raw)  # a different URL list or options: positional shards no longer match
    state = {"fetch": fetch_fp, "output": output_fp}
    write_json(work / "state.json", {**state, "complete": False})

    n_shards = math.ceil(len(rows) / fetch.raw_shard_size)
    from vlmdata.filter.urls import load_denylist

    policy = fetch_policy(fetch, allow_private, load_denylist(denylist) if denylist else [])
    done = _fetch(rows, work, raw, fetch, n_shards, policy, progress)
    incomplete = [i for i in range(n_shards) if i not in done]

    prior = work / "prior_rejects.parquet"
    _download_rejects(rows, raw, fetch.raw_shard_size, done, work / "fetch_rejects.parquet", src)
    _concat_rejects(prior, [*earlier, work / "fetch_rejects.parquet"])
    from vlmdata.download.repack import RawImages, fetched_rows
    from vlmdata.shards.writer import write_planned

    fetched = work / "fetched_rows.parquet"
    refs = fetched_rows(rows, raw, fetch.raw_shard_size, done, fetched)
    # the partitioned plan reads the file a slice at a time; the local one a spooled copy
    kept = ManifestFile.open(fetched) if on_engine(shard) else SpooledManifest(fetched)
    try:
        summary = write_planned(
            kept,
            refs,
            RawImages(str(raw), fetch.raw_format, fetch.encode_format),
            out,
            shard,
            manifest=src / layout.MANIFEST,
            prior_rejects=prior,
            progress=progress,
        )
    finally:
        if isinstance(kept, SpooledManifest):
            kept.close()
    fetched.unlink()
    if not incomplete:
        write_json(work / "state.json", {**state, "complete": True})
        if not keep_raw and raw.exists():
            shutil.rmtree(raw)
    return DownloadSummary.of(summary, urls=len(rows), incomplete=incomplete)


def _fetch(rows, work, raw, fetch, n_shards, policy, progress) -> set[int]:
    """Run img2dataset unless every raw shard is finished; the finished shard ids."""
    if n_shards and not set(range(n_shards)) <= finished_shards(raw):
        url_list = work / URL_LIST
        write_url_list(rows, url_list, fetch.raw_shard_size)
        kwargs = img2dataset_kwargs(url_list, raw, fetch)
        run_img2dataset(kwargs, work, n_shards, progress, policy)
    return finished_shards(raw)


def write_url_list(rows: ManifestFile, folder: Path, shard_size: int) -> None:
    """img2dataset's input: url and our key (as KEY_COLUMN), in parts of a whole number of
    raw shards (about ROWS_AT_ONCE rows). img2dataset reads each input file whole and numbers
    its shards on from one file to the next, so the shards are those of a single file while
    its reader holds one part (issue 23: ~290 bytes a row in img2dataset's child)."""
    per_part = max(1, ROWS_AT_ONCE // shard_size) * shard_size
    tmp = folder.with_name(folder.name + ".tmp")
    for old in (tmp, folder):
        if old.exists():
            shutil.rmtree(old)
    tmp.mkdir(parents=True)
    for i, part in enumerate(key_url_slices(rows, per_part)):
        ids = part.select(["url", "key"]).rename_columns(["url", KEY_COLUMN])
        pq.write_table(ids, tmp / f"{i:06d}.parquet")  # img2dataset: sorted(glob("*.parquet"))
    os.replace(tmp, folder)


def _download_rejects(
    rows: ManifestFile, raw: Path, size: int, done: set[int], path: Path, src: Path
) -> None:
    """Every URL that did not give image bytes, in manifest order, with img2dataset's message
    (a raw shard's rows at a time)."""
    with RejectWriter(path) as w:
        for shard_id, part in enumerate(rows.slices(size)):
            status = read_status(raw, shard_id) if shard_id in done else None
            for row in part.to_pylist():
                got = status.get(row["key"]) if status is not None else None
                if status is None:
                    why = ("download_failed", f"img2dataset shard {shard_id} unfinished")
                elif got is None:
                    why = ("download_failed", "no result from img2dataset")
                elif got.status != "success":
                    why = (reject_reason(got.status, got.error), got.error or got.status)
                else:
                    continue
                _add_reject(w, row, *why, src)


def _concat_rejects(target: Path, parts: list[Path]) -> None:
    with RejectWriter(target) as w:
        for p in parts:
            if p.exists():
                w.add_file(p)


def _existing_summary(out: Location, urls: int) -> DownloadSummary:
    """The figures of a finished OUT, read back from its files (for an up-to-date rerun)."""
    index = pq.read_table(io.BytesIO(out.read_bytes(layout.INDEX)), columns=["shard"])
    rejects = pq.read_table(io.BytesIO(out.read_bytes(layout.REJECTS)), columns=["reason"])
    reasons = rejects.column("reason")
    wids = json.loads(out.read_text("wids.json"))["shardlist"]
    return DownloadSummary(
        kept=index.num_rows,
        rejects=Counter(reasons.to_pylist()),
        shards=len(wids),
        bytes=sum(s["filesize"] for s in wids),
        urls=urls,
        up_to_date=True,
        splits=splits_from_wids(out),
    )
