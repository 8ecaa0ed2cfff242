"""Conceptual Captions 3M: Google's TSVs and FROMAGe's local TSV.

Google (`Train_GCC-training.tsv`, `Validation_GCC-1.1.0-Validation.tsv`): `caption<TAB>url`, no
header as published, though img2dataset's CC3M guide has users add `caption<TAB>url` as a first
line: it is recognised, skipped and counted (`header` in the summary). Key
`cc3m_{split}_{row:08d}`, row = the 1-based data row (the header is not a row), so a file gives
the same keys with or without the header. ONE builder, `iter_google_frames`, makes the rows
(key, line, caption and url stripped) for `manifest cc3m` and `filter-urls --format cc3m` (both
block by block, bounded memory), and `manifest_columns` their manifest columns, so both
commands give the same keys for the same file and --split. FROMAGe (`cc3m_train.tsv`): header
`caption<TAB>image`, image = a file under the image folder; key from the image name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.sources.fields import (
    RowError,
    nonempty_text,
    path_stem,
    safe_relpath,
    split_from_name,
)
from vlmdata.sources.lines import (
    decode,
    iter_lines,
    line_blocks,
    lines_column,
    readable,
    split_tsv,
)

if TYPE_CHECKING:
    import polars as pl

FROMAGE_HEADER = "caption\timage"
GOOGLE_HEADERS = ("caption\turl",)  # img2dataset's CC3M guide: sed -i '1s/^/caption\turl\n/'
BLOCK_BYTES = 1 << 21  # `manifest cc3m` reads the TSV 2 MB (~12k rows) at a time


def key_prefix(split: str) -> str:
    """`cc3m_{split}` made key-safe (`--split "val 2"` -> `cc3m_val_2`)."""
    return make_key("cc3m", split)


def is_google_header(text: str | None) -> bool:
    return (text or "").strip().lower() in GOOGLE_HEADERS


def _unquote(field: str) -> str:
    """FROMAGe's TSV is written by pandas, which CSV-quotes fields holding a quote character."""
    if len(field) >= 2 and field[0] == field[-1] == '"':
        return field[1:-1].replace('""', '"')
    return field


def _fromage_row(fields: list[str], split: str) -> dict:
    caption, image = (_unquote(f) for f in fields)
    if not image.strip():
        raise RowError("missing_field", "empty image")
    path = safe_relpath(image.strip(), "image")
    return {
        "key": make_key("cc3m", split, path_stem(path)),
        "source": "cc3m",
        "split": split,
        "url": None,
        "path": path,
        "texts": [nonempty_text(caption, "caption")],
    }


def _first_line(path: Path) -> str:
    for _, raw in iter_lines(path):
        return raw.decode("utf-8", "replace")
    return ""


def _read_fromage(path: Path, sink: ManifestSink, split: str) -> None:
    for line, raw in iter_lines(path):
        if line == 1:
            continue  # the header
        try:
            row = _fromage_row(split_tsv(decode(raw), 2), split)
        except RowError as e:
            sink.reject(e.reason, file=str(path), line=line, detail=e.detail, record=readable(raw))
            continue
        sink.keep(row, file=str(path), line=line)


def _read_google(path: Path, sink: ManifestSink, split: str | None) -> int:
    """Google TSV rows into the sink in line order, block by block; returns the header count."""
    header = 0
    for tsv in iter_google_frames(path, split, BLOCK_BYTES):
        header += tsv.header
        bad = tsv.rejects.iter_rows(named=True)  # both in line order: merged as they stream
        pending = next(bad, None)
        for r in tsv.rows.iter_rows(named=True):
            while pending is not None and pending["line"] < r["line"]:
                _reject_line(sink, path, pending)
                pending = next(bad, None)
            _keep_row(sink, path, tsv.split, r)
        while pending is not None:
            _reject_line(sink, path, pending)
            pending = next(bad, None)
    return header


def _reject_line(sink: ManifestSink, path: Path, r: dict) -> None:
    sink.reject(r["reason"], file=str(path), line=r["line"], detail=r["detail"],
                record=json.loads(r["record"]))  # fmt: skip


def _keep_row(sink: ManifestSink, path: Path, split: str, r: dict) -> None:
    """The one manifest row of a Google TSV row, or its reject (empty caption or url)."""
    record = {"caption": r["caption"], "url": r["url"]}
    if not r["caption"]:
        sink.reject("empty_text", file=str(path), line=r["line"], detail="caption is empty",
                    record=record, key=r["key"])  # fmt: skip
    elif not r["url"]:
        sink.reject("missing_field", file=str(path), line=r["line"], detail="empty url",
                    record=record, key=r["key"])  # fmt: skip
    else:
        row = {"key": r["key"], "source": "cc3m", "split": split, "url": r["url"],
               "path": None, "texts": [r["caption"]]}  # fmt: skip
        sink.keep(row, file=str(path), line=r["line"])


def read_file(path: Path, sink: ManifestSink, split: str | None = None) -> int:
    """One Google or FROMAGe TSV (the first line tells which); returns the header count."""
    if _first_line(path).rstrip() == FROMAGE_HEADER:
        _read_fromage(path, sink, split_from_name(path.name, split))
        return 0
    return _read_google(path, sink, split)


def read(inputs: list[Path], sink: ManifestSink, split: str | None = None) -> dict[str, int]:
    """Each input is a Google or FROMAGe TSV; the split comes from its name unless given."""
    header = sum(read_file(path, sink, split) for path in inputs)
    return {"header": header} if header else {}


def _json(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


@dataclass
class GoogleTSV:
    """Google TSV rows as polars frames: `rows` (key, line, caption, url; both stripped, not
    yet checked), `rejects` (line, reason, detail, record as JSON text) for lines that are not
    valid UTF-8 or do not have exactly two fields, and `header` (1 when the header line was
    skipped)."""

    rows: pl.DataFrame
    rejects: pl.DataFrame
    split: str
    header: int = 0

    def manifest_columns(self, rows: pl.DataFrame | None = None) -> pl.DataFrame:
        """`rows` (default: all) in manifest columns: key, source, split, url, path, texts."""
        import polars as pl

        rows = self.rows if rows is None else rows
        return rows.select(
            "key",
            source=pl.lit("cc3m"),
            split=pl.lit(self.split),
            url="url",
            path=pl.lit(None, dtype=pl.String),
            texts=pl.concat_list("caption"),
        )


def iter_google_frames(
    path: Path, split: str | None = None, block_bytes: int | None = 1 << 23
) -> Iterator[GoogleTSV]:
    """The Google TSV in blocks of whole lines (one block when `block_bytes` is None)."""
    split = split_from_name(path.name, split)
    blocks = [(0, path.read_bytes())] if block_bytes is None else line_blocks(path, block_bytes)
    header: int | None = None  # known after the first block
    for first, data in blocks:
        tsv = _google_block(path, data, first, split, header)
        header = tsv.header if header is None else header
        yield tsv if first == 0 else GoogleTSV(tsv.rows, tsv.rejects, split, 0)
    if header is None:  # an empty file
        yield _google_block(path, b"", 0, split, None)


def _google_block(path: Path, data: bytes, first: int, split: str, header: int | None):
    """Rows of one block; `header` None: this block starts the file and may hold the header."""
    import polars as pl

    text, bad = lines_column(data)
    if header is None:
        header = 0
        if len(text) and (text[0] or "").rstrip() == FROMAGE_HEADER:
            raise DataError("a FROMAGe TSV (caption, image) has no URLs to filter", file=str(path))
        if len(text) and is_google_header(text[0]):
            header = 1
    frame = pl.DataFrame([text]).with_row_index("line", first + 1)
    frame = frame.with_columns(
        pl.col("line").cast(pl.Int64),
        pl.col("text").str.count_matches("\t", literal=True).add(1).alias("n_fields"),
    )
    if header:
        frame = frame.filter(pl.col("line") > 1)
    n_fields = pl.col("n_fields")
    halves = pl.col("text").str.splitn("\t", 2)
    row_number = (pl.col("line") - header).cast(pl.String)  # the header is not a data row
    rows = frame.filter(n_fields == 2).select(
        pl.concat_str(pl.lit(key_prefix(split) + "_"), row_number.str.zfill(8)).alias("key"),
        "line",
        halves.struct.field("field_0").str.strip_chars().alias("caption"),
        halves.struct.field("field_1").str.strip_chars().alias("url"),
    )
    wrong = frame.filter(pl.col("text").is_not_null() & (n_fields != 2)).select(
        "line",
        pl.lit("wrong_field_count").alias("reason"),
        pl.format("{} tab-separated fields, not 2", n_fields).alias("detail"),
        pl.col("text").map_elements(_json, return_dtype=pl.String).alias("record"),
    )
    bad_utf8 = pl.DataFrame(
        {
            "line": [first + i + 1 for i in bad],
            "reason": ["bad_utf8"] * len(bad),
            "detail": ["invalid UTF-8"] * len(bad),
            "record": [_json(readable(raw)) for raw in bad.values()],
        },
        schema={"line": pl.Int64, "reason": pl.String, "detail": pl.String, "record": pl.String},
    )
    return GoogleTSV(rows, pl.concat([wrong, bad_utf8]).sort("line"), split, header)
