"""Recipes on real shards (vlmdata.shards): the same examples as from in-memory Samples."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train_model.test_recipes import CONV
from vlmtrain.recipes import RecipeContext, get_recipe


@pytest.fixture()
def shard_dir(tmp_path, samples):
    from vlmdata.shards import write_samples

    items = []
    for s in samples:
        m = s["meta"]
        row = {
            "key": s["key"],
            "source": "test",
            "split": "train",
            "url": None,
            "path": f"{s['key']}.png",
            "texts": m["texts"],
            "entity_id": m["entity_id"],
            "entity_name": m["entity_name"],
            "question": m["question"],
            "conversations": json.dumps(CONV),
        }
        items.append((row, s["image"]))
    summary = write_samples(items, tmp_path / "out", samples_per_shard=4, progress=False)
    assert summary.kept == len(samples) and summary.shards == 2
    return tmp_path / "out"


def _same(a, b):
    assert a["key"] == b["key"] and a["kind"] == b["kind"]
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"]
    pa, pb = a["pixel_values"], b["pixel_values"]
    assert (pa is None and pb is None) or torch.equal(pa, pb)


@pytest.mark.parametrize(
    "name,options", [("grace", {}), ("llava", {"stage": 2}), ("autover", {}), ("caption", {})]
)
def test_examples_from_shards_match_in_memory(name, options, shard_dir, samples, build):
    from vlmdata.shards import ShardReader

    model = build(new_tokens=["<ret>"], ret_token="<ret>")
    ids = {s["key"]: f"id-{i}" for i, s in enumerate(samples)}
    recipe = get_recipe(name, **options)
    reader = ShardReader(shard_dir)
    assert len(reader) == len(samples)
    for s in samples:
        shard_sample = reader.get(s["key"])
        assert shard_sample["meta"]["texts"] == s["meta"]["texts"]
        mem = dict(s, meta=dict(s["meta"], conversations=json.dumps(CONV)))
        ctx = RecipeContext.for_model(model, identifiers=ids)
        got, want = recipe.examples(shard_sample, ctx), recipe.examples(mem, ctx)
        assert len(got) == len(want) > 0
        for a, b in zip(got, want, strict=True):
            _same(a, b)
