"""Where each table lives in an output folder: one folder per table, the folder is the table.

`vlmdata manifest` / `filter-urls` / `shard` / `download` / `ingest-img2dataset` write several
Parquet tables into one OUT. Side by side at OUT's top, `read_parquet('OUT/*.parquet')` in
DuckDB (or a Spark / polars glob) reads them all as one table: wrong counts, then a schema error.
So each table gets its own folder, as in the Hive / DuckDB / Spark convention where a folder is
a table: `OUT/index/*.parquet` is the index and nothing else. Every reader and writer takes the
paths from here; they are relative to OUT (a local folder or an object-store URL) and use "/".
"""

from __future__ import annotations

INDEX = "index/index.parquet"  # one row per stored sample (image), shard order
RECORDS = "records/records.parquet"  # one row per record: what training and evaluation iterate
MANIFEST = "manifest/manifest.parquet"  # contract 1: a source reader's / filter's rows
REJECTS = "rejects/rejects.parquet"  # contract 2: dropped rows and images, with reasons
TEXT_ONLY = "text_only/text_only.parquet"  # LLaVA records without an image

TABLES: dict[str, str] = {
    "index": INDEX,
    "records": RECORDS,
    "manifest": MANIFEST,
    "rejects": REJECTS,
    "text_only": TEXT_ONLY,
}


def pattern(table: str) -> str:
    """The glob that reads `table` alone (e.g. DuckDB `read_parquet('OUT/index/*.parquet')`)."""
    return f"{TABLES[table].rsplit('/', 1)[0]}/*.parquet"
