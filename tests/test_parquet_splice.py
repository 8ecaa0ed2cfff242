"""A row group written a column at a time and spliced (vlmdata/core/parquet_splice.py) gives the
bytes of pyarrow's own `ParquetWriter` on the same data and calls (the oracle is pyarrow itself);
and the Thrift compact codec gives back the bytes it read."""

from __future__ import annotations

import io
import random
import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core.parquet_splice import SplicedParquetWriter, read_footer
from vlmdata.core.thrift_compact import (
    BINARY,
    I32,
    LIST,
    STRUCT,
    TRUE,
    Struct,
    ThriftError,
    ThriftList,
    decode_struct,
    encode_struct,
)

WORDS = ["a", "cat", "dog", "héllo", "川", "🙂", "", "on the mat"]


def shapes_table(n: int, seed: int = 0) -> pa.Table:
    """The shapes the stages write: CC3M-like urls/captions (filter-urls), LLaVA-like lists of
    strings (texts, conversations as JSON strings), low-cardinality columns, numbers, bools."""
    rng = random.Random(seed)

    def words(k: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(k))

    return pa.table(
        {
            "url": [
                f"http://img{rng.randrange(10**9)}.example/{i}.jpg" if i % 13 else None
                for i in range(n)
            ],  # fmt: skip
            "caption": [words(rng.randrange(1, 25)) for _ in range(n)],  # high cardinality
            "split": [rng.choice(["train", "val", None]) for _ in range(n)],  # dictionary
            "texts": pa.array(
                [[words(3), None] if i % 3 else ([] if i % 2 else None) for i in range(n)],
                pa.list_(pa.string()),
            ),  # fmt: skip
            "n": pa.array(
                [rng.randrange(-(2**62), 2**62) if i % 7 else None for i in range(n)], pa.int64()
            ),  # fmt: skip
            "x": pa.array([rng.random() for _ in range(n)], pa.float64()),
            "flag": pa.array([rng.random() < 0.3 if i % 5 else None for i in range(n)]),
            "ids": pa.array([list(range(i % 4)) for i in range(n)], pa.list_(pa.int32())),
        }
    )


def oracle_and_spliced(tmp_path, schema: pa.Schema, calls, **options) -> tuple[bytes, bytes]:
    """The same `calls` (table, row_group_size) through pyarrow's writer and the spliced one."""
    with pq.ParquetWriter(tmp_path / "ref.parquet", schema, **options) as ref:
        for table, size in calls:
            ref.write_table(table, row_group_size=size)
    with SplicedParquetWriter(tmp_path / "out.parquet", schema, **options) as out:
        for table, size in calls:
            out.write_table(table, row_group_size=size)
    return (tmp_path / "ref.parquet").read_bytes(), (tmp_path / "out.parquet").read_bytes()


@pytest.mark.parametrize(
    "options", [{}, {"compression": "zstd"}, {"use_dictionary": False, "compression": "none"}]
)
def test_byte_identical_to_pyarrow_over_many_shapes(tmp_path, options):
    table = shapes_table(5000)
    calls = [
        (table, 1500),  # several groups, the last one short (500 rows)
        (table.slice(0, 0), None),  # an empty table: one zero-row group
        (pa.concat_tables([table.slice(0, 700), table.slice(900, 1300)]), None),  # chunked
        (table.slice(4999), None),  # one row
        (
            pa.concat_tables(
                [table.slice(0, 600), table.slice(0, 0), table.slice(600, 900)]
                + [table.slice(1500 + 100 * i, 100) for i in range(9)]
            ),
            600,
        ),
    ]  # the last: chunks that end inside groups and on their bounds, an empty chunk
    ref, out = oracle_and_spliced(tmp_path, table.schema, calls, **options)
    assert out == ref
    meta = pq.ParquetFile(io.BytesIO(out)).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [
        1500, 1500, 1500, 500, 0, 2000, 1, 600, 600, 600, 600]  # fmt: skip
    assert pq.read_table(io.BytesIO(out)).slice(0, 5000).equals(table)
    assert pq.read_table(io.BytesIO(out)).slice(7001).equals(calls[-1][0])


def test_dictionary_fallback_and_the_default_group(tmp_path):
    """A column whose dictionary passes the page limit falls back to plain pages mid-chunk,
    beside one that keeps its dictionary; no row_group_size: pyarrow's default group."""
    n = 40_000
    table = pa.table({
        "unique": [f"{i:09d}-{'x' * (i % 50)}" for i in range(n)],  # ~1.4 MB of distinct values
        "few": [WORDS[i % 3] for i in range(n)],
    })  # fmt: skip
    ref, out = oracle_and_spliced(tmp_path, table.schema, [(table, None)])
    assert out == ref
    chunk = pq.ParquetFile(io.BytesIO(out)).metadata.row_group(0).column(0)
    assert "PLAIN" in chunk.encodings  # the fallback happened (so it is what was compared)
    ref, out = oracle_and_spliced(
        tmp_path, table.schema, [(table, None)], dictionary_pagesize_limit=4096
    )
    assert out == ref


def test_empty_file_and_schema_metadata(tmp_path):
    schema = pa.schema([("key", pa.string()), ("v", pa.int64())], metadata={b"scheme": b"num"})
    ref, out = oracle_and_spliced(tmp_path, schema, [])  # no group at all
    assert out == ref
    ref, out = oracle_and_spliced(tmp_path, schema, [(schema.empty_table(), None)])
    assert out == ref and pq.ParquetFile(io.BytesIO(out)).metadata.num_row_groups == 1


def test_write_group_takes_columns_one_at_a_time(tmp_path):
    """`write_group` asks for the next column only after writing the one before."""
    table = shapes_table(300, seed=1)
    made: list[str] = []

    def columns():
        for name in table.column_names:
            assert len(made) == table.column_names.index(name)  # the previous one is written
            made.append(name)
            yield table.column(name).combine_chunks()

    with SplicedParquetWriter(tmp_path / "out.parquet", table.schema) as out:
        out.write_group(300, columns())
    pq.write_table(table, tmp_path / "ref.parquet")
    assert (tmp_path / "out.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet", "ref.parquet"]


def test_bad_groups_and_abort(tmp_path):
    schema = pa.schema([("a", pa.int64()), ("b", pa.string())])
    out = SplicedParquetWriter(tmp_path / "out.parquet", schema)
    with pytest.raises(ValueError, match="needs all 2 columns"):
        out.write_group(1, [pa.array([1])])
    with pytest.raises(ValueError, match="column b has 2 rows, not 1"):
        out.write_group(1, [pa.array([1]), pa.array(["x", "y"])])
    with pytest.raises(ValueError, match="column b is int64, not string"):
        out.write_group(1, [pa.array([1]), pa.array([2])])
    with pytest.raises(ValueError, match="is not the file's"):
        out.write_table(pa.table({"b": ["x"], "a": [1]}))  # pyarrow refuses another order too
    out.abort()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.parquet"]  # the caller removes it
    with pytest.raises(ValueError, match="closed"):
        out.write_group(1, [pa.array([1]), pa.array(["x"])])


def test_page_index_is_refused(tmp_path):
    schema = pa.schema([("a", pa.int64())])
    with pytest.raises(ValueError, match="not supported"):
        with SplicedParquetWriter(tmp_path / "o.parquet", schema, write_page_index=True) as out:
            out.write_table(pa.table({"a": [1, 2]}))


def footer_bytes(data: bytes) -> bytes:
    (length,) = struct.unpack("<I", data[-8:-4])
    return data[-8 - length : -8]


def test_thrift_codec_round_trips_real_footers(tmp_path):
    table = shapes_table(2000, seed=2)
    for options in ({}, {"compression": "zstd", "write_statistics": False}):
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=700, **options)
        footer = footer_bytes(sink.getvalue())
        meta = decode_struct(footer)
        assert encode_struct(meta) == footer
        assert meta.get(3) == 2000  # FileMetaData.num_rows (parquet.thrift field 3)
        assert len(meta.get(4).values) == 3  # row_groups
        sink.seek(0)
        assert read_footer(sink)[0] == meta


def test_thrift_codec_long_forms_and_errors():
    """Field-id jumps past 15 and backwards, lists of 15+ items, bools, nested structs: the
    compact protocol's encodings written by hand from the spec."""
    s = Struct([[1, I32, -3], [40, BINARY, b"hi"], [2, TRUE, False],
                [3, LIST, ThriftList(I32, list(range(20)))],
                [4, STRUCT, Struct([[1, TRUE, True]])]])  # fmt: skip
    data = encode_struct(s)
    assert data[:2] == bytes([0x15, 0x05])  # delta 1, i32, zigzag(-3) = 5
    assert data[2:4] == bytes([0x08, 80])  # long form: type byte, zigzag(40) = 80
    assert decode_struct(data) == s
    with pytest.raises(ThriftError, match="truncated"):
        decode_struct(data[:-3])
    with pytest.raises(ThriftError, match="after the struct"):
        decode_struct(data + b"\x00")
