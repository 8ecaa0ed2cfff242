"""ids.parquet written a group and a column at a time (vlmdata/ids/write.py): the bytes of one
`pq.write_table` of the whole map (the oracle: what build-ids wrote before), with the keys and
splits read back from the source in `pq.read_table`'s chunks."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core.errors import DataError
from vlmdata.ids import schemes, source
from vlmdata.ids.build import build_ids


def whole_table_map(src, out, scheme: str, seed: int | None, rows: int) -> None:
    """The map as one table and one `pq.write_table` (contract 4's columns and metadata)."""
    images = pq.read_table(src, columns=["key", "split"])
    table = pa.table({
        "key": images.column("key"),
        "split": images.column("split"),
        "identifier": schemes.position_id_array(scheme, rows, seed),
        "tokens": pa.nulls(rows, pa.list_(pa.int32())),
    })  # fmt: skip
    meta = {"scheme": scheme, "params": "{}", "seed": "" if seed is None else str(seed),
            "tokenizer": "", "stats": json.dumps({"rows": rows})}  # fmt: skip
    pq.write_table(table.replace_schema_metadata({k: v.encode() for k, v in meta.items()}),
                   out, compression="zstd")  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "group_rows", "scheme", "seed"),
    [
        (1_100_000, 300_000, "numeric", 0),  # two map groups; source chunks cut at 131,072
        (5_000, 700, "string", None),  # many small source groups
        (0, None, "numeric", 1),  # an empty source: one empty group
    ],
)
def test_position_map_is_the_whole_table_write(tmp_path, rows, group_rows, scheme, seed):
    keys = pa.array([f"k{i:07d}" for i in range(rows)], pa.string())
    splits = pa.array(["train", "val", None] * (rows // 3) + ["test"] * (rows % 3), pa.string())
    src = tmp_path / "manifest.parquet"
    table = pa.table({"key": keys, "split": splits, "texts": pa.nulls(rows, pa.list_(pa.string()))})
    pq.write_table(table, src, row_group_size=group_rows)
    build_ids(src, tmp_path / "ids.parquet", scheme=scheme, seed=seed)
    whole_table_map(src, tmp_path / "ref.parquet", scheme, seed, rows)
    assert (tmp_path / "ids.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.parquet", "manifest.parquet",
                                                          "ref.parquet"]  # fmt: skip


@pytest.mark.parametrize("group_rows", [150_000, 300_000, 50_000])
def test_column_chunks_are_read_tables_chunks(tmp_path, group_rows):
    table = pa.table({"key": [f"k{i}" if i % 9 else None for i in range(400_000)],
                      "split": pa.array(["train"] * 400_000).dictionary_encode()})  # fmt: skip
    pq.write_table(table, tmp_path / "m.parquet", row_group_size=group_rows)
    for name in ("key", "split"):
        got = list(source.column_chunks(tmp_path / "m.parquet", name))
        want = pq.read_table(tmp_path / "m.parquet", columns=[name]).column(name).chunks
        assert [len(c) for c in got] == [len(c) for c in want]  # 150,000: [131072, 18928, ...]
        assert all(a.equals(b) for a, b in zip(got, want, strict=True))


def test_streamed_key_checks_name_the_file(tmp_path):
    src = tmp_path / "manifest.parquet"
    for keys, match in ((["a", None, "b"], "null key"), (["a", "b", "a"], "duplicate keys")):
        pq.write_table(pa.table({"key": keys, "split": ["train"] * 3,
                                 "texts": pa.nulls(3, pa.list_(pa.string()))}), src)  # fmt: skip
        with pytest.raises(DataError, match=match) as e:
            build_ids(src, tmp_path / "ids.parquet", scheme="numeric")
        assert str(src) in str(e.value)
        assert not (tmp_path / "ids.parquet").exists()


def test_positions_are_numpys_permutation_in_int32():
    """`schemes.positions` shuffles an int32 arange: the values of the int64
    `Generator.permutation(n)` that build-ids drew before (so the maps are unchanged)."""
    import numpy as np

    for n, seed in ((0, 3), (1, 0), (999, 7), (100_003, 0)):
        got = schemes.positions(n, seed)
        assert got.dtype == np.int32
        assert got.tolist() == np.random.default_rng(seed).permutation(n).tolist()
    assert schemes.positions(5, None).tolist() == [0, 1, 2, 3, 4]


def test_position_ids_drop_and_redraw_the_same_positions():
    """`PositionIds` draws its positions when first asked, `drop` lets them go, and the
    next use draws the same ones; the last `take` drops them too."""
    ids = schemes.PositionIds("string", 50, seed=2)
    assert ids._pos is None and len(ids) == 50
    texts = ids.texts(0, 50)
    ids.drop()
    parts = [ids.take(20), ids.take(30)]
    assert [s for p in parts for s in p.to_pylist()] == texts
    assert ids._pos is None  # all taken
    assert texts == schemes.position_id_array("string", 50, 2).to_pylist()


def test_columns_drop_what_they_handed_out():
    """`ArrayColumn` lets its array go after the last take; `TokensColumn` gives the int32
    lists of its narrow tokens a slice at a time (mask kept), then lets them go."""
    import numpy as np

    from vlmdata.ids.write import ArrayColumn, NullColumn, TokensColumn

    col = ArrayColumn(pa.array(["a", "b", "c"]))
    assert col.take(2).to_pylist() == ["a", "b"] and col.array is not None
    assert col.take(1).to_pylist() == ["c"] and col.array is None
    lists = [[5, 70000], [], [1], [2, 3, 4], [9]]
    flat = np.array([t for x in lists for t in x], np.int32)
    lengths = np.array([len(x) for x in lists], np.uint8)
    missing = np.array([False, True, False, False, False])
    toks = TokensColumn(flat, lengths, missing)
    got = toks.take(2).to_pylist() + toks.take(3).to_pylist()
    assert got == [[5, 70000], None, [1], [2, 3, 4], [9]]
    assert toks._flat is None and toks._lengths is None
    no_mask = TokensColumn(flat.astype(np.int64), lengths, None).take(5)
    assert no_mask.type == pa.list_(pa.int32()) and no_mask.null_count == 0
    assert NullColumn(pa.list_(pa.int32())).take(3).to_pylist() == [None] * 3


@pytest.mark.parametrize(("scheme", "seed"), [("string", 0), ("numeric", None)])
def test_tokenized_map_is_the_whole_table_write(tmp_path, monkeypatch, tok_dir, scheme, seed):
    """With a tokenizer, the map (identifiers made a group at a time from the positions,
    tokens held narrow and made int32 a group at a time) is the bytes of one
    `pq.write_table` of the whole table with int32 tokens: what build-ids wrote before.
    Groups of 700 rows (the writer's 1,048,576 patched down) so several are written."""
    import numpy as np

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmdata.ids import write
    from vlmdata.ids.tokens import identifier_sequence

    rows, group = 2_000, 700
    monkeypatch.setattr(write, "DEFAULT_GROUP_ROWS", group)
    keys = pa.array([f"k{i:07d}" for i in range(rows)], pa.string())
    src = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"key": keys, "split": pa.array(["train"] * rows),
                             "texts": pa.nulls(rows, pa.list_(pa.string()))}),
                   src, row_group_size=300)  # fmt: skip
    stats = build_ids(src, tmp_path / "ids.parquet", scheme=scheme, seed=seed, tokenizer=tok_dir)
    tok = load_tokenizer(tok_dir)
    ident = schemes.position_id_array(scheme, rows, seed)
    seqs = [identifier_sequence(tok, s, eos=False) for s in ident.to_pylist()]
    lengths = np.array([len(x) for x in seqs])
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    flat = np.array([t for x in seqs for t in x], np.int32)
    images = pq.read_table(src, columns=["key", "split"])
    table = pa.table(
        {
            "key": images.column("key"),
            "split": images.column("split"),
            "identifier": ident,
            "tokens": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
        }
    )
    meta = {"scheme": scheme, "params": "{}", "seed": "" if seed is None else str(seed),
            "tokenizer": str(tok_dir), "stats": json.dumps(stats, sort_keys=True)}  # fmt: skip
    pq.write_table(
        table.replace_schema_metadata({k: v.encode() for k, v in meta.items()}),
        tmp_path / "ref.parquet",
        compression="zstd",
        row_group_size=group,
    )
    assert pq.ParquetFile(tmp_path / "ids.parquet").num_row_groups == 3
    assert (tmp_path / "ids.parquet").read_bytes() == (tmp_path / "ref.parquet").read_bytes()


def test_tokenized_positions_are_dropped_and_tokens_held_narrow(tok_dir):
    """`_tokenize` on position identifiers leaves the positions dropped (drawn again for
    the identifier column, after the key column's write) and the tokens and lengths in the
    narrowest dtypes (a 300-token vocabulary: uint16 tokens, uint8 lengths), equal to the
    shared rule's int32 tokens."""
    import numpy as np

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmdata.ids.build import _tokenize
    from vlmdata.ids.tokens import identifier_sequence

    ids = schemes.PositionIds("numeric", 3_000, seed=1)
    _, (flat, lengths) = _tokenize("numeric", ids, tok_dir, None, {})
    assert ids._pos is None
    assert flat.dtype == np.uint16 and lengths.dtype == np.uint8
    tok = load_tokenizer(tok_dir)
    want = [identifier_sequence(tok, s, eos=False) for s in ids.texts(0, 3_000)]
    assert lengths.tolist() == [len(w) for w in want]
    assert flat.tolist() == [t for w in want for t in w]


def test_source_slices_give_read_tables_chunks_for_any_ranges(tmp_path):
    """`SourceSlices` hands a group's rows over as ranges read in order, overlapping the
    one before (a piece starts again at its last page's first row): each is the rows of
    `pq.read_table` cut at the range's ends, chunk edges kept; the next group needs the
    last one's rows all read."""
    from vlmdata.ids.write import SourceSlices

    rows = 1_000
    keys = pa.array([f"k{i:05d}" for i in range(rows)])
    pq.write_table(pa.table({"key": keys}), tmp_path / "m.parquet", row_group_size=130)
    whole = pq.read_table(tmp_path / "m.parquet").column("key")
    src = SourceSlices(tmp_path / "m.parquet", "key", pa.string())
    first = src.take(600)
    assert first.length == 600 and 600 * 6 < first.nbytes < 600 * 20
    for a, b in ((0, 100), (0, 300), (50, 400), (390, 391), (391, 600)):  # starts in order
        got = first.read(a, b)
        want = whole.slice(a, b - a)
        assert got.to_pylist() == want.to_pylist()
        assert [len(c) for c in got.chunks] == [len(c) for c in want.chunks if len(c)]
    second = src.take(400)
    got = second.read(0, 400)
    assert got.to_pylist() == whole.slice(600).to_pylist()
    assert [len(c) for c in got.chunks] == [len(c) for c in whole.slice(600).chunks if len(c)]
    src = SourceSlices(tmp_path / "m.parquet", "key", pa.string())
    src.take(600).read(0, 100)
    with pytest.raises(ValueError, match="470 rows of the last group not read"):
        src.take(400)


def test_position_slices_are_the_groups_identifiers():
    """`PositionSlices` hands each group's identifiers over as row ranges of it (`part`),
    and the positions go once a range reaches the last row (drawn again if asked)."""
    from vlmdata.ids.write import PositionSlices

    want = schemes.position_id_array("numeric", 1_000, 5).to_pylist()
    ids = schemes.PositionIds("numeric", 1_000, seed=5)
    slices = PositionSlices(ids)
    one, two = slices.take(700), slices.take(300)
    assert one.nbytes == 700 * (5 + 4)  # "9 9 9" and its offset: the longest
    assert one.read(0, 300).to_pylist() + one.read(300, 700).to_pylist() == want[:700]
    assert ids._pos is not None
    assert two.read(0, 300).to_pylist() == want[700:] and ids._pos is None
    assert two.read(100, 300).to_pylist() == want[800:]  # after the drop: the same


def test_heap_trimmed_before_each_column(tmp_path, monkeypatch):
    """write_map hands the heap's free pages back before each column of each group is made
    (the writer's scratch writes of the column before leave them resident)."""
    from vlmdata.ids import write

    calls = []
    monkeypatch.setattr(write, "release_free_heap", lambda: calls.append(1))
    monkeypatch.setattr(write, "DEFAULT_GROUP_ROWS", 40)
    src = tmp_path / "m.parquet"
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(100)], "split": ["train"] * 100,
                             "texts": pa.nulls(100, pa.list_(pa.string()))}), src)  # fmt: skip
    build_ids(src, tmp_path / "ids.parquet", scheme="numeric")
    assert len(calls) == 4 * 3  # key, split, identifier, tokens; groups of 40, 40, 20
    assert pq.ParquetFile(tmp_path / "ids.parquet").num_row_groups == 3
