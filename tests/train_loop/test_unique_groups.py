"""AutoVER's data recipe: one record per entity per global batch, and the 0.5 subset file.

Reference: MrZilinXiao/AutoVER `--one_class_per_batch` (common_utils/sampling_utils.py,
`get_one_class_per_batch_indices_v2`: megabatch = world_size x per-device batch, entities drawn
without replacement with probability by record count) and its training command reading
`oven_entity_train_0.5.jsonl` + `oven_query_train.jsonl` (records {data_id, image_id, question,
entity_id, entity_text, data_split}).
"""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from tests.train_loop.test_data import grace_ctx, make_data  # noqa: F401 (fixture)
from vlmdata.core.errors import DataError
from vlmtrain.data.plan import StepPlan
from vlmtrain.data.unique_groups import group_codes, subset_filter, unique_group_permutation


def _skewed(n_groups=40):
    """Group g has g + 1 records (1 .. 40): a few entities dominate, as in OVEN."""
    return np.repeat(np.arange(n_groups), np.arange(1, n_groups + 1))


def test_every_block_holds_distinct_groups():
    groups = _skewed()
    for epoch in range(3):
        perm = unique_group_permutation(groups, 16, seed=5, stream=0, epoch=epoch)
        assert len(perm) == (len(groups) // 16) * 16
        for b in range(0, len(perm), 16):
            assert len(set(groups[perm[b : b + 16]])) == 16
        # most records are visited once; repeats only fill blocks when entities run out
        assert len(set(perm)) > 0.8 * len(perm)
    again = unique_group_permutation(groups, 16, seed=5, stream=0, epoch=2)
    assert (again == perm).all()  # deterministic in (seed, stream, epoch)
    with pytest.raises(DataError, match="needs >= 64 entities"):
        unique_group_permutation(groups, 64, seed=5, stream=0, epoch=0)


def test_two_ranks_never_share_an_entity_in_a_global_batch():
    groups = _skewed()
    plans = [StepPlan([len(groups)], [4], 2, rank, seed=1, groups=[groups]) for rank in (0, 1)]
    per_epoch = plans[0].batches_per_epoch()
    assert per_epoch == len(groups) // 8
    for b in range(3 * per_epoch + 2):  # across epoch boundaries
        rows = [r for p in plans for _, r, _ in p.batch_rows(b)]
        assert len(rows) == 8 and len(set(groups[rows])) == 8, b


def test_train_data_global_batches_across_two_ranks(dataset, tmp_path, grace_ctx):  # noqa: F811
    """Real shards (8 entities, Q{i % 8}), grace's two streams at 1 + 3 per rank: within every
    stream of every global batch (both ranks together) each entity appears once."""
    datas = [
        make_data(
            dataset,
            tmp_path,
            grace_ctx,
            r,
            2,
            "data.batch_size=4",
            "data.unique_in_batch=entity_id",
        )  # fmt: skip
        for r in (0, 1)
    ]
    n = datas[0].batches_per_epoch + 1
    for b0, b1 in zip(datas[0].batches(0, n), datas[1].batches(0, n), strict=True):
        for lo, hi in ((0, 1), (1, 4)):  # image2id, then query2id rows
            keys = b0.keys[lo:hi] + b1.keys[lo:hi]
            ents = [int(k[1:]) % 8 for k in keys]
            assert len(set(ents)) == len(ents), (b0.index, keys)
    assert datas[0].position(3)["unique_in_batch"] == "entity_id"


def test_group_codes_keep_missing_values_apart():
    assert group_codes(["Q1", "Q2", "Q1", None, None]).tolist() == [0, 1, 0, -1, -2]


def test_subset_file_restricts_only_its_splits(tmp_path):
    # the published subset's records: entity_train data_ids (data_split as OVEN writes it)
    sub = tmp_path / "oven_entity_train_0.5.jsonl"
    sub.write_text("".join(json.dumps({"data_id": f"e{i}", "data_split": "entity_train",
                                       "entity_id": "Q1"}) + "\n" for i in (0, 2)))  # fmt: skip
    records = pl.DataFrame({
        "data_id": ["e0", "e1", "e2", "e3", "q0", "q1"],
        "split": ["entity_train"] * 4 + ["query_train"] * 2,
    })  # fmt: skip
    kept = records.filter(subset_filter(sub))["data_id"].to_list()
    assert kept == ["e0", "e2", "q0", "q1"]
    (tmp_path / "bad.jsonl").write_text(json.dumps({"data_id": "e0"}) + "\n")
    with pytest.raises(DataError, match="bad.jsonl.*data_split"):
        subset_filter(tmp_path / "bad.jsonl")
