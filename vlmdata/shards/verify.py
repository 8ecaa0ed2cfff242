"""`vlmdata verify`: re-read every sample against the index and the shard list.

Checks, per shard: the file exists and matches wids.json's size and checksum (xxh3_128); per
sample and member:
the tar header before the data is a valid header (checksum) naming `KEY.ext` with the indexed
size, and the data's sha256 equals the index; and the index's metadata columns (split, source,
texts, url, path ...) equal the sample's own KEY.json, so a sample moved from test to train by
editing index/index.parquet is caught. Every problem is reported, not just the first. A folder that
is not a shard folder (no, unreadable or incomplete index/index.parquet, bad wids.json) is one
DataError.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.storage import Location
from vlmdata.shards.output import new_hasher, shard_checksum
from vlmdata.shards.reader import read_index
from vlmdata.shards.samples import META_FIELDS, member_names
from vlmdata.shards.tarfmt import BLOCK, parse_header

_ROLES = ("image", "json", "txt")
_REQUIRED = (
    "key",
    "shard",
    "format",
    *[f"{role}_{what}" for role in _ROLES for what in ("offset", "size", "sha256")],
)


@dataclass(frozen=True)
class Mismatch:
    shard: str
    key: str | None  # None: the problem concerns the whole shard
    problem: str

    def __str__(self) -> str:
        return f"{self.shard}\t{self.key or '-'}\t{self.problem}"


@dataclass
class VerifyReport:
    shards: int = 0
    samples: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.mismatches


def _check_member(buf, name: str, off: int, size: int, digest: str) -> str | None:
    if off < BLOCK or off + size > len(buf):
        return f"{name}: byte range {off}+{size} outside the file"
    try:
        hname, hsize, _ = parse_header(bytes(buf[off - BLOCK : off]))
    except ValueError as e:
        return f"{name}: {e}"
    if hname != name.encode()[:100].decode(errors="ignore") or hsize != size:
        return f"{name}: tar header says {hname!r} ({hsize} bytes)"
    if hashlib.sha256(buf[off : off + size]).hexdigest() != digest:
        return f"{name}: sha256 mismatch"
    return None


@contextlib.contextmanager
def _shard_bytes(root: Location, shard: str) -> Iterator[Any]:
    """The whole shard as a buffer: a memory map locally, one GET from an object store."""
    if not root.is_local:
        yield memoryview(root.read_bytes(shard))
        return
    with open(root.local(shard), "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
            yield buf


def _meta_problems(buf, r: dict) -> list[str]:
    """Index columns that disagree with the sample's KEY.json (the row as it was sharded)."""
    off, size = r["json_offset"], r["json_size"]
    try:
        meta = json.loads(bytes(buf[off : off + size]))
    except ValueError:
        return [f"{r['key']}.json is not JSON"]
    return [
        f"index {col} {r[col]!r} != {meta.get(col)!r} in {r['key']}.json"
        for col in META_FIELDS
        if col in r and r[col] != meta.get(col)
    ]


def _digest(buf, field: str) -> str:
    h = new_hasher(field)
    h.update(buf)
    return h.hexdigest()


def _verify_shard(root: Location, shard: str, rows: pl.DataFrame, listed: dict) -> list[Mismatch]:
    try:
        size = root.size(shard)
    except FileNotFoundError:
        return [Mismatch(shard, None, "shard file missing")]
    out = []
    if listed and listed.get("filesize") != size:
        out.append(Mismatch(shard, None, f"size {size} != wids.json filesize"))
    if size == 0:
        return [*out, Mismatch(shard, None, "shard file is empty (0 bytes)")]
    with _shard_bytes(root, shard) as buf:
        checksum = shard_checksum(listed) if listed else None
        if checksum is not None and _digest(buf, checksum[0]) != checksum[1]:
            out.append(Mismatch(shard, None, f"{checksum[0]} differs from wids.json"))
        for r in rows.iter_rows(named=True):
            names = member_names(r["key"], r["format"])
            problems = [
                _check_member(
                    buf, names[role], r[f"{role}_offset"], r[f"{role}_size"], r[f"{role}_sha256"]
                )
                for role in _ROLES
            ]
            problems = [p for p in problems if p]
            if not problems:
                problems = _meta_problems(buf, r)
            out += [Mismatch(shard, r["key"], p) for p in problems]
    return out


def _read_index(root: Location) -> pl.DataFrame:
    index = read_index(root)
    missing = [c for c in _REQUIRED if c not in index.columns]
    if missing:
        raise DataError(f"index lacks columns {missing}", file=str(root.join(layout.INDEX)))
    return index


def _read_wids(root: Location) -> dict[str, dict]:
    if not root.exists("wids.json"):
        return {}
    try:
        return {s["url"]: s for s in json.loads(root.read_text("wids.json"))["shardlist"]}
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(
            f"not a wids shard list ({type(e).__name__}: {e})", file=str(root.join("wids.json"))
        ) from None


def verify_shards(
    out_dir: str | os.PathLike,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Check every shard and sample in OUT against index/index.parquet and wids.json.
    OUT may be an fsspec URL; each shard is then read with one GET."""
    from tqdm import tqdm

    root = Location(out_dir, storage_options)
    index = _read_index(root)
    listed = _read_wids(root)
    report = VerifyReport()
    shards = index["shard"].unique(maintain_order=True).to_list()
    for shard in listed:
        if shard not in shards:
            shards.append(shard)  # listed but without samples in the index
    for shard in tqdm(shards, desc="verifying", unit="shard", disable=not progress):
        rows = index.filter(pl.col("shard") == shard)
        if shard not in listed and listed:
            report.mismatches.append(Mismatch(shard, None, "not in wids.json"))
        elif listed and listed[shard].get("nsamples") != len(rows):
            report.mismatches.append(
                Mismatch(
                    shard,
                    None,
                    f"wids.json nsamples {listed[shard].get('nsamples')} != {len(rows)}",
                )
            )
        report.mismatches += _verify_shard(root, shard, rows, listed.get(shard, {}))
        report.shards += 1
        report.samples += len(rows)
    return report
