"""Line-based inputs (TSV, JSONL), read as bytes so one bad line cannot spoil the rest.

Reading bytes (not text mode) keeps line numbers honest: Python's text mode would also split on
`\\r`, `\\x1c`… and `\\u2028` inside captions, while the published files only use `\\n`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vlmdata.sources.fields import RowError


def iter_lines(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, raw line without its `\\n` / `\\r\\n`), skipping nothing."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            yield number, raw.rstrip(b"\n").removesuffix(b"\r")


def decode(raw: bytes) -> str:
    """The line as text, or RowError `bad_utf8` naming the byte offset."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RowError("bad_utf8", f"invalid UTF-8 at byte {e.start}") from None


def readable(raw: bytes) -> str:
    """A bad line as text for the reject record (invalid bytes as `\\xNN`)."""
    return raw.decode("utf-8", "backslashreplace")


def split_tsv(text: str, n_fields: int) -> list[str]:
    """Exactly `n_fields` tab-separated fields (a tab inside a caption gives one too many)."""
    fields = text.split("\t")
    if len(fields) != n_fields:
        raise RowError("wrong_field_count", f"{len(fields)} tab-separated fields, not {n_fields}")
    return fields


def parse_json_object(text: str) -> dict[str, Any]:
    """One JSONL record, which must be a JSON object."""
    try:
        record = json.loads(text)
    except json.JSONDecodeError as e:
        raise RowError("bad_json", f"{e.msg} at column {e.colno}") from None
    if not isinstance(record, dict):
        raise RowError("wrong_type", f"record is {type(record).__name__}, not an object")
    return record


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict[str, Any] | None, Any]]:
    """(line, record, error) per non-blank line: error is a RowError with the line's raw text
    attached as `.record`, or None when the record parsed."""
    for number, raw in iter_lines(path):
        if not raw.strip():
            continue
        try:
            yield number, parse_json_object(decode(raw)), None
        except RowError as e:
            e.record = readable(raw)  # type: ignore[attr-defined]
            yield number, None, e


def line_blocks(path: str | os.PathLike, block_bytes: int = 1 << 26) -> Iterator[tuple[int, bytes]]:
    """The file in blocks of whole lines (about `block_bytes` each, bounded memory), each with
    the 0-based index of its first line; `lines_column(block)` numbers lines as `iter_lines`."""
    with open(path, "rb") as f:
        carry, first = b"", 0
        while chunk := f.read(block_bytes):
            data = carry + chunk
            cut = data.rfind(b"\n") + 1
            block, carry = data[:cut], data[cut:]
            if block:
                yield first, block
                first += block.count(b"\n")
        if carry:
            yield first, carry


def lines_column(source: str | os.PathLike | bytes, chunk_bytes: int = 1 << 26):
    """The whole file (or a block of whole lines) as a polars String Series, one element per
    line (no `\\n` / `\\r\\n`), null where a line is not valid UTF-8, plus {0-based index: raw
    bytes} of those lines.

    Vectorised: numpy finds the newlines, Arrow wraps the file's bytes without copying and
    validates UTF-8 in C++; only when that fails are lines decoded one by one to find the bad
    ones. Line numbering equals `iter_lines`."""
    import numpy as np
    import polars as pl
    import pyarrow as pa
    import pyarrow.compute as pc

    data = source if isinstance(source, bytes) else Path(source).read_bytes()
    buf = np.frombuffer(data, np.uint8)
    ends = [
        np.flatnonzero(buf[i : i + chunk_bytes] == 10) + i + 1
        for i in range(0, len(buf), chunk_bytes)
    ]
    offsets = np.concatenate([np.zeros(1, np.int64), *ends]).astype(np.int64)
    if offsets[-1] != len(data):
        offsets = np.append(offsets, np.int64(len(data)))
    arrow_buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    raw = pa.LargeBinaryArray.from_buffers(pa.large_binary(), len(offsets) - 1, arrow_buffers)
    bad: dict[int, bytes] = {}
    try:
        text = raw.cast(pa.large_string())
    except pa.ArrowInvalid:  # rare: find the bad lines one by one
        for i in range(len(offsets) - 1):
            line = data[offsets[i] : offsets[i + 1]]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad[i] = line.rstrip(b"\n").removesuffix(b"\r")
        mask = pa.array([i in bad for i in range(len(raw))]) if bad else None
        text = pc.if_else(mask, pa.scalar(None, pa.large_binary()), raw)
        text = text.cast(pa.large_string())
    series = pl.Series("text", text).str.strip_suffix("\n").str.strip_suffix("\r")
    return series, bad
