"""Memory that does not grow with the rows (issue 23), at sizes CI can afford.

Each stage runs at n and 2n rows (inputs in the published shapes, tests/scale_inputs.py) with
small batches, and its peak traced memory (tracemalloc: Python objects and numpy arrays; Arrow
and polars buffers are not traced) may grow by at most GROWTH_PER_ROW bytes per added row: a
16-byte hash per key is compact state, a Python string in a set (~100 bytes) is not. The key
rules stay exact across batches: checked against oracles written from their definitions.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.scale_inputs import gen_cc3m, gen_llava, gen_wiki6m
from vlmdata.core import layout, manifest, parquet_rows, sorted_runs
from vlmdata.core.keyset import HashSet, hash128
from vlmdata.core.manifest import ManifestSink
from vlmdata.filter import urls
from vlmdata.ids import schemes
from vlmdata.sources import cc3m, oven_kb, read_source

N = 8_000
GROWTH_PER_ROW = 80  # bytes of traced peak per added row (a Python str in a set: ~100)


def traced_peak(fn) -> int:
    gc.collect()
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def assert_bounded(run, n: int = N, prepare=None) -> tuple[int, int]:
    """`run(rows, tag)` at n and 2n rows (after a warm-up, so imports are not counted);
    `prepare(rows, tag)`, untraced, writes the inputs when that is not streamed."""
    for rows, tag in ((n // 4, "warm"), (n, "one"), (2 * n, "two")):
        if prepare is not None:
            prepare(rows, tag)
    run(n // 4, "warm")
    one = traced_peak(lambda: run(n, "one"))
    two = traced_peak(lambda: run(2 * n, "two"))
    assert two - one <= GROWTH_PER_ROW * n, (one, two)
    return one, two


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(parquet_rows, "CHUNK_ROWS", 256)
    monkeypatch.setattr(ManifestSink, "KEY_BATCH", 256)
    monkeypatch.setattr(oven_kb, "BATCH", 256)
    monkeypatch.setattr(urls, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(cc3m, "BLOCK_BYTES", 1 << 16)
    monkeypatch.setattr(schemes, "CHUNK", 1024)


def test_manifest_cc3m_bounded(tmp_path, small_batches):
    def run(rows, tag):
        gen_cc3m(tmp_path / f"{tag}.tsv", rows)
        read_source("cc3m", [tmp_path / f"{tag}.tsv"], tmp_path / tag, split="train")

    assert_bounded(run)


def test_manifest_llava_bounded(tmp_path, small_batches):
    def run(rows, tag):
        gen_llava(tmp_path / f"{tag}.json", rows // 4)  # ~2.5 KB records: fewer of them
        read_source("llava", [tmp_path / f"{tag}.json"], tmp_path / tag)

    assert_bounded(run)


def test_manifest_oven_kb_bounded(tmp_path, small_batches):
    def run(rows, tag):
        gen_wiki6m(tmp_path / f"{tag}.jsonl", rows)
        read_source("oven-kb", [tmp_path / f"{tag}.jsonl"], tmp_path / tag)

    assert_bounded(run)


def test_filter_urls_bounded(tmp_path, small_batches):
    def run(rows, tag):
        gen_cc3m(tmp_path / f"{tag}.tsv", rows)
        urls.filter_urls(tmp_path / f"{tag}.tsv", tmp_path / tag, split="train")

    assert_bounded(run)


def test_build_ids_bounded(tmp_path, small_batches):
    from vlmdata.ids.build import build_ids

    def prepare(rows, tag):
        keys = [f"k{i:07d}" for i in range(rows)]
        table = pa.table({"key": keys, "split": ["train"] * rows, "texts": [["a b"]] * rows})
        pq.write_table(table, tmp_path / f"{tag}.parquet")

    def run(rows, tag):
        build_ids(tmp_path / f"{tag}.parquet", tmp_path / f"{tag}_ids.parquet", scheme="numeric")

    assert_bounded(run, n=4 * N, prepare=prepare)


def test_build_trie_holds_no_int64_array_over_all_nodes():
    """The build's traced peak stays within 3x of the flat input plus the finished arrays
    (int64 arrays sized to all nodes, held to the end, were 5x)."""
    from vlmdata.trie.core import Trie

    rng = np.random.default_rng(0)
    n, vocab = 200_000, 32_000
    lengths = rng.integers(2, 9, size=n)
    flat = rng.integers(0, vocab, size=int(lengths.sum())).astype(np.int32)
    box = {}
    peak = traced_peak(lambda: box.update(t=Trie.from_flat(flat, lengths, vocab_size=vocab,
                                                           eos_id=None)))  # fmt: skip
    assert box["t"].n_nodes > 0.8 * len(flat)  # random tokens: few shared prefixes
    assert peak <= 3 * (flat.nbytes + lengths.nbytes + box["t"].nbytes), (peak, box["t"].nbytes)


# -- the exact rules across batches ------------------------------------------------------------


def test_hash_set_membership_is_exact_against_a_python_set():
    rng = random.Random(0)
    words = [f"k{rng.randrange(50_000)}" for _ in range(30_000)]
    hs, ref = HashSet(), set()
    for i in range(0, len(words), 1000):
        chunk = list(dict.fromkeys(words[i : i + 1000]))  # distinct within the chunk
        found = hs.contains(*hash128(chunk))
        assert found.tolist() == [w in ref for w in chunk]
        new = [w for w, f in zip(chunk, found, strict=True) if not f]
        hs.add(*hash128(new))
        ref.update(new)
    assert len(hs) == len(ref)


def test_hash_set_merges_keep_every_hash_sorted():
    """After LSM merges (equal hi values included), each run is sorted by hi and the runs
    hold exactly the pairs added."""
    rng = np.random.default_rng(0)
    hs, added = HashSet(), []
    for size in [5, 3, 900, 1, 64, 64, 2000, 7] * 3:
        hi = rng.integers(0, 50, size, dtype=np.uint64)  # many equal hi values
        lo = rng.integers(0, 2**63, size, dtype=np.uint64)
        hs.add(hi, lo)
        added += list(zip(hi.tolist(), lo.tolist(), strict=True))
    assert len(hs._runs) < 8  # merged, not one run per add
    pairs = []
    for run_hi, run_lo in hs._runs:
        assert (np.diff(run_hi.astype(np.int64)) >= 0).all()
        pairs += list(zip(run_hi.tolist(), run_lo.tolist(), strict=True))
    assert sorted(pairs) == sorted(added)
    assert hs.contains(np.array([h for h, _ in added], np.uint64),
                       np.array([lo for _, lo in added], np.uint64)).all()  # fmt: skip


def unique_keys_oracle(keys: list[str]) -> list[str]:
    """The manifest rule from its definition: a key seen before gets the first `_N` (N = 1,
    2, ...) not taken yet, in input order."""
    taken: set[str] = set()
    out = []
    for key in keys:
        if key in taken:
            n = 1
            while f"{key}_{n}" in taken:
                n += 1
            key = f"{key}_{n}"
        taken.add(key)
        out.append(key)
    return out


@pytest.fixture
def disk_runs(monkeypatch):
    """Counts the hash runs written to disk (sorted_runs.DiskRun), to show a test used them."""
    made = []
    finish = sorted_runs.DiskRun.finish

    def counted(self):
        made.append(self.n)
        return finish(self)

    monkeypatch.setattr(sorted_runs.DiskRun, "finish", counted)
    return made


@pytest.mark.parametrize("disk_past", [1 << 30, 16 * 4])  # runs in memory / past 4 on disk
def test_unique_keys_across_batches_follow_the_rule(tmp_path, monkeypatch, disk_runs, disk_past):
    monkeypatch.setattr(manifest, "DISK_PAST", disk_past)
    monkeypatch.setattr(ManifestSink, "KEY_BATCH", 7)
    monkeypatch.setattr(ManifestSink, "SUFFIX_MEMORY", 3)  # hints forgotten: still exact
    rng = random.Random(1)
    keys = [rng.choice(["a", "b", "a_1", "b_2", "c", "a_1_1"]) for _ in range(300)]
    with ManifestSink(tmp_path) as sink:
        for key in keys:
            sink.keep({"key": key, "source": "t", "split": "s", "url": "http://x/",
                       "path": None, "texts": ["t"]})  # fmt: skip
    got = pl.read_parquet(tmp_path / layout.MANIFEST)["key"].to_list()
    assert got == unique_keys_oracle(keys)
    assert sink.renamed == sum(a != b for a, b in zip(keys, got, strict=True))
    assert bool(disk_runs) == (disk_past < 1 << 30)


@pytest.mark.parametrize("disk_past", [1 << 30, 16 * 2])
def test_oven_kb_duplicate_ids_across_batches(tmp_path, monkeypatch, disk_runs, disk_past):
    monkeypatch.setattr(oven_kb, "DISK_PAST", disk_past)
    monkeypatch.setattr(oven_kb, "BATCH", 5)
    ids = ["Q1", "Q2", "Q1", "Q3", "Q4", "Q5", "Q2", "Q6", "Q6", "Q7", "Q1"]
    lines = [{"wikidata_id": q, "wikipedia_title": f"T{i}", "wikipedia_content": "",
              "wikipedia_image_url": f"https://u/{i}.jpg"} for i, q in enumerate(ids)]  # fmt: skip
    path = tmp_path / "Wiki6M_ver_1_0.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    read_source("oven-kb", [path], tmp_path / "out")
    rejects = pl.read_parquet(tmp_path / "out" / layout.REJECTS)
    first = [i for i, q in enumerate(ids) if q not in ids[:i]]
    assert rejects["line"].to_list() == [i + 1 for i in range(len(ids)) if i not in first]
    assert set(rejects["reason"]) == {"duplicate_key"}
    entities = pl.read_parquet(tmp_path / "out/entities.parquet")
    assert entities["entity_name"].to_list() == [f"T{i}" for i in first]
    assert bool(disk_runs) == (disk_past < 1 << 30)


@pytest.mark.parametrize("fmt", ["cc3m", "manifest"])
def test_filter_urls_in_blocks_is_byte_identical_to_one_block(
    tmp_path, monkeypatch, disk_runs, fmt
):
    """Duplicates across blocks (URL hashes carried over, past 1 KB in hash runs on disk),
    row groups and bytes unchanged."""
    tsv = tmp_path / "Train_GCC-training.tsv"
    gen_cc3m(tsv, 6000, seed=3)
    src = tsv
    if fmt == "manifest":
        read_source("cc3m", [tsv], tmp_path / "m")
        src = tmp_path / "m" / layout.MANIFEST
    monkeypatch.setattr(urls, "BLOCK_BYTES", 1 << 30)
    monkeypatch.setattr(urls, "MANIFEST_BATCH", 1 << 30)
    monkeypatch.setattr(urls, "DISK_PAST", 1 << 30)
    urls.filter_urls(src, tmp_path / "one")
    assert not disk_runs
    monkeypatch.setattr(urls, "DISK_PAST", 1024)
    monkeypatch.setattr(urls, "BLOCK_BYTES", 1 << 13)  # ~60 rows a block
    monkeypatch.setattr(urls, "MANIFEST_BATCH", 61)
    monkeypatch.setattr(urls, "GROUP_ROWS", 1000)
    many = urls.filter_urls(src, tmp_path / "many")
    assert many.rejects["duplicate_url"] > 30
    assert len(disk_runs) > 3
    for name in (layout.MANIFEST, layout.REJECTS):
        a, b = pq.read_table(tmp_path / "one" / name), pq.read_table(tmp_path / "many" / name)
        assert a.equals(b)
        assert pq.ParquetFile(tmp_path / "many" / name).metadata.row_group(0).num_rows == min(
            1000, a.num_rows
        )
    monkeypatch.setattr(urls, "GROUP_ROWS", 1 << 20)
    urls.filter_urls(src, tmp_path / "many2")
    for name in (layout.MANIFEST, layout.REJECTS):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "many2" / name).read_bytes()


def test_rows_writer_file_is_the_one_write_of_each_row_group(tmp_path):
    """Rows buffered as Arrow chunks give the bytes of writing each group's rows at once."""
    schema = pa.schema([("key", pa.string()), ("texts", pa.list_(pa.string()))])
    rng = random.Random(2)
    rows = [{"key": f"k{i}", "texts": ["w" * rng.randrange(50)] * rng.randrange(1, 4)}
            for i in range(10_000)]  # fmt: skip
    with parquet_rows.RowsWriter(tmp_path / "a.parquet", schema, batch_rows=3000) as w:
        for r in rows[:5000]:
            w.write(r)
        table = pa.Table.from_pylist(rows[5000:], schema=schema)
        for i in range(0, table.num_rows, 777):  # odd-sized tables: re-cut into groups
            w.write_table(table.slice(i, 777))
    with pq.ParquetWriter(tmp_path / "b.parquet", schema) as ref:
        for i in range(0, len(rows), 3000):
            ref.write_table(pa.Table.from_pylist(rows[i : i + 3000], schema=schema))
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_fast_tokenizer_path_gives_the_transformers_ids(tmp_path):
    from vlmdata.core.tokenizer import train_tokenizer
    from vlmdata.ids.tokens import _backend, identifier_sequences

    names = [f"Entity {i} ({w})" for i, w in enumerate(["Paris", "Zürich", "東京", "", " a"])]
    tok = train_tokenizer(names * 20, tmp_path / "tok", vocab_size=300)
    tok.add_tokens(["<new_piece>"])
    names.append("x<new_piece>y")
    assert _backend(tok) is not None
    (flat, lengths), = identifier_sequences(tok, names, prefix="id ")  # fmt: skip
    want = [tok("id " + s, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            for s in names]  # fmt: skip
    assert (
        np.split(flat, np.cumsum(lengths)[:-1])
        and [list(x) for x in np.split(flat, np.cumsum(lengths)[:-1])] == want
    )
    assert flat.dtype == np.int32
    tok.backend_tokenizer.enable_truncation(4)  # the backend would truncate: not used
    assert _backend(tok) is None


def test_generic_tokenizer_loads_without_torch_as_autotokenizer_would(tmp_path):
    """build-trie / build-ids need no torch: a generic fast tokenizer directory is loaded by
    its own class (no AutoTokenizer import, which pulls torch in) into the same object."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from vlmdata.core.tokenizer import load_tokenizer, train_tokenizer

    texts = [f"Entity {i} (Zürich) 東京" for i in range(200)]
    tok = train_tokenizer(texts, tmp_path / "tok", vocab_size=300, extra_special_tokens=["<e>"])
    tok.add_tokens(["<piece_1>"])
    tok.save_pretrained(str(tmp_path / "tok"))
    ours, auto = load_tokenizer(tmp_path / "tok"), AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert type(ours) is type(auto) and len(ours) == len(auto) == len(tok)
    assert ours.special_tokens_map == auto.special_tokens_map
    assert (ours.eos_token_id, ours.pad_token_id) == (auto.eos_token_id, auto.pad_token_id)
    probe = texts[:3] + ["x<piece_1>y<e>", ""]
    assert ours(probe)["input_ids"] == auto(probe)["input_ids"]
    load = f"load_tokenizer({str(tmp_path / 'tok')!r})"
    code = f"import sys; from vlmdata.core.tokenizer import load_tokenizer; {load}; "
    code += "print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("content", ["", "a\tb\tc\n", "cap\tftp://x/y\n"])
def test_filter_urls_without_kept_rows_writes_one_empty_row_group(tmp_path, content):
    """No kept row (or no row at all): like one `pq.write_table` of the empty table (the
    code before streaming; its files were compared byte for byte), one row group of 0 rows."""
    tsv = tmp_path / "t.tsv"
    tsv.write_text(content)
    urls.filter_urls(tsv, tmp_path / "out", split="train")
    kept = pq.ParquetFile(tmp_path / "out" / layout.MANIFEST).metadata
    assert (kept.num_rows, kept.num_row_groups) == (0, 1)
    rejects = pq.ParquetFile(tmp_path / "out" / layout.REJECTS).metadata
    assert (rejects.num_rows, rejects.num_row_groups) == (len(content.splitlines()), 1)


FILTER_URLS_ARROW = """
import sys
import pyarrow as pa
from vlmdata.filter.urls import filter_urls
filter_urls(sys.argv[1], sys.argv[2], split="train")
print(pa.default_memory_pool().max_memory())
"""


def test_filter_urls_holds_one_column_of_its_row_group(tmp_path):
    """Arrow memory (which tracemalloc does not see) while filter-urls writes its one row group
    of ~100k rows: one column at a time (core/parquet_splice.py), so the pool's peak stays
    below the group's Arrow bytes (0.71x measured); writing the group whole held 1.5x."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    gen_cc3m(tmp_path / "in.tsv", 100_000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    args = [
        sys.executable,
        "-c",
        FILTER_URLS_ARROW,
        str(tmp_path / "in.tsv"),
        str(tmp_path / "out"),
    ]
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    manifest = pq.ParquetFile(tmp_path / "out" / layout.MANIFEST)
    assert manifest.metadata.num_row_groups == 1
    group = manifest.read_row_group(0).nbytes
    assert group > 15_000_000
    assert int(out.stdout) < 0.9 * group, (int(out.stdout), group)


# `shard` holds per row and per image sample only numbers and hashes in numpy arrays (image
# numbers, first / last rows, the placed keys' and image hashes' 128-bit hashes, which sample
# each row joined: 143 traced bytes an image here) while the image facts, KEY.json / KEY.txt
# and the table columns wait on disk (issue 23). Main before measured 1,364 bytes an image in
# this test (the gate's dicts, a Planned sample with its first Record and Prepared, every
# shard job's entries); this bound catches a return of any Python object per image.
SHARD_GROWTH_PER_IMAGE = 400


@pytest.fixture
def small_shard_batches(monkeypatch):
    from vlmdata.shards import placement, plan, sealing, tables, writer

    monkeypatch.setattr(tables.ArrowRows, "CHUNK_ROWS", 256)
    monkeypatch.setattr(writer._ManifestRows, "ROWS", 256)
    monkeypatch.setattr(placement.Placer, "WINDOW", 256)
    monkeypatch.setattr(sealing, "WINDOW", 256)
    monkeypatch.setattr(plan, "LAYOUT_WINDOW", 256)


def test_shard_planning_memory_per_image(tmp_path, small_shard_batches):
    from tests.scale_inputs import gen_shard_folder
    from vlmdata.shards.writer import write_shards

    n = 1_000
    for images, tag in ((n // 4, "warm"), (n, "one"), (2 * n, "two")):
        gen_shard_folder(tmp_path / tag, images)

    def run(tag):  # 100 a shard: a shard's samples (held while it is laid out) are not n's
        folder = tmp_path / tag
        write_shards(folder / "manifest.parquet", folder, tmp_path / f"out_{tag}",
                     progress=False, samples_per_shard=100)  # fmt: skip

    run("warm")
    one = traced_peak(lambda: run("one"))
    two = traced_peak(lambda: run("two"))
    assert two - one <= SHARD_GROWTH_PER_IMAGE * n, (one, two)


def numpy_bytes(obj, skip: tuple[str, ...], seen: set[int] | None = None) -> int:
    """Bytes of the numpy arrays (their own buffers) reachable from obj's attributes, lists,
    tuples and dicts, except the attributes named in `skip`."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes if obj.base is None else numpy_bytes(obj.base, skip, seen)
    if isinstance(obj, dict):
        items = list(obj.values())
    elif isinstance(obj, list | tuple | set):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = [v for k, v in vars(obj).items() if k not in skip]
    else:
        return 0
    return sum(numpy_bytes(v, skip, seen) for v in items)


def test_placement_holds_eight_bytes_a_row(tmp_path, small_shard_batches, monkeypatch):
    """What placement keeps in memory over every row is two int32s (each row's sample, each
    image's sample): the key set and hash map (runs past DISK_PAST), the samples' facts, each
    row's image and each image's first and last row wait on disk. Counted after placement
    at n and 4n images, from every numpy array the Placer reaches: at most 10 bytes more
    per added image (before: ~130, all in memory)."""
    from tests.scale_inputs import gen_shard_folder
    from vlmdata.shards import placement
    from vlmdata.shards.writer import write_shards

    monkeypatch.setattr(placement, "DISK_PAST", 4096)
    monkeypatch.setattr(sorted_runs, "SEGMENT_BYTES", 4096)
    held: dict[int, int] = {}
    run = placement.Placer.run

    def counted_run(self, progress):
        run(self, progress)
        skip = ("rows", "refs", "source", "gate", "engine", "opts")  # not the plan's state
        held[len(self.sample_of_row)] = numpy_bytes(self, skip)
        assert self.keys.disk_bytes and self.by_hash.disk_bytes

    monkeypatch.setattr(placement.Placer, "run", counted_run)
    for images in (1_000, 4_000):
        folder = tmp_path / str(images)
        gen_shard_folder(folder, images)
        write_shards(folder / "manifest.parquet", folder, tmp_path / f"out{images}",
                     progress=False, samples_per_shard=100)  # fmt: skip
    (n, one), (n4, four) = sorted(held.items())
    assert four - one <= 10 * (n4 - n), (held, (four - one) / (n4 - n))


@pytest.mark.parametrize("options", [{}, {"every_text": True, "duplicate_images": "share"}])
def test_shard_in_small_batches_is_byte_identical(tmp_path, monkeypatch, options):
    """Rows read and records / index rows buffered 256 at a time give the same files as one
    batch: every Parquet table is written from one chunk per column, as from a whole list."""
    from tests.scale_inputs import gen_shard_folder
    from vlmdata.shards import tables, writer

    folder = tmp_path / "in"
    gen_shard_folder(folder, 700, seed=3)
    args = (folder / "manifest.parquet", folder)
    writer.write_shards(*args, tmp_path / "whole", progress=False, samples_per_shard=50, **options)
    from vlmdata.shards import placement, plan, sealing

    monkeypatch.setattr(tables.ArrowRows, "CHUNK_ROWS", 256)
    monkeypatch.setattr(writer._ManifestRows, "ROWS", 256)
    monkeypatch.setattr(tables.ArrowRows, "MEMORY_BYTES", 1000)  # table columns wait on disk
    monkeypatch.setattr(placement.Placer, "WINDOW", 300)  # two batches a window
    monkeypatch.setattr(placement.Placer, "PENDING", 2)  # checks let go: made again
    monkeypatch.setattr(placement, "DISK_PAST", 1000)  # hash runs past 1,000 bytes on disk
    monkeypatch.setattr(sorted_runs, "SEGMENT_BYTES", 16 * 5)  # read a few hashes at a time
    monkeypatch.setattr(sealing, "WINDOW", 70)
    monkeypatch.setattr(plan, "LAYOUT_WINDOW", 90)
    writer.write_shards(*args, tmp_path / "small", progress=False, samples_per_shard=50, **options)
    whole = sorted(p.relative_to(tmp_path / "whole") for p in (tmp_path / "whole").rglob("*"))
    small = sorted(p.relative_to(tmp_path / "small") for p in (tmp_path / "small").rglob("*"))
    assert whole == small and len(whole) > 20
    for rel in whole:
        a, b = tmp_path / "whole" / rel, tmp_path / "small" / rel
        if a.is_file():
            assert a.read_bytes() == b.read_bytes(), rel
    records = pq.read_table(tmp_path / "small" / layout.RECORDS)
    assert records.num_rows > 700  # records sharing an image are all there


@pytest.mark.parametrize("scheme", ["numeric", "string", "atomic"])
def test_position_identifiers_are_made_once(scheme):
    """The position schemes' identifiers (`schemes.position_id_array`, `PositionIds.take`)
    are the formats' strings (oracle: each position formatted by the scheme's definition,
    across the digit-count steps 9 -> 10 -> 100 ...), and the column is held once while
    made: buffers sized from digit counts, filled a chunk at a time (joining formatted
    chunks held it twice)."""
    fmt = {"numeric": lambda p: " ".join(str(p)), "string": str,
           "atomic": lambda p: f"image_{p}"}[scheme]  # fmt: skip
    pos = schemes.positions(1001, None)
    got = schemes.position_id_array(scheme, 1001)
    assert got.to_pylist() == [fmt(int(p)) for p in pos] and got.null_count == 0
    ids = schemes.PositionIds(scheme, 300, seed=4)
    parts = [ids.take(k) for k in (0, 1, 128, 171)]
    want = [fmt(int(p)) for p in schemes.positions(300, 4)]
    assert [s for part in parts for s in part.to_pylist()] == want
    n = 1 << 19
    made: list = []
    pool = pa.proxy_memory_pool(pa.system_memory_pool())  # Arrow's allocations, counted apart
    previous = pa.default_memory_pool()
    pa.set_memory_pool(pool)
    try:
        peak = traced_peak(lambda: made.append(schemes.position_id_array(scheme, n, seed=1)))
    finally:
        pa.set_memory_pool(previous)
    size = made[0].nbytes
    assert pool.max_memory() == 0  # numpy buffers wrapped, no Arrow copy (main: 2 columns)
    positions = 4 * n  # the permutation itself (int32)
    assert peak - positions < 1.5 * size + (6 << 20), (peak - positions) / size


def test_system_arrow_pool_is_used_inside_and_restored_after():
    from vlmdata.core.heap import lean_allocators, release_free_heap, system_arrow_pool

    before = pa.default_memory_pool().backend_name
    with system_arrow_pool():
        assert pa.default_memory_pool().backend_name == "system"
        used = pa.system_memory_pool().bytes_allocated()
        array = pa.array(range(1 << 16), pa.int64())  # built by Arrow: from the default pool
        assert pa.system_memory_pool().bytes_allocated() >= used + array.nbytes
    assert pa.default_memory_pool().backend_name == before
    with lean_allocators():
        assert pa.default_memory_pool().backend_name == "system"
    release_free_heap()  # glibc: malloc_trim; elsewhere nothing
    assert array.to_numpy()[-1] == (1 << 16) - 1


@pytest.mark.parametrize("user", [None, "mimalloc"])
def test_the_cli_gives_arrow_the_system_pool_unless_the_user_chose_one(user):
    """`vlmdata` runs with glibc's pool: Arrow's mimalloc kept freed pages and a 10^6-row
    download peaked ~50 MB higher (RESULTS.md). A pool the user names is kept. In a fresh
    interpreter: the pool is chosen when pyarrow is first used."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    if user:
        env["ARROW_DEFAULT_MEMORY_POOL"] = user
    code = "import cli.vlmdata, pyarrow as pa; print(pa.default_memory_pool().backend_name)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    assert out == [user or "system"]
