"""`filter-urls`: the stage that applies the URL rule (vlmdata/filter/rules.py) to a whole
input, block by block: a Google CC3M TSV or a manifest parquet in, OUT/manifest/manifest.parquet
(kept rows) and OUT/rejects/rejects.parquet (one row per dropped row, with its reason) out.

Memory is bounded by the block (BLOCK_BYTES of TSV, MANIFEST_BATCH manifest rows) and the
128-bit hashes of the URLs kept so far; the output is byte-identical to filtering in one block.
The rule's public names are re-exported here: callers use the stage's module for both.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.keyset import DISK_PAST, HashSet
from vlmdata.core.rejects import Tally
from vlmdata.filter.rules import (
    ip_is_private,
    load_denylist,
    reason_detail,
    url_reason,
    url_reasons,
)

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "FilterResult",
    "filter_urls",
    "ip_is_private",
    "load_denylist",
    "url_reason",
    "url_reasons",
]

STAGE = "filter-urls"
BLOCK_BYTES = 1 << 21  # TSV read 2 MB at a time (~12k CC3M rows)
MANIFEST_BATCH = 8192  # manifest rows read at a time
GROUP_ROWS = 1 << 20  # output row groups: pyarrow's default for one write_table


@dataclass
class FilterResult(Tally):
    """What filter-urls kept and rejected (and a skipped CC3M header line, counted)."""

    header: int = 0

    def summary(self) -> str:
        return self.table() + (f"\nheader    {self.header:>10,}" if self.header else "")


Blocks = Iterator[tuple["pl.DataFrame", "pl.DataFrame", int]]


def _cc3m_blocks(path: Path, split: str | None, **rules) -> Blocks:
    """(kept rows in manifest columns, rejects in REJECT_SCHEMA columns, header lines skipped)
    of a Google TSV, block by block (bounded memory; URLs of earlier blocks kept as 128-bit
    hashes); rows and keys from the one CC3M builder (`manifest cc3m` uses it too)."""
    import polars as pl

    from vlmdata.sources.cc3m import iter_google_frames

    seen = HashSet(disk_past=DISK_PAST)
    for tsv in iter_google_frames(path, split, block_bytes=BLOCK_BYTES):
        rows, bad_lines = tsv.rows, tsv.rejects
        verdict = url_reasons(rows, text_ok=pl.col("caption") != "", seen=seen, **rules)
        rows = pl.concat([rows, verdict], how="horizontal")
        kept = tsv.manifest_columns(rows.filter(pl.col("reason").is_null()))
        url_rejects = rows.filter(pl.col("reason").is_not_null()).select(
            "line",
            "key",
            "reason",
            detail=reason_detail(pl.col("reason"), pl.col("host")),
            record=pl.struct("caption", "url").struct.json_encode(),
        )
        rejects = pl.concat(
            [url_rejects, bad_lines.with_columns(key=pl.lit(None, pl.String))], how="diagonal"
        )
        yield kept, rejects.sort("line"), tsv.header


def _manifest_blocks(path: Path, **rules) -> Blocks:
    """Like `_cc3m_blocks` for a manifest parquet, MANIFEST_BATCH rows at a time; `line` in
    rejects is the 0-based row index."""
    import polars as pl
    import pyarrow.parquet as pq

    from vlmdata.core.manifest import check_manifest_schema, texts_ok

    check_manifest_schema(pq.read_schema(path), ("key", "url", "texts"), path)
    seen, start = HashSet(disk_past=DISK_PAST), 0
    for table in _manifest_tables(path):
        rows = pl.from_arrow(table)
        original = rows.columns
        rows = rows.with_columns(pl.col("url").str.strip_chars())
        verdict = url_reasons(rows, text_ok=texts_ok(), seen=seen, **rules)
        rows = pl.concat([rows.with_row_index("line", start), verdict], how="horizontal")
        start += rows.height
        kept = rows.filter(pl.col("reason").is_null()).select(original)
        rejects = rows.filter(pl.col("reason").is_not_null()).select(
            pl.col("line").cast(pl.Int64),
            "key",
            "reason",
            detail=pl.concat_str(
                pl.lit("row index: "), reason_detail(pl.col("reason"), pl.col("host"))
            ),
            record=pl.struct(original).struct.json_encode(),
        )
        yield kept, rejects, 0


def _manifest_tables(path: Path):
    """The manifest MANIFEST_BATCH rows at a time; an empty manifest is one empty table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = True
    for batch in pq.ParquetFile(path).iter_batches(batch_size=MANIFEST_BATCH):
        empty = False
        yield pa.Table.from_batches([batch])
    if empty:
        yield pq.read_schema(path).empty_table()


def _kept_schema(kept: pl.DataFrame):
    """Manifest columns get the manifest's exact Arrow types (so it concats with others)."""
    from vlmdata.core.manifest import CORE_FIELDS, OPTIONAL_COLUMNS, manifest_schema

    known = {name for name, _ in CORE_FIELDS} | set(OPTIONAL_COLUMNS)
    if set(kept.columns) <= known and {n for n, _ in CORE_FIELDS} <= set(kept.columns):
        return manifest_schema([c for c in kept.columns if c in OPTIONAL_COLUMNS])
    return kept.to_arrow().schema


def _write(blocks, out: Path, path: Path) -> tuple[int, Counter, int]:
    """Stream (kept, rejects, header) blocks into OUT's manifest and rejects tables,
    row groups of GROUP_ROWS (pyarrow's default for one whole-table write: byte-identical to
    writing everything at once). Returns (kept, reject counts, header lines)."""
    import polars as pl

    from vlmdata.core.parquet_rows import RowsWriter
    from vlmdata.core.rejects import RejectWriter

    header, kept_writer = 0, None
    try:
        with RejectWriter(out / layout.REJECTS, GROUP_ROWS, empty_group=True) as rejects_writer:
            for kept, rejects, head in blocks:
                header += head
                if kept_writer is None:
                    kept_writer = RowsWriter(
                        out / layout.MANIFEST, _kept_schema(kept), GROUP_ROWS, empty_group=True
                    )
                kept_writer.write_table(kept.to_arrow())
                rejects = rejects.with_columns(stage=pl.lit(STAGE), file=pl.lit(str(path)))
                rejects_writer.stream_table(rejects.to_arrow())
            counts = Counter(rejects_writer.counts)
            kept_writer.close()  # the manifest first, then the rejects (as before)
    except BaseException:
        if kept_writer is not None:
            kept_writer.abort()
        raise
    return kept_writer.count, counts, header


def _counted(blocks, progress: bool):
    """The blocks as they come, with a bar of the rows read (kept + rejected) when `progress`."""
    from tqdm import tqdm

    with tqdm(desc="filter-urls", unit=" rows", disable=not progress, mininterval=0.5) as bar:
        for kept, rejects, head in blocks:
            bar.update(kept.height + rejects.height)
            yield kept, rejects, head


def filter_urls(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    denylist: str | os.PathLike | None = None,
    allow_private: bool = False,
    split: str | None = None,
    progress: bool = False,
) -> FilterResult:
    """Filter a Google CC3M TSV (`fmt="cc3m"`) or a manifest parquet (`fmt="manifest"`; the default
    for *.parquet) into OUT/manifest/manifest.parquet (kept) and OUT/rejects/rejects.parquet.
    `progress`: a running count of the rows read, block by block (2 MB blocks)."""

    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = fmt or ("manifest" if path.suffix == ".parquet" else "cc3m")
    rules = {
        "denylist": load_denylist(denylist) if denylist else [],
        "allow_private": allow_private,
    }
    if fmt == "cc3m":
        blocks = _cc3m_blocks(path, split, **rules)
    elif fmt == "manifest":
        if split:
            raise DataError("--split applies to cc3m input; a manifest has its own splits")
        blocks = _manifest_blocks(path, **rules)
    else:
        raise DataError(f"unknown format {fmt!r}; use cc3m or manifest")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept, counts, header = _write(_counted(blocks, progress), out, path)
    return FilterResult(kept=kept, rejects=counts, header=header)
