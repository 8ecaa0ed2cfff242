"""`download`'s fetch list read for its keys and URLs only (issue 23).

The fetch fingerprint and img2dataset's URL list need two columns of WORK/fetch_rows.parquet;
reading whole slices also decoded every row's texts (~1 KB a row in
benchmarks/bench_download_memory.py: 64 MB a 65,536-row slice, twice over with the slicing).
These tests check that their Arrow memory no longer depends on the texts, and that the
fingerprint and urls.parquet are what the whole-slice reading gave, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core.manifest import manifest_schema
from vlmdata.download import pipeline
from vlmdata.download.img2dataset_run import KEY_COLUMN, FetchOptions
from vlmdata.shards.planrows import ManifestFile

ROWS = 6000
SLICE = 1024  # ROWS_AT_ONCE in these tests: slices cross the file's uneven row groups
BATCHES = (700, 1300, 1000, 2400, 600)  # _fetch_list writes one row group per filtered batch


def fetch_rows(path: Path, text_bytes: int) -> ManifestFile:
    """A fetch_rows.parquet as `_fetch_list` writes it (manifest columns, one write_batch per
    batch), every row's one text `text_bytes` long."""
    schema = manifest_schema()
    start = 0
    with pq.ParquetWriter(path, schema) as out:
        for n in BATCHES:
            ids = range(start, start + n)
            out.write_batch(pa.RecordBatch.from_pydict({
                "key": [f"cc3m_{i:08d}" for i in ids],
                "source": ["cc3m"] * n,
                "split": ["val"] * n,
                "url": [f"http://127.0.0.1:9/img/{i}.jpg" for i in ids],
                "path": [None] * n,
                "texts": [[f"{i:08d}" + "x" * (text_bytes - 8)] for i in ids],
            }, schema=schema))  # fmt: skip
            start += n
    assert start == ROWS
    return ManifestFile.open(path)


def arrow_peak(fn) -> int:
    """The most bytes Arrow's default pool held while `fn` ran."""
    pool = pa.proxy_memory_pool(pa.system_memory_pool())
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        fn()
    finally:
        pa.set_memory_pool(previous)
    return pool.max_memory()


@pytest.fixture
def small_slices(monkeypatch):
    monkeypatch.setattr(pipeline, "ROWS_AT_ONCE", SLICE)


def test_fingerprint_is_the_key_url_lines_hashed(tmp_path, small_slices):
    """The definition: sha256 of "key TAB url NEWLINE" per row in order, then the options."""
    rows = fetch_rows(tmp_path / "fetch_rows.parquet", 64)
    fetch = FetchOptions()
    h = hashlib.sha256()
    for i in range(ROWS):
        h.update(f"cc3m_{i:08d}\thttp://127.0.0.1:9/img/{i}.jpg\n".encode())
    h.update(json.dumps(fetch.fingerprint_fields(), sort_keys=True).encode())
    assert pipeline._fetch_fingerprint(rows, fetch) == h.hexdigest()


def test_url_list_is_byte_identical_to_whole_slices(tmp_path, small_slices):
    """urls.parquet as the earlier code wrote it: every column of each slice read, then url
    and key selected (same row groups, same chunks, so the same pages)."""
    rows = fetch_rows(tmp_path / "fetch_rows.parquet", 64)
    ours = tmp_path / "urls.parquet"
    pipeline.write_url_list(rows, ours)
    theirs = tmp_path / "urls_whole_slices.parquet"
    with pq.ParquetWriter(theirs, pa.schema([("url", pa.string()), (KEY_COLUMN, pa.string())])
                          ) as out:  # fmt: skip
        for part in rows.slices(SLICE):
            out.write_table(part.select(["url", "key"]).rename_columns(["url", KEY_COLUMN]))
    assert ours.read_bytes() == theirs.read_bytes()
    meta = pq.ParquetFile(ours).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [SLICE] * 5 + [880]


def test_key_url_reads_do_not_hold_the_texts(tmp_path, small_slices):
    """Arrow's peak while fingerprinting and writing the URL list is the same whether each
    row's text is 16 bytes or 4 KB (a slice's texts: 4 MB); reading whole slices held them."""
    peaks = {}
    for text_bytes in (16, 4096):
        rows = fetch_rows(tmp_path / f"rows{text_bytes}.parquet", text_bytes)
        out = tmp_path / f"urls{text_bytes}.parquet"

        def both(rows: ManifestFile = rows, out: Path = out) -> None:
            pipeline._fetch_fingerprint(rows, FetchOptions())
            pipeline.write_url_list(rows, out)

        peaks[text_bytes] = arrow_peak(both)
    assert peaks[4096] < peaks[16] + (512 << 10), peaks
    assert peaks[16] < SLICE * 4096 // 2, peaks  # far below one slice's texts


def test_output_fingerprint_hashes_files_a_block_at_a_time(tmp_path):
    """Same value as hashing each input's whole bytes (the definition: sha256 of the fetch
    fingerprint, each file's bytes or "-" when absent, the shard options' JSON), without
    holding a file: 24 MB of inputs hashed under 4 MB of traced memory."""
    import tracemalloc

    from vlmdata.shards.options import ShardOptions

    big = tmp_path / "manifest.parquet"
    big.write_bytes(bytes(range(256)) * (24 << 12))  # 24 MiB
    small, absent = tmp_path / "rejects.parquet", tmp_path / "none.parquet"
    small.write_bytes(b"rejects")
    shard = ShardOptions()
    h = hashlib.sha256(b"fp")
    for data in (big.read_bytes(), b"rejects", b"-"):
        h.update(data)
    h.update(json.dumps(shard.params(), sort_keys=True).encode())
    tracemalloc.start()
    try:
        got = pipeline._output_fingerprint("fp", [big, small, absent], shard)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got == h.hexdigest()
    assert peak < 4 << 20, peak
