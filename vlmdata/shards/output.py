"""Files around the tars: per-shard `_stats.json`, `index/index.parquet`, `wids.json`.

A shard is finished when its tar is in place AND its `_stats.json` records the tar's size and
checksum and the digest of what the plan put in it; only then does a rerun skip it. OUT is a
`Location` (a local folder or an fsspec URL, see core/storage.py); index/index.parquet is written
last, so a reader that goes by the index only meets shards that are complete.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import Executor, Future, wait
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmdata.core import layout
from vlmdata.core.manifest import OPTIONAL_COLUMNS
from vlmdata.core.storage import Location
from vlmdata.shards.tarfmt import archive_end

SHARDS_DIR = "shards"
WIDS_KIND = "wids-shard-index-v1"
SIZES_FILE = "sizes.json"  # OpenCLIP's per-folder sample counts: {"NAME-000000.tar": n, ...}
NO_SPLIT = "nosplit"  # the shard folder of samples whose record has no split
_SPLIT_NAME = re.compile(r"[A-Za-z0-9_-]+")


def split_problem(split: Any) -> str | None:
    """Why `split` cannot name a shard folder (None when it can: null, or [A-Za-z0-9_-]+)."""
    if split is None or (isinstance(split, str) and _SPLIT_NAME.fullmatch(split)):
        return None
    return f"split {split!r} cannot name a shard folder (letters, digits, _ and - only)"


def split_dir(split: str | None) -> str:
    """The folder under shards/ holding one split's shards (docs/DESIGN.md, contract 3)."""
    if (problem := split_problem(split)) is not None:
        raise ValueError(problem)
    return NO_SPLIT if split is None else split


def shard_filename(name: str, number: int) -> str:
    return f"{name}-{number:06d}.tar"


def shard_rel(name: str, number: int, split: str | None = None) -> str:
    """A shard's name relative to OUT (what the index and wids.json record): one folder per
    split, so a peer selects a split by path pattern alone."""
    return f"{SHARDS_DIR}/{split_dir(split)}/{shard_filename(name, number)}"


def split_patterns(
    shard_counts: list[tuple[str, int]], out: Location | None = None
) -> dict[str, tuple[str, int, int]]:
    """{split folder: (brace pattern, shards, samples)} from (shard rel, count) pairs: what a
    webdataset peer pastes, e.g. `OUT/shards/train/data-{000000..000002}.tar` (relative to
    OUT when `out` is None)."""
    folders: dict[str, list[tuple[str, int]]] = {}
    for rel, count in shard_counts:
        folders.setdefault(rel.rsplit("/", 1)[0], []).append((rel, count))
    found = {}
    for folder, shards in folders.items():
        names = sorted(rel.rsplit("/", 1)[1] for rel, _ in shards)
        first, last = names[0], names[-1]
        stem = first[: -len("000000.tar")]
        lo, hi = first[len(stem) : -4], last[len(stem) : -4]
        name = first if lo == hi else f"{stem}{{{lo}..{hi}}}.tar"
        total = sum(c for _, c in shards)
        where = f"{folder}/{name}"
        found[folder.rsplit("/", 1)[-1]] = (out.join(where) if out else where, len(shards), total)
    return found


def splits_from_wids(out: Location, relative: bool = False) -> dict[str, tuple[str, int, int]]:
    """split_patterns of a finished OUT, from its wids.json ({} without one)."""
    if not out.exists("wids.json"):
        return {}
    shardlist = json.loads(out.read_text("wids.json"))["shardlist"]
    return split_patterns([(s["url"], s["nsamples"]) for s in shardlist], None if relative else out)


def format_splits(splits: dict[str, tuple[str, int, int]]) -> str:
    """One line per split: its sample count and the shard pattern a webdataset peer pastes."""
    if not splits:
        return ""
    lines = [
        f"\n  {split:<12} {n:>10,} samples  {pattern}" for split, (pattern, _, n) in splits.items()
    ]
    return "\nsplits (one folder each; sizes.json beside the shards):" + "".join(lines)


def stats_rel(tar_rel: str) -> str:
    return tar_rel[: -len(".tar")] + "_stats.json"


# The whole-shard checksum in _stats.json and wids.json, by its field name there. xxh3_128
# hashes at memory speed on the writing thread (md5, wids_index's `md5sum`, ran at about
# 140 MB/s against xxh3_128's 2,300: benchmarks/RESULTS.md). wids reads neither.
SHARD_CHECKSUM = "xxh3_128"


def new_hasher(field: str = SHARD_CHECKSUM):
    """A streaming hasher (update/hexdigest) for a checksum field of _stats.json / wids.json."""
    import xxhash

    if field != SHARD_CHECKSUM:
        raise ValueError(f"unknown shard checksum {field!r}")
    return xxhash.xxh3_128()


def shard_checksum(stats: dict[str, Any]) -> tuple[str, str] | None:
    """(field, value) of the checksum a _stats.json or wids.json entry records."""
    value = stats.get(SHARD_CHECKSUM)
    return (SHARD_CHECKSUM, value) if isinstance(value, str) else None


def file_checksum(path: Path, field: str, chunk: int = 1 << 22) -> str:
    h = new_hasher(field)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_stats(out: Location, tar_rel: str) -> dict[str, Any] | None:
    try:
        return json.loads(out.read_text(stats_rel(tar_rel)))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def shard_is_finished(out: Location, tar_rel: str, plan_digest: str) -> dict[str, Any] | None:
    """The recorded stats if this shard was completed by an earlier run with the same plan.

    `_stats.json` is the commit marker: it is removed before a shard is (re)written and written
    after the tar is in place. Local tars are also re-hashed (their recorded checksum); objects
    in a store are checked by size only, since re-reading them would cost the whole download.
    """
    stats = read_stats(out, tar_rel)
    if stats is None or stats.get("plan_digest") != plan_digest:
        return None
    try:
        if out.size(tar_rel) != stats.get("filesize"):
            return None
    except FileNotFoundError:
        return None
    if not out.is_local:
        return stats
    recorded = shard_checksum(stats)
    if recorded is None:
        return None
    return stats if file_checksum(out.local(tar_rel), recorded[0]) == recorded[1] else None


FLUSH_EVERY = 8 << 20  # bytes written between two background fdatasync calls


class ShardFile:
    """One tar being written to a temporary file; `close()` pads, publishes and records stats.

    The tar is written locally (beside its target, or in a staging file for object stores)
    and published whole by `Location.commit`, so no reader ever sees a partial shard.
    """

    def __init__(
        self, out: Location, rel: str, plan_digest: str = "", flusher: Executor | None = None
    ) -> None:
        self.out, self.rel = out, rel
        self.plan_digest = plan_digest
        # with a flusher (the publishing thread) a local shard's pages start to reach the disk
        # while it is written, so its fsync at publish waits for the last few MB only
        self._flusher = flusher if out.is_local else None
        self._unflushed = 0
        self._flushes: list[Future] = []
        out.remove(stats_rel(rel))  # no stale commit marker while this shard is rewritten
        self._tmp = out.temp_for(rel)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_TRUNC)
        self._field = SHARD_CHECKSUM
        self._hash = new_hasher(self._field)
        self.size = 0
        self.count = 0

    @property
    def name(self) -> str:
        return self.rel.rsplit("/", 1)[-1]

    def write(self, pieces: bytes | list[bytes]) -> None:
        """Append bytes (a list is written with one writev: no joined copy)."""
        if isinstance(pieces, bytes | bytearray | memoryview):
            pieces = [pieces]
        total = 0
        for piece in pieces:
            self._hash.update(piece)
            total += len(piece)
        self.size += total
        written = os.writev(self._fd, pieces)  # a few pieces per call: under IOV_MAX
        if written != total:  # rare: a short write; finish it
            _write_all(self._fd, memoryview(b"".join(pieces))[written:])
        self._unflushed += total
        if self._flusher is not None and self._unflushed >= FLUSH_EVERY:
            self._flushes.append(self._flusher.submit(os.fdatasync, self._fd))  # before publish
            self._unflushed = 0

    def add_sample(self, pieces: bytes | list[bytes]) -> None:
        self.write(pieces)
        self.count += 1

    def close(self) -> dict[str, Any]:
        """Finish and publish now; the stats (also written as the commit marker)."""
        stats = self.finish()
        self.publish(stats)
        return stats

    def finish(self) -> dict[str, Any]:
        """Write the end of the archive; the stats it will be published with (no fsync yet)."""
        try:
            self.write(archive_end(self.size))
        except BaseException:
            self.abort()
            raise
        # img2dataset's fields without its timings: a rerun writes the same bytes
        return {
            "count": self.count,
            "successes": self.count,
            "failed_to_download": 0,
            "failed_to_resize": 0,
            "status_dict": {"success": self.count},
            "filesize": self.size,
            self._field: self._hash.hexdigest(),
            "plan_digest": self.plan_digest,
        }

    def publish(self, stats: dict[str, Any]) -> None:
        """fsync, rename (or upload) into place, then the `_stats.json` commit marker. Safe on
        another thread: the one-process writer publishes a shard while it writes the next."""
        try:
            for f in self._flushes:  # an early fdatasync's error is reported once: here
                f.result()
            if self.out.is_local:
                os.fsync(self._fd)
            fd, self._fd = self._fd, -1
            os.close(fd)
            self.out.commit(self._tmp, self.rel)
        except BaseException:
            self.abort()
            raise
        self.out.write_json(stats_rel(self.rel), stats)

    def abort(self) -> None:
        """Drop the temp file, even when closing it fails again (a full disk)."""
        for f in self._flushes:  # no queued fdatasync may outlive the descriptor
            f.cancel()
        wait(self._flushes)
        try:
            if self._fd >= 0:
                os.close(self._fd)
        except OSError:
            pass
        finally:
            self._fd = -1
            self._tmp.unlink(missing_ok=True)


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


TOP_LEVEL_FILES = (
    layout.INDEX,
    layout.RECORDS,
    layout.REJECTS,
    "wids.json",
    layout.MANIFEST,
)


def clean_top_temps(out: Location) -> None:
    """Remove the temp files a killed run left beside OUT's tables and wids.json (call holding
    OUT's lock, before this run makes its own)."""
    for rel in TOP_LEVEL_FILES:
        folder, _, name = rel.rpartition("/")
        prefix = f"{name}.tmp-"
        for stem in out.listdir(folder):  # ".rejects.parquet.tmp-…" and the writer's "..rejects…"
            if stem.startswith(".") and stem.lstrip(".").startswith(prefix):
                out.remove(f"{folder}/{stem}" if folder else stem)


def clean_stale(out: Location, name: str, counts: dict[str, int] | None) -> None:
    """Remove temp files of killed runs and shards beyond this plan's count per split folder
    (older runs; `counts` None: temps only); split folders this plan does not have are emptied."""
    for entry in out.listdir(SHARDS_DIR):
        folder = f"{SHARDS_DIR}/{entry}"
        keep = None if counts is None else counts.get(entry, 0)
        for stem in out.listdir(folder):
            _clean_entry(out, folder, stem, name, keep)
        if keep == 0:
            out.remove(f"{folder}/{SIZES_FILE}")


_SHARD_FILES = (".tar", "_stats.json")


def _clean_entry(out: Location, folder: str, stem: str, name: str, keep: int | None) -> None:
    rel = f"{folder}/{stem}"
    if stem.startswith(f".{name}-") and ".tmp-" in stem:
        out.remove(rel)
    elif keep is not None and stem.startswith(f"{name}-") and stem.endswith(_SHARD_FILES):
        number = stem[len(name) + 1 :].split(".")[0].split("_")[0]
        if number.isdigit() and int(number) >= keep:
            out.remove(rel)


def index_schema(extras: list[str]) -> pa.Schema:
    fields = [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("sample_offset", pa.int64()),  # not `offset`: a reserved word in SQL
        ("size", pa.int64()),
    ]
    for role in ("image", "json", "txt"):
        fields += [
            (f"{role}_offset", pa.int64()),
            (f"{role}_size", pa.int64()),
            (f"{role}_sha256", pa.string()),
        ]
    fields += [
        ("format", pa.string()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("n_records", pa.int32()),  # records on this image (records/records.parquet, KEY.json)
        ("source", pa.string()),
        ("split", pa.string()),
        ("texts", pa.list_(pa.string())),
        ("url", pa.string()),
        ("path", pa.string()),
    ]
    fields += [(c, pa.string()) for c in OPTIONAL_COLUMNS if c in extras]
    return pa.schema(fields)


def index_table(rows: list[dict[str, Any]], extras: list[str], params: dict[str, Any]) -> pa.Table:
    """The index table: one row per sample in shard order, parameters in its metadata."""
    schema = index_schema(extras).with_metadata(
        {"vlmdata.shards": json.dumps(params, sort_keys=True)}
    )
    return pa.Table.from_pylist(rows, schema=schema)


def write_wids(out: Location, name: str, shard_stats: list[tuple[str, dict[str, Any]]]) -> None:
    """wids.json (wids-shard-index-v1): shard URLs relative to OUT, as wids resolves them,
    with each shard's size and checksum (see SHARD_CHECKSUM)."""
    shardlist = []
    for rel, s in shard_stats:
        entry = {"url": rel, "nsamples": s["count"], "filesize": s["filesize"]}
        checksum = shard_checksum(s)
        if checksum is not None:
            entry[checksum[0]] = checksum[1]
        shardlist.append(entry)
    out.write_json(
        "wids.json",
        {"__kind__": WIDS_KIND, "wids_version": 1, "name": name, "shardlist": shardlist},
    )


def write_sizes(out: Location, shard_stats: list[tuple[str, dict[str, Any]]]) -> None:
    """sizes.json beside each split's shards, in OpenCLIP's convention (`get_dataset_size`
    sums `sizes[basename(shard)]` over a shard list), so `--train-num-samples` is optional."""
    folders: dict[str, dict[str, int]] = {}
    for rel, s in shard_stats:
        folder, _, base = rel.rpartition("/")
        folders.setdefault(folder, {})[base] = s["count"]
    for folder, sizes in folders.items():
        out.write_json(f"{folder}/{SIZES_FILE}", sizes)
