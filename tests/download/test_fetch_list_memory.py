"""`download`'s fetch list read for its keys and URLs only, img2dataset's input in parts
(issue 23).

The fetch fingerprint and img2dataset's URL list need two columns of WORK/fetch_rows.parquet;
reading whole slices also decoded every row's texts (~1 KB a row in
benchmarks/bench_download_memory.py: 64 MB a 65,536-row slice, twice over with the slicing).
img2dataset reads each input file whole, so the URL list is a folder of parts of whole raw
shards. These tests check that the Arrow memory no longer depends on the texts, that the
fingerprint is its definition, and that img2dataset makes the same raw shards from the parts.
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
RAW = 300  # raw shard size (img2dataset's number_sample_per_shard)


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


def key_url_table(rows: ManifestFile) -> pa.Table:
    """The oracle: url and key of every row, in order, as img2dataset's input names them."""
    whole = pq.read_table(rows.path, columns=["url", "key"])
    return whole.rename_columns(["url", KEY_COLUMN]).combine_chunks()


def test_url_list_parts_hold_whole_raw_shards(tmp_path, small_slices):
    """img2dataset's input is written in parts of a whole number of raw shards (SLICE rows
    rounded down to RAW: 900), which together are every row's url and key in order."""
    rows = fetch_rows(tmp_path / "fetch_rows.parquet", 64)
    folder = tmp_path / "url_list"
    pipeline.write_url_list(rows, folder, RAW)
    parts = sorted(folder.iterdir())
    assert [p.name for p in parts] == [f"{i:06d}.parquet" for i in range(7)]
    tables = [pq.read_table(p) for p in parts]
    assert [t.num_rows for t in tables] == [900] * 6 + [600]
    assert pa.concat_tables(tables).combine_chunks().equals(key_url_table(rows))
    pipeline.write_url_list(rows, folder, 5000)  # rewritten whole: one part of 5,000 + one
    assert [pq.read_metadata(p).num_rows for p in sorted(folder.iterdir())] == [5000, 1000]


def test_img2dataset_reads_a_part_at_a_time_into_the_same_shards(tmp_path, small_slices,
                                                                 monkeypatch):  # fmt: skip
    """img2dataset's own Reader over the parts makes the raw shards (ids and rows) it makes
    from one file of every row, reading one part at a time (the file whole before)."""
    from img2dataset import reader as i2d_reader

    rows = fetch_rows(tmp_path / "fetch_rows.parquet", 64)
    pipeline.write_url_list(rows, tmp_path / "url_list", RAW)
    pq.write_table(key_url_table(rows), tmp_path / "one_file.parquet")
    read_rows = []
    read_table = i2d_reader.pq.read_table

    def counted(*args, **kwargs):
        table = read_table(*args, **kwargs)
        read_rows.append(table.num_rows)
        return table

    monkeypatch.setattr(i2d_reader.pq, "read_table", counted)

    def shards(url_list: Path) -> list[tuple[int, pa.Table]]:
        tmp = tmp_path / f"tmp_{url_list.stem}"
        tmp.mkdir()
        reader = i2d_reader.Reader(str(url_list), "parquet", "url", None, None, None,
                                   [KEY_COLUMN], RAW, set(), str(tmp))  # fmt: skip
        return [(i, pa.ipc.open_file(f).read_all()) for i, f in reader]

    ours = shards(tmp_path / "url_list")
    assert max(read_rows) == 900
    read_rows.clear()
    theirs = shards(tmp_path / "one_file.parquet")
    assert read_rows == [ROWS]
    assert [i for i, _ in ours] == [i for i, _ in theirs] == list(range(20))
    assert all(a.equals(b) for (_, a), (_, b) in zip(ours, theirs, strict=True))


def test_key_url_reads_do_not_hold_the_texts(tmp_path, small_slices):
    """Arrow's peak while fingerprinting and writing the URL list is the same whether each
    row's text is 16 bytes or 4 KB (a slice's texts: 4 MB); reading whole slices held them."""
    peaks = {}
    for text_bytes in (16, 4096):
        rows = fetch_rows(tmp_path / f"rows{text_bytes}.parquet", text_bytes)
        out = tmp_path / f"urls{text_bytes}"

        def both(rows: ManifestFile = rows, out: Path = out) -> None:
            pipeline._fetch_fingerprint(rows, FetchOptions())
            pipeline.write_url_list(rows, out, RAW)

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


def test_fetch_list_filters_the_kept_rows_a_batch_at_a_time(tmp_path, monkeypatch):
    """`_fetch_list` over a source manifest whose 6,000 rows carry 4 KB texts, in one row group
    (as filter-urls writes its output): the fetch list is every row with a fetchable URL in
    manifest order, written a FETCH_ROWS_BATCH at a time (pyarrow's reader holds ~3x a batch:
    a 65,536-row batch of 1 KB captions held 267 MB of Arrow); rows without a URL are rejected
    as `missing_url`, the ftp:// ones by filter-urls as a bad scheme, none lost."""
    monkeypatch.setattr(pipeline, "FETCH_ROWS_BATCH", 500)
    src = tmp_path / "src"
    (src / "manifest").mkdir(parents=True)
    schema = manifest_schema()

    def url(i: int) -> str | None:
        return None if i % 50 == 7 else f"ftp://h/{i}.jpg" if i % 50 == 8 else f"http://h/{i}.jpg"

    rows = [{"key": f"cc3m_{i:08d}", "source": "cc3m", "split": "val", "url": url(i),
             "path": None, "texts": [f"{i:08d}" + "x" * 4088]} for i in range(ROWS)]  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), src / "manifest/manifest.parquet")
    work = tmp_path / "work"
    work.mkdir()
    fetch, url_rejects = pipeline._fetch_list(src, work, allow_private=True, denylist=None)
    written = pq.ParquetFile(work / "fetch_rows.parquet")
    groups = [written.metadata.row_group(g).num_rows for g in range(written.num_row_groups)]
    assert max(groups) <= 500
    want = [r["key"] for r in rows if r["url"] and r["url"].startswith("http")]
    assert written.read(columns=["key"]).column("key").to_pylist() == want
    assert fetch.num_rows == len(want) == ROWS - 2 * ROWS // 50
    no_url = pq.read_table(work / "no_url.parquet")
    assert no_url.column("reason").to_pylist() == ["missing_url"] * (ROWS // 50)
    assert pq.read_metadata(url_rejects).num_rows == ROWS // 50


def test_raw_refs_hold_a_shard_number_a_row_and_take_the_key_from_its_record(tmp_path):
    """A fetched row's ref is (raw shard, its manifest key): the key comes from the row's own
    Record when the plan needs it, so RawRefs hold an int32 per row and no key column (at
    10^6 CC3M-like rows that column was 19 MB of the repack's peak)."""
    import numpy as np

    from vlmdata.core.record import records_from_arrow
    from vlmdata.download.repack import RawRefs
    from vlmdata.shards.planrows import image_ref

    table = pq.read_table(fetch_rows(tmp_path / "rows.parquet", 10).path).slice(0, 3)
    records = records_from_arrow(table)
    refs = RawRefs(np.array([0, 0, 4], dtype=np.int32))
    assert vars(refs).keys() == {"shard_ids"} and refs.shard_ids.dtype == np.int32
    keys = table.column("key").to_pylist()
    assert [image_ref(refs, i, r) for i, r in enumerate(records)] == [
        (0, keys[0]), (0, keys[1]), (4, keys[2])
    ]  # fmt: skip
    listed = [("a", 1), ("b", 2), ("c", 3)]  # ingest's refs: a list, row i's is refs[i]
    assert [image_ref(listed, i, r) for i, r in enumerate(records)] == listed
    assert [image_ref(None, i, r) for i, r in enumerate(records)] == [r.path for r in records]
