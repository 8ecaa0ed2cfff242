"""What both shard writers do around their shards: one set-up and one clean-up.

Set-up: OUT made, a killed run's temp files beside its tables removed, the rejects table opened
on a local temp file (prior rejects first). On failure the temp is dropped; on success the
rejects, the manifest copy, wids.json, each split's sizes.json and the staged tables are
published, the index last (readers go by the index).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vlmdata.core.layout import MANIFEST, REJECTS
from vlmdata.core.rejects import RejectWriter, Tally
from vlmdata.core.storage import Location
from vlmdata.shards.options import ShardOptions
from vlmdata.shards.output import (
    clean_top_temps,
    format_splits,
    split_patterns,
    write_sizes,
    write_wids,
)
from vlmdata.shards.tables import drop_staged, publish_tables

Splits = dict[str, tuple[str, int, int]]  # split folder -> (brace pattern, shards, samples)


@dataclass
class ShardSummary(Tally):
    """What a run produced: kept records, rejects by reason, image samples, shards written /
    reused."""

    images: int = 0
    shards: int = 0
    written: int = 0
    skipped: int = 0
    bytes: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # "plan" and "write" phases
    splits: Splits = field(default_factory=dict)  # what a peer pastes

    def format(self) -> str:
        return (
            self.table("records")
            + f"\nimages    {self.images:>10,}"
            + f"\nshards    {self.shards:>10,}  ({self.written} written, {self.skipped} reused, "
            f"{self.bytes / 1e6:,.1f} MB)"
            + "".join(f"\n{k:<9} {v:>10.2f} s" for k, v in self.seconds.items())
            + format_splits(self.splits)
        )


def resolve_options(options: ShardOptions | None, overrides: dict[str, Any]) -> ShardOptions:
    """`options` (default ShardOptions()) with keyword overrides of its fields."""
    try:
        return replace(options or ShardOptions(), **overrides)
    except TypeError as e:
        known = ", ".join(ShardOptions.field_names())
        raise TypeError(f"{e}; ShardOptions fields are: {known}") from None


def location(out_dir: str | os.PathLike | Location, storage_options: Any = None) -> Location:
    if isinstance(out_dir, Location):
        return out_dir
    return Location(out_dir, storage_options)


def split_counts(rels: list[str]) -> dict[str, int]:
    """Shards per split folder (what clean_stale keeps)."""
    counts: dict[str, int] = {}
    for rel in rels:
        folder = rel.split("/")[1]
        counts[folder] = counts.get(folder, 0) + 1
    return counts


class ShardRun:
    """One writer run on OUT: `with ShardRun(out, prior) as run:` writes shards and rejects
    (`run.rejects`); leaving the block on an error drops the rejects' temp file. After it,
    `run.publish(...)` puts everything else in place."""

    def __init__(self, out: Location, prior_rejects: str | os.PathLike | None = None) -> None:
        self.out = out
        out.makedirs()
        clean_top_temps(out)
        self._rejects_tmp = out.temp_for(REJECTS)
        self.rejects = RejectWriter(self._rejects_tmp)
        if prior_rejects is not None:
            self.rejects.add_file(prior_rejects)

    def __enter__(self) -> ShardRun:
        return self

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        try:
            if kind is None:
                self.rejects.close()
                return
        except BaseException:
            self._drop_rejects()
            raise
        self._drop_rejects()

    def _drop_rejects(self) -> None:
        self.rejects.abort()
        self._rejects_tmp.unlink(missing_ok=True)

    def commit_rejects(self, manifest: Path | None) -> None:
        """The rejects table, then the manifest's copy (when it is a file)."""
        self.out.commit(self._rejects_tmp, REJECTS)
        if manifest is not None:
            copy_manifest(manifest, self.out)

    def publish(
        self, name: str, rels: list[str], stats: list[dict], tables: dict[str, Path]
    ) -> Splits:
        """wids.json and each split's sizes.json, then the staged records and index tables
        (see tables.py); the split patterns."""
        pairs = list(zip(rels, stats, strict=True))
        try:
            write_wids(self.out, name, pairs)
            write_sizes(self.out, pairs)
            publish_tables(self.out, tables)
        except BaseException:
            drop_staged(tables)  # no temp files left behind in OUT
            raise
        return split_patterns([(rel, s["count"]) for rel, s in pairs], self.out)


def copy_manifest(manifest_path: Path, out: Location) -> None:
    if out.is_local:
        target = out.local(MANIFEST)
        if target.exists() and target.resolve() == manifest_path.resolve():
            return
    out.put_file(manifest_path, MANIFEST)
