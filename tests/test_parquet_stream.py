"""A big string column of one row group written in pieces (vlmdata/core/parquet_pages.py via
parquet_splice) gives the bytes of pyarrow's own `ParquetWriter` writing the whole group: the
oracle is pyarrow itself, compared byte for byte. Shapes: mostly unique strings (dictionary
fallback early), repeats (fallback late or never), long values (few rows a page, min / max
past Arrow's 4,096-byte statistics limit), nulls, empty strings, unicode, binaries, and
LLaVA / records-style list<string> with null and empty lists and null items."""

from __future__ import annotations

import io
import random

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core import parquet_splice
from vlmdata.core.column_spill import SpilledColumn
from vlmdata.core.parquet_pages import ColumnSlices
from vlmdata.core.parquet_rows import RowsWriter
from vlmdata.core.parquet_splice import SplicedParquetWriter, read_footer
from vlmdata.shards.tables import ArrowRows

ALPHABET = "abcxyz -é川🙂\u00ff"


def text(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(ALPHABET, k=rng.randrange(lo, hi)))


def unique_strings(n: int, rng: random.Random) -> pa.Array:
    """Mostly distinct (the dictionary falls back early), 5% null, some empty."""
    return pa.array([None if rng.random() < 0.05 else text(rng, 0, 60) for _ in range(n)])


def repeated_strings(n: int, rng: random.Random, distinct: int) -> pa.Array:
    """Drawn from `distinct` values: the dictionary fills late, or never."""
    vocab = [text(rng, 5, 80) for _ in range(distinct)]
    return pa.array([None if rng.random() < 0.02 else rng.choice(vocab) for _ in range(n)])


def long_strings(n: int, rng: random.Random) -> pa.Array:
    """10-100 KB values (a page holds a few) and some short ones, so the min is kept and the
    max (over 4,096 bytes) is not; the first value sorts lowest so the min is short."""
    out = [None if rng.random() < 0.1 else "x" * rng.randrange(10_000, 100_000) + str(i)
           for i in range(n)]  # fmt: skip
    out[0], out[n // 2] = "a", ""
    return pa.array(out)


def list_strings(n: int, rng: random.Random, distinct: int = 10**9) -> pa.Array:
    """list<string>: null lists, empty lists, null items, lists of 1-5 items (records.parquet
    texts, LLaVA conversations as lists)."""

    def one() -> list | None:
        r = rng.random()
        if r < 0.05:
            return None
        if r < 0.1:
            return []
        return [None if rng.random() < 0.05 else f"w{rng.randrange(distinct)} " + text(rng, 0, 30)
                for _ in range(rng.randrange(1, 6))]  # fmt: skip

    return pa.array([one() for _ in range(n)], pa.list_(pa.string()))


def slices_of(array: pa.Array, asked: list | None = None) -> ColumnSlices:
    def read(a: int, b: int) -> pa.Array:
        if asked is not None:
            asked.append((a, b))
        return array.slice(a, b - a)

    return ColumnSlices(array.type, len(array), array.nbytes, read)


SMALL = {"dictionary_pagesize_limit": 8_000, "data_page_size": 8_000}  # pages a piece holds


def write_both(tmp_path, table: pa.Table, groups: list[int], piece_bytes: int, **options):
    """(pyarrow's bytes, the spliced writer's bytes, scratch writes per column); each group
    written whole by pyarrow and as ColumnSlices by the spliced writer."""
    ref = io.BytesIO()
    with pq.ParquetWriter(ref, table.schema, **options) as writer:
        at = 0
        for rows in groups:
            writer.write_table(table.slice(at, rows), row_group_size=max(rows, 1))
            at += rows
    asked: dict[str, list] = {}
    out = tmp_path / "out.parquet"
    with SplicedParquetWriter(out, table.schema, piece_bytes=piece_bytes, **options) as spliced:
        at = 0
        for rows in groups:
            part = table.slice(at, rows)
            columns = [slices_of(part.column(i).combine_chunks(), asked.setdefault(name, []))
                       for i, name in enumerate(table.column_names)]  # fmt: skip
            spliced.write_group(rows, columns)
            at += rows
    return ref.getvalue(), out.read_bytes(), asked


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("compression", ["snappy", "zstd", "none"])
def test_unique_and_list_columns_in_many_pieces(tmp_path, seed, compression):
    rng = random.Random(seed)
    n = 12_000
    table = pa.table({"s": unique_strings(n, rng), "texts": list_strings(n, rng)})
    ref, out, asked = write_both(tmp_path, table, [n], 40_000, compression=compression, **SMALL)
    assert out == ref
    for name in ("s", "texts"):  # many pieces, each one's start no earlier than the last's
        starts = [a for a, _ in asked[name]]
        assert len(starts) > 8 and starts == sorted(starts) and asked[name][-1][1] == n


@pytest.mark.parametrize("seed", [3, 4])
def test_groups_of_every_size(tmp_path, seed):
    """Several groups: one smaller than a piece, one of one row, an empty one, big ones."""
    rng = random.Random(seed)
    n = 20_000
    table = pa.table({"s": unique_strings(n, rng), "texts": list_strings(n, rng)})
    groups = [9_000, 50, 1, 0, n - 9_051]
    ref, out, asked = write_both(tmp_path, table, groups, 30_000, compression="zstd", **SMALL)
    assert out == ref
    meta = pq.ParquetFile(io.BytesIO(out)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == groups


@pytest.mark.parametrize("distinct", [50, 3_000, 40_000])
def test_repeated_values_fall_back_late_or_never(tmp_path, distinct):
    """50 values never leave the dictionary: the column is written whole (one read); 3,000 /
    40,000 values leave it inside the first piece under a small dictionary limit, or later
    than the first piece under the default one (then whole too)."""
    rng = random.Random(distinct)
    n = 30_000
    table = pa.table({"s": repeated_strings(n, rng, distinct),
                      "texts": list_strings(n, rng, distinct)})  # fmt: skip
    for options in ({}, {**SMALL, "dictionary_pagesize_limit": 20_000, "compression": "zstd"}):
        ref, out, asked = write_both(tmp_path, table, [n], 50_000, **options)
        assert out == ref, options
        pieces = len(asked["s"])
        if distinct == 50:
            assert pieces == 2 and asked["s"][-1] == (0, n)  # a first piece, then whole
        elif options:
            assert pieces > 8


def test_long_values_and_statistics_limits(tmp_path):
    """A page holds a few 10-100 KB values (pyarrow's 1 MB pages, checked every 8 values);
    the max is over 4,096 bytes (not written), the min is short (written); a column of
    nothing but long values has neither. With pyarrow's 1,024-value batches a page holds
    1,024 values, more than the group: the first piece grows to the whole column."""
    rng = random.Random(5)
    n = 400
    table = pa.table({"s": long_strings(n, rng)})
    plain = {"use_dictionary": False, "compression": "zstd", "write_batch_size": 8}
    ref, out, asked = write_both(tmp_path, table, [n], 2_000_000, **plain)
    assert out == ref and len(asked["s"]) > 5
    (group,) = read_footer(io.BytesIO(out))[0].get(4).values
    stats = group.get(1).values[0].get(3).get(12)  # ColumnChunk.meta_data.statistics
    assert stats.get(3) > 0 and stats.get(6) == b"" and stats.get(5) is None  # null, min, max
    ref, out, asked = write_both(tmp_path, table, [n], 2_000_000)
    assert out == ref and asked["s"][-1] == (0, n)
    only_long = pa.table({"s": pa.array(["y" * 5_000 + str(i) for i in range(n)])})
    ref, out, asked = write_both(tmp_path, only_long, [n], 200_000, **plain)
    assert out == ref and len(asked["s"]) > 3


def test_nulls_empties_binaries_and_required_fields(tmp_path):
    """All-null and all-empty stretches, a binary column with high bytes (unsigned order),
    non-nullable string and list fields (other level histograms)."""
    rng = random.Random(6)
    n = 15_000
    strings = [None] * 3000 + [""] * 3000 + [text(rng, 1, 40) for _ in range(n - 6000)]
    binaries = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30))) for _ in range(n)]
    lists = [[text(rng, 1, 20) for _ in range(rng.randrange(0, 4))] for _ in range(n)]
    schema = pa.schema([
        ("s", pa.string()),
        ("b", pa.binary()),
        pa.field("req", pa.string(), nullable=False),
        pa.field("l", pa.list_(pa.field("item", pa.string(), nullable=False)), nullable=False),
    ])  # fmt: skip
    table = pa.table(
        {
            "s": strings,
            "b": binaries,
            "req": [s or f"-{i}-{'r' * 20}" for i, s in enumerate(strings)],
            "l": lists,
        },
        schema=schema,
    )
    for options in (SMALL, {**SMALL, "use_dictionary": False, "compression": "snappy"}):
        ref, out, asked = write_both(tmp_path, table, [n], 20_000, **options)
        assert out == ref, options
        assert all(len(asked[name]) > 4 for name in ("b", "req", "l")), asked
    nulls = pa.table({"s": pa.array([None] * 50_000, pa.string())})  # 20,000-row pages
    ref, out, asked = write_both(tmp_path, nulls, [50_000], 1_000, use_dictionary=False)
    assert out == ref and len(asked["s"]) > 2


def test_page_rules_under_small_limits(tmp_path):
    """Small pages, batches and a row limit per page: pages cut by rows as well as bytes."""
    rng = random.Random(7)
    n = 10_000
    table = pa.table({"s": unique_strings(n, rng), "texts": list_strings(n, rng)})
    options = {"data_page_size": 3_000, "write_batch_size": 100, "max_rows_per_page": 70,
               "dictionary_pagesize_limit": 5_000, "compression": "zstd"}  # fmt: skip
    ref, out, asked = write_both(tmp_path, table, [n], 20_000, **options)
    assert out == ref and len(asked["s"]) > 8
    ref, out, asked = write_both(tmp_path, table, [n], 20_000, **SMALL, write_statistics=False)
    assert out == ref and len(asked["texts"]) > 8
    ref, out, asked = write_both(tmp_path, table, [n], 20_000, data_page_version="2.0")
    assert out == ref and asked["s"] == [(0, n)]  # other page rules: written whole


def test_rows_writer_and_arrow_rows_write_in_pieces(tmp_path, monkeypatch):
    """RowsWriter (manifest llava, filter-urls) and ArrowRows (records / index) spill their
    columns to disk and hand big ones over in pieces: same bytes as one pq.write_table (their
    own options: pyarrow's 1 MB pages and dictionary limit)."""
    rng = random.Random(8)
    n = 12_000
    table = pa.table({"key": [f"k{i:06d}" for i in range(n)],
                      "s": [text(rng, 300, 700) for _ in range(n)],
                      "texts": list_strings(n, rng)})  # fmt: skip
    plain_pieces: list[str] = []
    real = SplicedParquetWriter._scratch_write

    def spy(self, field, array, plain):
        if plain:
            plain_pieces.append(field.name)
        return real(self, field, array, plain)

    monkeypatch.setattr(SplicedParquetWriter, "_scratch_write", spy)
    monkeypatch.setattr(RowsWriter, "PIECE_BYTES", 1_300_000)
    monkeypatch.setattr("vlmdata.core.parquet_rows.TOGETHER_BYTES", 0)
    monkeypatch.setattr("vlmdata.core.column_spill.SPILL_BYTES", 200_000)
    with RowsWriter(tmp_path / "rows.parquet", table.schema, batch_rows=7_000) as w:
        for row in table.to_pylist():
            w.write(row)
    pq.write_table(table, tmp_path / "ref.parquet", row_group_size=7_000)
    assert (tmp_path / "rows.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert plain_pieces.count("s") > 2
    monkeypatch.setattr(ArrowRows, "PIECE_BYTES", 1_300_000)
    monkeypatch.setattr(ArrowRows, "MEMORY_BYTES", 200_000)
    monkeypatch.setattr(ArrowRows, "GROUP_ROWS", 5_000)  # groups of 5,000, 5,000, 2,000 rows
    rows = ArrowRows(table.schema)
    for row in table.to_pylist():
        rows.append(row)
    plain_pieces.clear()
    rows.write_parquet(tmp_path / "arrow.parquet", compression="zstd")
    pq.write_table(table, tmp_path / "ref.parquet", row_group_size=5_000, compression="zstd")
    assert (tmp_path / "arrow.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert plain_pieces.count("s") >= 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arrow.parquet", "ref.parquet",
                                                         "rows.parquet"]  # fmt: skip


def test_spilled_column_reads_any_row_range(tmp_path):
    rng = random.Random(9)
    whole = list_strings(3_000, rng)
    column = SpilledColumn(pa.field("l", whole.type), tmp_path / "c.arrows", spill_bytes=5_000)
    for at in range(0, 3_000, 250):
        column.append(whole.slice(at, 250))
    assert column.rows == 3_000 and column.path.exists()
    for a, b in [(0, 3_000), (0, 1), (249, 251), (1_000, 1_000), (2_999, 3_000), (17, 2_333)]:
        assert column.read(a, b).equals(whole.slice(a, b - a))
    with pytest.raises(ValueError, match="rows"):
        column.read(10, 3_001)
    column.discard()
    assert not column.path.exists()


def big_texts(n: int, seed: int) -> ColumnSlices:
    """~200-byte distinct ASCII strings made a range at a time (nothing holds the column):
    rows come in blocks of 1,000 made from the block's own seed, so any range is the same."""

    def block(k: int) -> pa.Array:
        rng = np.random.default_rng([seed, k])
        rows = min(1000, n - 1000 * k)
        offsets = np.zeros(rows + 1, np.int32)
        np.cumsum(rng.integers(150, 250, rows), out=offsets[1:])
        data = rng.integers(97, 123, int(offsets[-1]), dtype=np.uint8)
        return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets),
                                                        pa.py_buffer(data)])  # fmt: skip

    def read(a: int, b: int) -> pa.Array:
        blocks = [block(k) for k in range(a // 1000, (b + 999) // 1000)]
        return pa.concat_arrays(blocks).slice(a - 1000 * (a // 1000), b - a)

    return ColumnSlices(pa.string(), n, n * 204, read)


def test_a_big_column_is_held_a_piece_at_a_time(tmp_path):
    """200k rows of ~200-byte texts (~40 MB) in one group: written in 2 MB pieces the Arrow
    pool's peak stays under a few pieces; handed over whole it needs the column."""
    n, piece = 200_000, 2 << 20
    peaks = {}
    for name, piece_bytes in (("pieces", piece), ("whole", 1 << 40)):
        pool = pa.proxy_memory_pool(pa.default_memory_pool())
        previous = pa.default_memory_pool()
        pa.set_memory_pool(pool)
        try:
            schema = pa.schema([("t", pa.string())])
            path = tmp_path / f"{name}.parquet"
            with SplicedParquetWriter(path, schema, piece_bytes=piece_bytes) as out:
                out.write_group(n, [big_texts(n, 0)])
            peaks[name] = pool.max_memory()
        finally:
            pa.set_memory_pool(previous)
    pieces, whole = (tmp_path / "pieces.parquet").read_bytes(), (tmp_path / "whole.parquet")
    assert pieces == whole.read_bytes()
    assert peaks["pieces"] < 4 * piece < 40_000_000 < peaks["whole"], peaks


def test_pieces_equal_whole_column_from_generated_ranges(tmp_path):
    """The same generated column (6 MB) through 2 MB pieces under pyarrow's own limits (1 MB
    pages and dictionary) and through pyarrow's write_table."""
    n = 30_000
    column = big_texts(n, 1)
    table = pa.table({"t": column.read(0, n)})
    pq.write_table(table, tmp_path / "ref.parquet", compression="zstd")
    asked = []
    read = column.read
    column.read = lambda a, b: asked.append((a, b)) or read(a, b)
    with SplicedParquetWriter(tmp_path / "out.parquet", table.schema, piece_bytes=2_000_000,
                              compression="zstd") as out:  # fmt: skip
        out.write_group(n, [column])
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert len(asked) > 3 and asked[-1][1] == n and asked[1][0] > 0
    assert parquet_splice.PIECE_BYTES == 8 << 20


def test_flat_pieces_hold_no_per_row_levels(tmp_path):
    """A flat column's levels are a zero-stride view (one a row), not an int64 array, and
    `_rows_in` counts its rows from the pages without a cumsum: 16 bytes a row that short
    strings' pieces held on top of their own ~15 (build-ids' identifiers). Same bytes."""
    from vlmdata.core.parquet_pages import levels_per_row
    from vlmdata.core.parquet_splice import _rows_in

    flat = levels_per_row(pa.array(["a", None, "bc"]))
    assert flat.strides == (0,) and flat.tolist() == [1, 1, 1] and flat.nbytes <= 24
    lists = levels_per_row(pa.array([["a", "b"], [], None]))
    assert lists.tolist() == [2, 1, 1]
    pages = [parquet_splice.Page(0, 1, 1, 1, 0, 0, 2)]  # one data page of 2 levels
    assert _rows_in(flat, pages, "t", 0) == 2 and _rows_in(lists, pages, "t", 0) == 1
    with pytest.raises(ValueError, match="pages hold 2 of 1 rows"):
        _rows_in(levels_per_row(pa.array(["a"])), pages, "t", 0)
    n = 300_000
    keys = pa.array([f"cc3m_train_{i:08d}" for i in range(n)])  # unique: the dictionary ends
    table = pa.table({"k": keys})
    pq.write_table(table, tmp_path / "ref.parquet", compression="zstd")
    column = ColumnSlices(keys.type, n, keys.nbytes, lambda a, b: keys.slice(a, b - a))
    with SplicedParquetWriter(tmp_path / "out.parquet", table.schema, piece_bytes=1 << 20,
                              compression="zstd") as out:  # fmt: skip
        out.write_group(n, [column])
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
