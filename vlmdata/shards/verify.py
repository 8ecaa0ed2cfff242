"""`vlmdata verify`: re-read every sample against the index and the shard list.

Checks, per shard: the file exists and matches wids.json's size and md5; per sample and member:
the tar header before the data is a valid header (checksum) naming `KEY.ext` with the indexed
size, and the data's sha256 equals the index. Every problem is reported, not just the first.
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

from vlmdata.core.storage import Location
from vlmdata.shards.reader import read_index
from vlmdata.shards.samples import member_names
from vlmdata.shards.tarfmt import BLOCK, parse_header

_ROLES = ("image", "json", "txt")


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


def _verify_shard(root: Location, shard: str, rows: pl.DataFrame, listed: dict) -> list[Mismatch]:
    try:
        size = root.size(shard)
    except FileNotFoundError:
        return [Mismatch(shard, None, "shard file missing")]
    out = []
    if listed and listed.get("filesize") != size:
        out.append(Mismatch(shard, None, f"size {size} != wids.json filesize"))
    with _shard_bytes(root, shard) as buf:
        if listed and hashlib.md5(buf, usedforsecurity=False).hexdigest() != listed.get("md5sum"):
            out.append(Mismatch(shard, None, "md5 differs from wids.json"))
        for r in rows.iter_rows(named=True):
            names = member_names(r["key"], r["format"])
            for role in _ROLES:
                problem = _check_member(
                    buf, names[role], r[f"{role}_offset"], r[f"{role}_size"], r[f"{role}_sha256"]
                )
                if problem:
                    out.append(Mismatch(shard, r["key"], problem))
    return out


def verify_shards(
    out_dir: str | os.PathLike,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> VerifyReport:
    """Check every shard and sample in OUT against index.parquet and wids.json.
    OUT may be an fsspec URL; each shard is then read with one GET."""
    from tqdm import tqdm

    root = Location(out_dir, storage_options)
    index = read_index(root)
    listed = {}
    if root.exists("wids.json"):
        listed = {s["url"]: s for s in json.loads(root.read_text("wids.json"))["shardlist"]}
    report = VerifyReport()
    shards = index["shard"].unique(maintain_order=True).to_list()
    for shard in listed:
        if shard not in shards:
            shards.append(shard)  # listed but without samples in the index
    for shard in tqdm(shards, desc="verifying", unit="shard", disable=not progress):
        rows = index.filter(pl.col("shard") == shard)
        if shard not in listed and listed:
            report.mismatches.append(Mismatch(shard, None, "not in wids.json"))
        elif listed and listed[shard]["nsamples"] != len(rows):
            report.mismatches.append(
                Mismatch(
                    shard, None, f"wids.json nsamples {listed[shard]['nsamples']} != {len(rows)}"
                )
            )
        report.mismatches += _verify_shard(root, shard, rows, listed.get(shard, {}))
        report.shards += 1
        report.samples += len(rows)
    return report
