"""build-ids refuses a source whose keys repeat (one identifier per image), checked from
sorted 64-bit hashes plus an exact look at equal hashes (vlmdata/ids/source.py)."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core.errors import DataError
from vlmdata.ids import source
from vlmdata.ids.build import build_ids


@pytest.mark.parametrize("seed", range(6))
def test_has_duplicates_matches_a_python_set(seed):
    rng = random.Random(seed)
    keys = [f"k{rng.randrange(3000)}" for _ in range(rng.randrange(1, 400))]
    if seed % 2:
        keys = list(dict.fromkeys(keys))  # distinct
    chunked = pa.chunked_array([keys[: len(keys) // 3], keys[len(keys) // 3 :]], pa.string())
    assert source.has_duplicates(chunked, slice_rows=50) == (len(set(keys)) != len(keys))


def test_equal_hashes_of_different_keys_are_not_duplicates(monkeypatch):
    """Every key hashed alike (a stand-in for a 64-bit collision): compared exactly."""
    import polars as pl

    def same_hash(self, seed=0):
        return pl.Series([7] * len(self), dtype=pl.UInt64)

    monkeypatch.setattr(pl.Series, "hash", same_hash)
    assert not source.has_duplicates(pa.chunked_array([["a", "b", "c"]]))
    assert source.has_duplicates(pa.chunked_array([["a", "b", "a"]]))


def test_build_ids_names_the_file_with_repeated_keys(tmp_path):
    path = tmp_path / "manifest.parquet"
    pq.write_table(pa.table({"key": ["a", "b", "a"], "split": ["train"] * 3,
                             "texts": [["x"]] * 3}), path)  # fmt: skip
    with pytest.raises(DataError, match="duplicate keys") as e:
        build_ids(path, tmp_path / "ids.parquet", scheme="numeric")
    assert str(path) in str(e.value)
