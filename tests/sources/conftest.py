"""Helpers for the source reader tests: small files in the published formats, bad rows included."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from vlmdata.core import layout


def reject_counts(out: Path) -> dict[str, int]:
    return dict(Counter(pl.read_parquet(out / layout.REJECTS)["reason"].to_list()))


def manifest_rows(out: Path) -> list[dict]:
    return pl.read_parquet(out / layout.MANIFEST).to_dicts()


def write_json_bytes(path: Path, obj: object, replace: dict[str, bytes] | None = None) -> Path:
    """JSON text with placeholders swapped for raw (possibly invalid UTF-8) bytes."""
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    for placeholder, raw in (replace or {}).items():
        data = data.replace(placeholder.encode(), raw)
    path.write_bytes(data)
    return path


@pytest.fixture
def out(tmp_path: Path) -> Path:
    return tmp_path / "out"
