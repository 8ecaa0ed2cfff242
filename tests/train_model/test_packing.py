"""Sequence packing (vlmtrain.data.packing): the layout by hand, and packed rows giving the same
loss and gradients as the padded batch (GRACE's image->id and query->id examples on the tiny
VLM, GPT-2 with SDPA and with eager attention, Llama with SDPA)."""

from __future__ import annotations

import pytest
import torch

from tests.train_model.test_grace import IDS
from vlmdata.core.errors import DataError
from vlmtrain.recipes import RecipeContext, get_recipe

M = -100
LLAMA = {
    "model_type": "llama",
    "num_hidden_layers": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 256,
}


def test_first_fit_decreasing_rows():
    from vlmtrain.data.packing import pack_rows

    # by length: 6 (#4) row 0, 5 (#0) row 1, 4 (#2) row 2, 3 (#1) fills row 1, 2 (#3) row 0
    assert pack_rows([5, 3, 4, 2, 6], 8) == [[4, 3], [0, 1], [2]]
    assert pack_rows([9, 1], 8) == [[0], [1]]  # too long: a row of its own, nothing joins it


def test_packed_layout_by_hand():
    from vlmtrain.data.packing import pack_examples

    img = torch.ones(3, 2, 2)

    def ex(key, ids, labels, image=None):
        return {
            "key": key,
            "kind": "k",
            "input_ids": ids,
            "labels": labels,
            "pixel_values": image,
            "pad_id": 0,
        }

    items = [
        ex("a", [1, 2, 3], [M, 2, 3], img * 1),
        ex("b", [4, 5, 6, 7, 8], [M, M, 6, 7, 8]),
        ex("c", [9, 10], [9, 10], img * 2),  # a label at position 0 is never a target
    ]
    b = pack_examples(items, 6)  # rows: [b], [a, c]
    assert b["input_ids"].tolist() == [[4, 5, 6, 7, 8], [1, 2, 3, 9, 10]]
    assert b["labels"].tolist() == [[M, M, 6, 7, 8], [M, 2, 3, M, 10]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 4], [0, 1, 2, 0, 1]]
    assert b["attention_mask"].tolist() == [[1] * 5, [1] * 5]
    assert b["pixel_values"][:, 0, 0, 0].tolist() == [1.0, 2.0]  # row-major: a, then c
    assert b["key"] == ["a", "b", "c"]
    b = pack_examples(items, 8)  # rows: [b, a], [c] + 3 padding positions
    assert b["input_ids"].tolist() == [[4, 5, 6, 7, 8, 1, 2, 3], [9, 10, 0, 0, 0, 0, 0, 0]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 0, 1, 2, 3, 4, 5]]
    assert b["attention_mask"][1].tolist() == [1, 1, 0, 0, 0, 0, 0, 0]
    assert b["labels"][1].tolist() == [M, 10] + [M] * 6


def test_block_causal_mask():
    from vlmtrain.data.packing import block_causal_mask

    pos = torch.tensor([[0, 1, 2, 0, 1]])
    got = block_causal_mask(pos, "sdpa", torch.float32)[0, 0].int().tolist()
    assert got == [
        [1, 0, 0, 0, 0],
        [1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0],
        [0, 0, 0, 1, 0],
        [0, 0, 0, 1, 1],
    ]
    eager = block_causal_mask(pos, "eager", torch.float32)[0, 0]
    assert torch.equal(eager == 0, torch.tensor(got, dtype=torch.bool))
    assert block_causal_mask(pos, "flash_attention_2", torch.float32) is None


def grace_examples(model, samples):
    recipe = get_recipe("grace")
    ctx = RecipeContext.for_model(model, identifiers=IDS)
    out = []
    for i, s in enumerate(samples):
        out.append(recipe.make(s, ctx, "image2id"))
        out.append(recipe.make(s, ctx, "query2id", text_index=i % 2))
    return recipe, out


def loss_and_grads(model, recipe, batch):
    from vlmtrain.recipes.base import lm_loss

    model.zero_grad()
    loss, metrics = lm_loss(model, batch)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), metrics["tokens"], grads


@pytest.mark.parametrize(
    "lm, attn",
    [(None, "sdpa"), (None, "eager"), (LLAMA, "sdpa")],
    ids=["gpt2-sdpa", "gpt2-eager", "llama-sdpa"],
)
def test_packed_loss_and_gradients_equal_padded(build, samples, lm, attn):
    from vlmtrain.data.packing import packing_decision

    overrides = {"lm_config": lm} if lm else {}
    model = build(train=["projector", "lm"], attn_implementation=attn, **overrides).eval()
    recipe, items = grace_examples(model, samples)
    padded = recipe.collate(items)
    row_length, line = packing_decision(recipe, "auto", 40)
    assert row_length == 40 and line.startswith("packing: rows of up to 40")
    packed = recipe.packed(row_length).collate(items)
    assert "position_ids" in packed and "position_ids" not in padded
    assert packed["input_ids"].numel() < padded["input_ids"].numel()  # less padding
    assert packed["attention_mask"].sum() == padded["attention_mask"].sum()
    loss_p, tokens_p, grads_p = loss_and_grads(model, recipe, padded)
    loss_k, tokens_k, grads_k = loss_and_grads(model, recipe, packed)
    assert tokens_k == tokens_p
    assert torch.allclose(loss_k, loss_p, rtol=1e-5, atol=1e-6)
    assert set(grads_k) == set(grads_p) and grads_p
    for name, g in grads_p.items():
        assert torch.allclose(grads_k[name], g, rtol=1e-4, atol=1e-6), name


def test_packing_would_leak_without_the_mask(build, samples):
    """The equality above is not luck: the same rows with one causal mask give another loss."""
    model = build(train=["projector", "lm"]).eval()
    recipe, items = grace_examples(model, samples)
    recipe.pack_length = 40
    packed = recipe.collate(items)
    from vlmtrain.recipes.losses import causal_lm_loss

    with torch.no_grad():
        right = model(
            **{
                k: packed[k]
                for k in ("input_ids", "attention_mask", "pixel_values", "position_ids")
            }
        ).logits
        leaky = model(
            packed["input_ids"], packed["attention_mask"], pixel_values=packed["pixel_values"]
        ).logits
    a = causal_lm_loss(right, packed["labels"])[0]
    b = causal_lm_loss(leaky, packed["labels"])[0]
    assert abs(float(a - b)) > 1e-3


def test_packing_decision_by_recipe():
    """The decision is made from the recipe; packing builds a new recipe, the old one unchanged
    (the trainer never sets anything on a recipe)."""
    from vlmtrain.data.packing import packing_decision

    fromage = get_recipe("fromage")
    row_length, line = packing_decision(fromage, "auto", 64)
    assert "off" in line and row_length is None
    with pytest.raises(DataError, match="fromage"):
        packing_decision(fromage, True, 64)
    contrastive = get_recipe("autover", contrastive=True)
    assert packing_decision(contrastive, "auto", 64)[0] is None
    for name in ("grace", "caption", "autover", "llava"):
        recipe = get_recipe(name)
        assert packing_decision(recipe, "auto", 64)[0] == 64, name
        packed = recipe.packed(64)
        assert packed.pack_length == 64 and recipe.pack_length is None, name
        assert type(packed) is type(recipe) and packed.options == recipe.options, name
    caption = get_recipe("caption")
    assert packing_decision(caption, False, 64) == (None, "packing: off (data.packing=false)")
