"""The planned writer's tables (index.parquet, records.parquet) written a column of a row group
at a time: the bytes of pyarrow's own whole-table write (the oracle), and less Arrow memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.shards.tables import ArrowRows

SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("shard", pa.string()),
        ("size", pa.int64()),
        ("width", pa.int32()),
        ("texts", pa.list_(pa.string())),
        ("url", pa.string()),
        ("score", pa.float64()),
    ],
    metadata={b"vlmdata": b'{"params": 1}'},
)


def _row(i: int) -> dict:
    return {
        "key": f"{i:09d}",
        "shard": f"train/{i // 700:06d}.tar",
        "size": 1536 + (i * 37) % 5000,
        "width": None if i % 11 == 0 else 8 + i % 500,
        "texts": None if i % 13 == 0 else [f"caption {i} é"] * (i % 4),
        "url": None if i % 3 == 0 else f"http://img{i % 97}.example.com/{i}.jpg",
        "score": i / 7,
    }


@pytest.mark.parametrize("n", [0, 1, 999, 1000, 2500])
def test_write_parquet_is_pyarrows_whole_table_write(tmp_path, monkeypatch, n):
    """Groups of GROUP_ROWS (1,000 here, so 2,500 rows make three, the last short), chunks
    of 300 rows spilled to disk past 2 KB: the same file as pq.write_table of all rows."""
    monkeypatch.setattr(ArrowRows, "GROUP_ROWS", 1000)
    monkeypatch.setattr(ArrowRows, "CHUNK_ROWS", 300)
    monkeypatch.setattr(ArrowRows, "MEMORY_BYTES", 2048)
    rows = [_row(i) for i in range(n)]
    held = ArrowRows(SCHEMA)
    for row in rows:
        held.append(row)
    held.write_parquet(tmp_path / "spliced.parquet", compression="zstd")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    pq.write_table(table, tmp_path / "whole.parquet", row_group_size=1000, compression="zstd")
    assert (tmp_path / "spliced.parquet").read_bytes() == (tmp_path / "whole.parquet").read_bytes()
    assert pq.read_table(tmp_path / "spliced.parquet").to_pylist() == rows
    assert not list(tmp_path.glob("*.column"))  # no scratch file left


ARROW_PEAK = """
import sys
import pyarrow as pa
from tests.shards.test_tables_spliced import SCHEMA, _row
from vlmdata.shards.tables import ArrowRows
rows = ArrowRows(SCHEMA)
for i in range(int(sys.argv[2])):
    rows.append(_row(i))
if sys.argv[3] == "spliced":
    rows.write_parquet(sys.argv[1], compression="zstd")
else:
    import pyarrow.parquet as pq
    pq.write_table(rows.table(), sys.argv[1], compression="zstd")
print(pa.default_memory_pool().max_memory())
"""


def test_a_table_is_written_a_column_at_a_time(tmp_path):
    """Arrow's peak while 150,000 and 300,000 rows are held and written (ArrowRows spills its
    columns to disk): the same at both sizes (37.3 and 38.5 MB measured), where rebuilding
    the table and writing it whole grows with the rows (50.0 and 68.3 MB: 1.37x)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}

    def peak(n: int) -> int:
        args = [sys.executable, "-c", ARROW_PEAK, str(tmp_path / f"{n}.parquet"), str(n), "spliced"]
        return int(subprocess.run(args, capture_output=True, text=True, check=True,
                                  env=env).stdout)  # fmt: skip

    one, two = peak(150_000), peak(300_000)
    assert two < 1.15 * one, (one, two)
    assert pq.ParquetFile(tmp_path / "300000.parquet").metadata.num_rows == 300_000
