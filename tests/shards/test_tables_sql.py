"""Each table of an output folder is discoverable alone by a path pattern (issue 24, DuckDB).

Before, index, records, manifest and rejects sat side by side at OUT's top, and DuckDB's
`read_parquet('OUT/*.parquet')` read them as one table (wrong counts, then a schema error on
`GROUP BY split`). Oracles: the counts follow from the rows this test writes; each table's own
row count and columns are read from its file with pyarrow, not through the code under test.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from tests.shards.conftest import image_bytes, row, write_manifest
from vlmdata.core import layout
from vlmdata.filter.urls import filter_urls
from vlmdata.shards import write_shards

# (record key, image file, split): 7 images, "q1" and "q2" share one (VQAv2-like records on
# one image), "gone" names a file that is not there (a missing_file reject)
ROWS = [
    ("a", "0.jpg", "train"),
    ("b", "1.jpg", "train"),
    ("c", "2.jpg", "train"),
    ("q1", "3.jpg", "val"),
    ("q2", "3.jpg", "val"),
    ("d", "4.jpg", "test"),
    ("e", "5.jpg", "test"),
    ("gone", "missing.jpg", "test"),
]


def _sql(query: str) -> list[tuple]:
    return duckdb.sql(query).fetchall()


def _glob(out: Path, table: str) -> str:
    return f"read_parquet('{out}/{layout.pattern(table)}')"


@pytest.fixture(scope="module")
def shard_out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sql")
    images = root / "img"
    images.mkdir()
    for i in range(6):
        (images / f"{i}.jpg").write_bytes(image_bytes(i))
    rows = [row(k, p, s, source="vqav2", image_key=f"im_{Path(p).stem}") for k, p, s in ROWS]
    manifest = write_manifest(root / "input.parquet", rows, extras=("image_key",))
    out = root / "out"
    write_shards(manifest, images, out, duplicate_images="share", progress=False)
    return out


def test_each_table_pattern_reads_that_table_alone(shard_out):
    expected = {"index": 6, "records": 7, "manifest": len(ROWS), "rejects": 1}  # from ROWS
    assert sorted(shard_out.glob("*.parquet")) == []  # nothing for `OUT/*.parquet` to mix
    for table, rows in expected.items():
        [file] = shard_out.glob(layout.pattern(table))  # one file per table folder
        assert file == shard_out / layout.TABLES[table]
        assert pq.read_metadata(file).num_rows == rows, table
        assert _sql(f"SELECT count(*) FROM {_glob(shard_out, table)}") == [(rows,)], table
        columns = [c[0] for c in _sql(f"DESCRIBE SELECT * FROM {_glob(shard_out, table)}")]
        assert columns == pq.read_schema(file).names, table
    gone = _sql(f"SELECT key, reason FROM {_glob(shard_out, 'rejects')}")
    assert gone == [("gone", "missing_file")]


def test_per_split_counts_over_index_and_records(shard_out):
    kept = [(k, p, s) for k, p, s in ROWS if k != "gone"]
    records = sorted(Counter(s for _, _, s in kept).items())
    images = sorted(Counter(s for s in {p: s for _, p, s in kept}.values()).items())
    group = "SELECT split, count(*) FROM {} GROUP BY split ORDER BY split"
    assert _sql(group.format(_glob(shard_out, "records"))) == records  # train 3, val 2, test 2
    assert _sql(group.format(_glob(shard_out, "index"))) == images  # train 3, val 1, test 2
    joined = _sql(
        f"SELECT r.split, count(*) FROM {_glob(shard_out, 'records')} r "
        f"JOIN {_glob(shard_out, 'index')} i ON r.image_key = i.key GROUP BY r.split "
        "ORDER BY r.split"
    )
    assert joined == records  # every record's image is in the index


def test_filter_urls_output_tables_are_apart(tmp_path):
    """filter-urls writes kept rows and rejects, each in its own table folder."""
    tsv = tmp_path / "cc3m.tsv"
    lines = ["a cat\thttps://example.com/a.jpg", "a dog\tftp://example.com/b.jpg",
             "a bird\thttps://example.com/c.jpg"]  # fmt: skip
    tsv.write_text("\n".join(lines) + "\n")
    out = tmp_path / "urls"
    filter_urls(tsv, out, split="train")
    assert sorted(out.glob("*.parquet")) == []
    assert _sql(f"SELECT count(*) FROM {_glob(out, 'manifest')}") == [(2,)]
    assert _sql(f"SELECT reason FROM {_glob(out, 'rejects')}") == [("bad_scheme",)]
