"""grace: exact label masks, identifier tokens == the trie rule, the loss as the sum of the two
streams' means, falling loss, ids.parquet."""

from __future__ import annotations

import random

import polars as pl
import pytest
import torch

from vlmdata.core.errors import DataError
from vlmdata.ids.tokens import identifier_sequence
from vlmtrain.recipes import RecipeContext, get_recipe
from vlmtrain.recipes.losses import causal_lm_loss

IDS = {f"s{i:03d}": f"{i % 3}-{i}" for i in range(6)}


def _ctx(model, **kw):
    return RecipeContext.for_model(model, identifiers=IDS, **kw)


def test_grace_label_masks_token_by_token(build, tokenizer, samples):
    model = build()
    recipe = get_recipe("grace")
    s = samples[1]
    enc = lambda t: tokenizer(t, add_special_tokens=False)["input_ids"]  # noqa: E731
    target = identifier_sequence(tokenizer, IDS[s["key"]], prefix="", eos=True)
    img = [model.image_token_id] * model.num_image_tokens

    ex = recipe.make(s, _ctx(model), "image2id")
    prompt = [tokenizer.bos_token_id] + enc("image:") + img + enc(" id:")
    assert ex["input_ids"] == prompt + target
    assert ex["labels"] == [-100] * len(prompt) + target
    assert ex["pixel_values"].shape == (3, 32, 32)
    assert target[-1] == tokenizer.eos_token_id

    ex = recipe.make(s, _ctx(model), "query2id", text_index=1)
    prompt = [tokenizer.bos_token_id] + enc(f"caption: {s['meta']['texts'][1]} id:")
    assert ex["input_ids"] == prompt + target
    assert ex["labels"] == [-100] * len(prompt) + target
    assert ex["pixel_values"] is None


def test_grace_examples_kinds_and_mixing(build, samples):
    model = build()
    recipe = get_recipe("grace")
    exs = recipe.examples(samples[0], _ctx(model))
    assert [e["kind"] for e in exs] == ["image2id", "query2id", "query2id"]  # 2 captions
    assert recipe.mix == {"image2id": 16, "query2id": 48}
    ctx = _ctx(model, rng=random.Random(0))
    kinds = [recipe.example(samples[0], ctx)["kind"] for _ in range(400)]
    assert 0.15 < kinds.count("image2id") / 400 < 0.35  # 16 / 64 expected
    one = _ctx(model, kind="query2id")
    assert recipe.example(samples[0], one)["kind"] == "query2id"
    # same key, no rng -> the same caption every time (resumable)
    first = recipe.example(samples[0], one)["input_ids"]
    assert all(recipe.example(samples[0], one)["input_ids"] == first for _ in range(5))


def test_grace_skips_are_counted(build, samples):
    model = build()
    recipe = get_recipe("grace")
    ctx = RecipeContext.for_model(model, identifiers={"s000": "0-0"}, max_length=12)
    assert recipe.make(samples[1], ctx, "query2id") is None  # no identifier for s001
    assert recipe.make(samples[0], ctx, "query2id") is None  # longer than 12 tokens
    assert dict(ctx.skipped) == {"no_identifier": 1, "too_long": 1}


def test_grace_collate_pads_right(build, samples):
    model = build()
    recipe = get_recipe("grace")
    ctx = _ctx(model)
    items = [recipe.make(samples[0], ctx, "query2id", 0), recipe.make(samples[2], ctx, "image2id")]
    batch = recipe.collate(items)
    lens = [len(i["input_ids"]) for i in items]
    assert batch["input_ids"].shape == (2, max(lens))
    assert batch["attention_mask"].sum(1).tolist() == lens
    short = lens.index(min(lens))
    pad = model.tokenizer.pad_token_id
    assert batch["input_ids"][short, min(lens) :].eq(pad).all()
    assert batch["labels"][short, min(lens) :].eq(-100).all()
    assert batch["pixel_values"].shape == (1, 3, 32, 32)  # only the image2id example
    assert batch["identifier"] == [IDS["s000"], IDS["s002"]]


@pytest.mark.slow
def test_grace_loss_falls(build, samples):
    model = build(train=["projector", "lm"])
    recipe = get_recipe("grace")
    ctx = _ctx(model)
    items = [e for s in samples for e in recipe.examples(s, ctx)]
    batch = recipe.collate(items)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    losses = []
    for _ in range(8):
        loss, metrics = recipe.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["loss"])
    assert metrics["tokens"] == sum(sum(1 for x in e["labels"][1:] if x != -100) for e in items)
    assert losses[-1] < 0.5 * losses[0]


def test_grace_loss_is_the_sum_of_each_streams_mean(build, samples):
    """GRACE: L = mean over image2id's supervised tokens + mean over query2id's (not one mean
    over the mixed batch, which weights each stream by its share of the tokens)."""
    import torch.nn.functional as F

    model = build(train=["projector", "lm"]).eval()  # no dropout: two passes, same logits
    recipe = get_recipe("grace")
    items = [e for s in samples for e in recipe.examples(s, _ctx(model))]
    batch = recipe.collate(items)
    loss, metrics = recipe.loss(model, batch)
    logits = model(batch["input_ids"], batch["attention_mask"], None, batch["pixel_values"]).logits
    per_kind = {}
    for kind in ("image2id", "query2id"):
        terms = []
        for i, e in enumerate(items):
            if e["kind"] != kind:
                continue
            for t in range(1, len(e["labels"])):  # position t - 1 predicts token t
                if e["labels"][t] != -100:
                    terms.append(F.cross_entropy(logits[i, t - 1], torch.tensor(e["labels"][t])))
        per_kind[kind] = torch.stack(terms).mean()
    want = per_kind["image2id"] + per_kind["query2id"]
    assert torch.allclose(loss, want, atol=1e-5)
    assert metrics["image2id_loss"] == pytest.approx(float(per_kind["image2id"]), abs=1e-5)
    mixed = causal_lm_loss(logits, batch["labels"])[0]  # the single mean it replaces
    assert not torch.allclose(loss, mixed, atol=1e-3)
    recipe.pack_length = 256  # packed rows mix the kinds: each token still counts for its own
    packed = recipe.collate(items)
    assert packed["input_ids"].shape[0] < len(items)
    assert torch.allclose(recipe.loss(model, packed)[0], want, atol=1e-5)


def test_load_identifiers_checks_stored_tokens(tmp_path, tokenizer):
    from vlmtrain.recipes.grace import load_identifiers

    good = [identifier_sequence(tokenizer, i, eos=False) for i in IDS.values()]
    df = pl.DataFrame(
        {
            "key": list(IDS),
            "split": ["train"] * 6,
            "identifier": list(IDS.values()),
            "tokens": good,
        },
        schema_overrides={"tokens": pl.List(pl.Int32)},
    )
    df.write_parquet(tmp_path / "ids.parquet")
    assert load_identifiers(tmp_path / "ids.parquet", tokenizer) == IDS
    other = [[t + 1 for t in seq] for seq in good]  # as if tokenized by another vocabulary
    df.with_columns(pl.Series("tokens", other, dtype=pl.List(pl.Int32))).write_parquet(
        tmp_path / "bad.parquet"
    )
    with pytest.raises(DataError, match=r"bad.parquet:0: tokens of identifier"):
        load_identifiers(tmp_path / "bad.parquet", tokenizer)
    assert load_identifiers(tmp_path / "bad.parquet", tokenizer, check_tokens=False) == IDS


def test_trie_constrained_generation_yields_only_identifiers(build, tokenizer, samples):
    from vlmdata.trie import Trie
    from vlmdata.trie.mask import TrieLogitsProcessor
    from vlmtrain.recipes.base import pad_sequences

    model = build().eval()
    recipe = get_recipe("grace")
    ctx = _ctx(model)
    keys = list(IDS)
    seqs = [recipe.target(ctx, IDS[k]) for k in keys]  # the same rule as build-trie
    trie = Trie.build(seqs, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id)
    prompts = [recipe.prompt(ctx, "query2id", s["meta"]["texts"][0]).input_ids for s in samples[:3]]
    ids = pad_sequences(prompts, tokenizer.pad_token_id)
    mask = pad_sequences([[1] * len(p) for p in prompts], 0)
    out = model.generate(
        ids,
        mask,
        None,
        logits_processor=[TrieLogitsProcessor(trie, ids.shape[1])],
        num_beams=4,
        num_return_sequences=4,
        max_new_tokens=12,
        do_sample=False,
    )
    assert out.shape[0] == 12
    for row in out.tolist():
        seq = row[: row.index(tokenizer.eos_token_id) + 1]
        assert trie.lookup(seq) is not None, seq  # a complete identifier, eos included
    firsts = [tuple(r) for r in out.tolist()[:4]]
    assert len(set(firsts)) == 4  # beams of one prompt are distinct identifiers
