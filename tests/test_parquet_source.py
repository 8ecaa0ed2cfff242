"""An earlier rejects file appended a piece at a time (vlmdata/core/parquet_source.py,
`RejectWriter.add_file`) gives the bytes of appending `pq.read_table(path)` whole, which is
what `download` (its stages' rejects) and `shard` (a manifest's rejects) did. The oracle is
pyarrow itself: `ParquetWriter.write_table(pq.read_table(path))`, compared byte for byte, and
`pq.read_table`'s own chunks for the edges. Rows are REJECT_SCHEMA rows as the stages write
them (docs/DESIGN.md, contract 2): a few reasons and stages, 1-based lines with nulls, CC3M-style
`record` JSON of ~60-byte to ~3 KB captions, some records null."""

from __future__ import annotations

import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core import parquet_splice
from vlmdata.core.parquet_source import READ_BATCH_ROWS, ParquetSource
from vlmdata.core.rejects import REJECT_SCHEMA, RejectWriter

REASONS = ["download_failed", "http_404", "bad_scheme", "duplicate_key", "empty_caption"]


def reject_rows(n: int, seed: int, caption: tuple[int, int] = (60, 3000)) -> pa.Table:
    rng = random.Random(seed)
    pool = "".join(rng.choices("abc xyzé川", k=caption[1] + 4096))  # captions are slices

    def record(i: int) -> str | None:
        if rng.random() < 0.03:
            return None
        at, length = rng.randrange(4096), rng.randrange(*caption)
        text = pool[at : at + length]
        return json.dumps({"caption": text, "url": f"http://h/{seed}/{i}.jpg"}, sort_keys=True)

    return pa.table(
        {
            "stage": [rng.choice(["filter-urls", "download"]) for _ in range(n)],
            "reason": [rng.choice(REASONS) for _ in range(n)],
            "file": ["Validation_GCC-1.1.0-Validation.tsv"] * n,
            "line": [None if rng.random() < 0.1 else i + 1 for i in range(n)],
            "key": [f"{seed:02d}{i:07d}" for i in range(n)],
            "detail": ["" if rng.random() < 0.5 else f"HTTP Error {i % 7}" for i in range(n)],
            "record": [record(i) for i in range(n)],
        },
        schema=REJECT_SCHEMA,
    )


def write_parquet(path, table: pa.Table, groups: list[int]) -> None:
    """`table` in row groups of the given sizes (an earlier stage's file)."""
    with pq.ParquetWriter(path, table.schema) as out:
        at = 0
        for rows in groups:
            out.write_table(table.slice(at, rows), row_group_size=max(rows, 1))
            at += rows


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    """Files as the stages leave them: 8,192-row groups (RejectWriter), groups of 200,000 and
    300,001 rows (an add_table of a big table) whose chunks end inside at 131,072, one empty
    file, one with an empty group between two."""
    made = []
    for name, rows, groups, caption in (
        ("writer", 20_000, [8192, 8192, 3616], (60, 3000)),
        ("big", 330_000, [200_000, 30_000, 100_000], (5, 40)),
        ("bigger", 300_001, [300_001], (5, 20)),
        ("empty", 0, [0], (5, 20)),
        ("hole", 9_000, [4_000, 0, 5_000], (500, 2_000)),
    ):
        path = tmp_path_factory.mktemp("parts") / f"{name}.parquet"
        write_parquet(path, reject_rows(rows, len(made), caption), groups)
        made.append(path)
    return made


def test_chunks_end_where_read_table_ends_them(parts):
    """Every column of every file, whole and in ranges: the chunk lengths of pq.read_table."""
    assert READ_BATCH_ROWS == 131_072
    for path in parts:
        table = pq.read_table(path)
        source = ParquetSource(path, REJECT_SCHEMA)
        assert source.rows == table.num_rows
        n = source.rows
        for a, b in ((0, n), (n // 3, n - n // 5), (n // 2, n // 2 + 1)):
            if a > b or b > n:
                continue
            for name, column in zip(REJECT_SCHEMA.names, source.columns(a, b), strict=True):
                got = column.read(0, b - a)
                want = table.column(name).slice(a, b - a)
                assert got.equals(want), (path.name, name, a, b)
                assert [len(c) for c in got.chunks] == [len(c) for c in want.chunks if len(c)]


@pytest.mark.parametrize("group_rows", [70_000, 1 << 20])
def test_add_file_writes_what_read_table_wrote(tmp_path, parts, monkeypatch, group_rows):
    """Rows written one by one, then each part appended: the bytes of pyarrow writing the
    same rows as one group, then `write_table(pq.read_table(part))` for each part (pieces of
    200 KB, so every big column goes in many; groups of 70,000 rows cut across row groups
    and chunk ends). The reasons are counted as the whole column would count them."""
    monkeypatch.setattr(RejectWriter, "PIECE_BYTES", 200_000)
    monkeypatch.setattr(parquet_splice, "DEFAULT_GROUP_ROWS", group_rows)
    own = reject_rows(500, 99)
    ref = io.BytesIO()
    with pq.ParquetWriter(ref, REJECT_SCHEMA) as out:
        out.write_table(own)
        for path in parts:
            out.write_table(pq.read_table(path), row_group_size=group_rows)
    target = tmp_path / "rejects.parquet"
    with RejectWriter(target) as w:
        for row in own.to_pylist():
            w.write(row)
        for path in parts:
            w.add_file(path)
    assert target.read_bytes() == ref.getvalue()
    reasons = pq.read_table(target).column("reason").to_pylist()
    assert list(w.counts.items()) == list(_first_seen_counts(reasons[500:]).items())


def _first_seen_counts(values: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


def test_a_file_without_a_rejects_column_is_named(tmp_path):
    path = tmp_path / "old.parquet"
    pq.write_table(reject_rows(3, 0).drop_columns(["detail"]), path)
    with pytest.raises(ValueError, match=r"old\.parquet: no column detail"):
        ParquetSource(path, REJECT_SCHEMA)


def test_a_big_rejects_file_is_held_a_piece_at_a_time(tmp_path, monkeypatch):
    """60,000 rejects of ~1 KB records (~60 MB) in one row group: appended in 2 MB pieces
    Arrow's pool peaks under 20 MB; read whole (the old way) it needs the file's columns."""
    monkeypatch.setattr(RejectWriter, "PIECE_BYTES", 2 << 20)
    path = tmp_path / "big.parquet"
    write_parquet(path, reject_rows(60_000, 7, (900, 1100)), [60_000])
    peaks = {}
    for name in ("pieces", "whole"):
        pool = pa.proxy_memory_pool(pa.default_memory_pool())
        previous = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        try:
            with RejectWriter(tmp_path / f"{name}.parquet") as w:
                if name == "pieces":
                    w.add_file(path)
                else:
                    w._writer.write_table(pq.read_table(path))
            peaks[name] = pool.max_memory()
        finally:
            pa.set_memory_pool(previous)
    pieces, whole = (tmp_path / "pieces.parquet").read_bytes(), (tmp_path / "whole.parquet")
    assert pieces == whole.read_bytes()
    assert peaks["pieces"] < 20_000_000 < 60_000_000 < peaks["whole"], peaks
