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
