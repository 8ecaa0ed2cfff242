"""Per-rank batches: equal counts, exact per-step mix, disjoint epochs, exact resume."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from tests.train_loop.conftest import CONFIGS, N_TRAIN, data_overrides
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmtrain.data.plan import StepPlan, streaming_batches
from vlmtrain.data.train_data import TrainData
from vlmtrain.recipes import RecipeContext, get_recipe
from vlmtrain.recipes.grace import load_identifiers
from vlmtrain.train.config import load_config


@pytest.fixture(scope="module")
def grace_ctx(dataset):
    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.data.transforms import build_image_transform
    from vlmtrain.model.vlm import ModelConfig, add_model_tokens

    tok = load_tokenizer(dataset["tokenizer"])
    add_model_tokens(tok, ModelConfig())
    transform = build_image_transform(32, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "pad", "")
    return RecipeContext(
        tokenizer=tok,
        image_transform=transform,
        num_image_tokens=4,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
        identifiers=load_identifiers(dataset["ids"]),
        max_length=64,
    )


# The plan's rules are tested on one filter and the recipe's mix scaled to data.batch_size (the
# shipped grace_tiny lists two streams with their own filters instead).
MIX_FORM = ["data.streams=[]", "data.batch_size=8", "data.filter={split: train}"]


def make_data(dataset, tmp_path, grace_ctx, rank, world, *overrides):
    over = data_overrides(dataset, tmp_path / "run") + MIX_FORM + list(overrides)
    cfg = load_config(CONFIGS / "grace_tiny.yaml", over)
    return TrainData(cfg, get_recipe(cfg.recipe.name), grace_ctx, rank, world)


def keys_of(batches):
    return [b.keys for b in batches]


def test_grace_mix_is_exact_every_step(dataset, tmp_path, grace_ctx):
    for world, batch_size, want in [(2, 8, (2, 6)), (1, 64, (16, 48))]:
        for rank in range(world):
            d = make_data(
                dataset, tmp_path, grace_ctx, rank, world, f"data.batch_size={batch_size}"
            )
            for b in d.batches(0, 4):
                kinds = Counter(b.batch["kind"])
                assert (kinds["image2id"], kinds["query2id"]) == want
                assert b.batch["input_ids"].shape[0] == sum(want)
                # image2id rows carry an image each, query2id rows none
                assert b.batch["pixel_values"].shape[0] == want[0]


def test_ranks_split_each_epoch_without_overlap(dataset, tmp_path, grace_ctx):
    world = 2
    datas = [make_data(dataset, tmp_path, grace_ctx, r, world) for r in range(world)]
    per_epoch = datas[0].batches_per_epoch
    assert per_epoch == 6 == datas[1].batches_per_epoch  # ceil(22 / (2 image2id x 2 ranks))
    seen = []
    for d in datas:
        for b in d.batches(0, 5):  # 5 x 2 ranks x 2 = 20 image2id positions < 22 rows
            seen += [
                k for k, kind in zip(b.keys, b.batch["kind"], strict=True) if kind == "image2id"
            ]
    assert len(seen) == 20 == len(set(seen))  # no sample twice within the epoch
    train = pl.read_parquet(dataset["shards"] / layout.INDEX).filter(pl.col("split") == "train")
    assert set(seen) <= set(train["key"])


def test_plan_positions_are_a_partition():
    plan = [StepPlan([7, 30], [3, 5], world=3, rank=r, seed=1) for r in range(3)]
    for k, n in [(0, 3), (1, 5)]:
        pos = sorted(p for r in range(3) for b in range(4) for p in plan[r].positions(k, b))
        assert pos == list(range(4 * 3 * n))
    rows = [
        row for r in range(3) for b in range(2) for s, row, _ in plan[r].batch_rows(b) if s == 1
    ]
    assert sorted(rows) == list(range(30))  # 2 batches x 3 ranks x 5 = one epoch of stream 1


@pytest.mark.parametrize("mode, workers", [("indexed", 0), ("indexed", 2), ("streaming", 2)])
def test_resume_continues_the_same_stream(dataset, tmp_path, grace_ctx, mode, workers):
    over = [f"data.mode={mode}", f"data.num_workers={workers}"]
    for rank in range(2):
        d = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over)
        full = keys_of(d.batches(0, 9))  # crosses the epoch boundary (6 per epoch)
        again = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over)
        for start in (1, 4, 7):
            assert keys_of(again.batches(start, 9)) == full[start:]
        assert [b.index for b in again.batches(3, 6)] == [3, 4, 5]


def test_streaming_counts_equal_on_every_rank_with_uneven_shards(dataset, tmp_path, grace_ctx):
    sizes = pl.read_parquet(dataset["shards"] / layout.INDEX).group_by("shard").len()
    # uneven: 22 train and 4 test images, 5 per shard, one split per shard (issue 24)
    assert sorted(sizes["len"].to_list()) == [2, 4, 5, 5, 5, 5]
    assert streaming_batches(N_TRAIN, 2, world=2, workers=2) == 6  # ceil(ceil(22/4)/2)*2
    assert streaming_batches(N_TRAIN, 2, world=2, workers=4) == 8
    assert streaming_batches(N_TRAIN, 2, world=3, workers=1) == 4
    # without resampling every sample split is read (filter {}): 26 samples -> ceil(26/4) = 7
    cases = [("true", 4, "{split: train}", 8), ("false", 2, "{}", 8), ("false", 0, "{}", 7)]
    for resampled, workers, filt, want in cases:
        over = [
            "data.mode=streaming",
            f"data.num_workers={workers}",
            f"data.resampled={resampled}",
            f"data.filter={filt}",
        ]
        for rank in range(2):
            d = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over)
            assert d.batches_per_epoch == want
            got = list(d.batches(0, want))
            assert [b.index for b in got] == list(range(want))
            assert all(len(b.keys) == 8 for b in got)


def test_not_resampled_slots_read_only_their_shards(dataset, tmp_path, grace_ctx):
    from vlmdata.shards import ShardReader

    index = ShardReader(dataset["shards"]).index
    shard_of = dict(zip(index["key"], index["shard"], strict=True))
    over = ["data.mode=streaming", "data.num_workers=0", "data.resampled=false", "data.filter={}"]
    per_rank = []
    for rank in range(2):
        d = make_data(dataset, tmp_path, grace_ctx, rank, 2, *over)
        per_rank.append({shard_of[k] for b in d.batches(0, 6) for k in b.keys})
    assert per_rank[0] and per_rank[1] and not per_rank[0] & per_rank[1]


def test_unmade_examples_are_redrawn_and_counted(dataset, tmp_path, grace_ctx):
    import dataclasses

    ids = load_identifiers(dataset["ids"])
    half = {k: v for i, (k, v) in enumerate(sorted(ids.items())) if i % 2 == 0}
    ctx = dataclasses.replace(grace_ctx, identifiers=half)
    d = make_data(dataset, tmp_path, ctx, 0, 1)
    batches = list(d.batches(0, 4))
    assert all(len(b.keys) == 8 and set(b.keys) <= set(half) for b in batches)
    skipped = sum(b.skipped.get("no_identifier", 0) for b in batches)
    planned_missing = sum(
        1
        for b in range(4)
        for k, row, _ in d.plan.batch_rows(b)
        if d._readers[k].records["key"][row] not in half
    )
    assert skipped >= planned_missing > 0


def test_filter_selecting_nothing_is_an_error(dataset, tmp_path, grace_ctx):
    with pytest.raises(DataError, match="selects no record"):
        make_data(dataset, tmp_path, grace_ctx, 0, 1, "data.filter={split: val}")


def test_resume_with_another_plan_is_refused(dataset, tmp_path, grace_ctx):
    d = make_data(dataset, tmp_path, grace_ctx, 0, 2)
    state = d.position(5)
    assert d.check_position(state) == 5
    other = make_data(dataset, tmp_path, grace_ctx, 0, 1)
    with pytest.raises(DataError, match="world: 2 -> 1"):
        other.check_position(state)


class Picky:
    """The grace recipe making examples only of the records in `makes` (the rest: None, counted
    as "picky"), counting every call: what the redraw rule sees."""

    def __init__(self, makes: set[str]) -> None:
        self.base, self.makes, self.calls = get_recipe("grace"), makes, 0
        self.mix = self.base.mix

    def example(self, sample, ctx):
        self.calls += 1
        if sample["key"] not in self.makes:
            ctx.skipped["picky"] += 1
            return None
        return self.base.example(sample, ctx)

    def collate(self, items):
        return self.base.collate(items)


def test_both_paths_redraw_by_one_rule(dataset, tmp_path, grace_ctx):
    """Indexed and streaming replace an example the recipe cannot make by the stream's next
    draw, and give up after the same MAX_DRAWS draws in a row with the same error."""
    from vlmtrain.data.batches import MAX_DRAWS

    errors = {}
    for mode in ("indexed", "streaming"):
        over = data_overrides(dataset, tmp_path / "run") + MIX_FORM
        mode_over = [f"data.mode={mode}", "data.num_workers=0"]  # calls counted here
        cfg = load_config(CONFIGS / "grace_tiny.yaml", over + mode_over)
        never = Picky(set())
        with pytest.raises(DataError) as err:
            next(iter(TrainData(cfg, never, grace_ctx, 0, 1).batches(0, 1)))
        assert never.calls == MAX_DRAWS
        errors[mode] = str(err.value)
        # 3 of the 22 train records: 16 draws in a row would miss with p = (19/22)^16 ~ 0.1
        # per example (the old indexed rule failed here); the rule fills every batch
        rare = Picky({f"k{i:03d}" for i in (1, 7, 12)})
        batches = list(TrainData(cfg, rare, grace_ctx, 0, 1).batches(0, 3))
        assert all(len(b.keys) == 8 and set(b.keys) <= rare.makes for b in batches)
        assert sum(b.skipped.get("picky", 0) for b in batches) == rare.calls - 3 * 8
    assert errors["indexed"] == errors["streaming"]
    assert f"the recipe made no example in {MAX_DRAWS} draws in a row" in errors["indexed"]


# (spec, records it selects) from conftest's rows: k000..k025, split train below N_TRAIN = 22,
# entity_id Q{i % 8}, entity_name SHAPES[i % 8] ("dog" at i % 8 == 5), every question set
@pytest.mark.parametrize(
    ("spec", "want"),
    [
        (None, 26),
        ({"split": "train"}, 22),
        ({"split": ["test"], "entity_id": ["Q1", "Q2", "Q9"]}, 1),  # k025
        ({"entity_name": "dog", "split": "train"}, 3),  # k005, k013, k021
        ({"split": []}, 0),
        ({"question": None}, 0),  # a null passes nothing
        ({"split": "nope"}, 0),
    ],
)
def test_one_filter_rule_on_tables_and_records(dataset, spec, want):
    """The indexed path's expression over records.parquet and the streaming path's test of
    each Record select the same records (RecordFilter: one rule, two inputs)."""
    from vlmdata.core.record import Record
    from vlmdata.shards import load_records
    from vlmtrain.data.batches import RecordFilter

    table = load_records(dataset["shards"])
    rule = RecordFilter.of(spec)
    expr = rule.expr()
    by_table = (table if expr is None else table.filter(expr))["key"].to_list()
    by_record = [r["key"] for r in table.to_dicts() if rule.keeps(Record.from_row(r))]
    assert by_table == by_record
    assert len(by_record) == want
