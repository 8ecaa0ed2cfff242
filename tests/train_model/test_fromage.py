"""FROMAGe's objective against its own formulas (kohjingyu/fromage, written out as the oracle).

The oracle follows FROMAGe's code path, not the recipe's: `data.py` tokenizes "<s> caption[RET]"
padded to max_len; `models.py` captioning mode puts the visual embedding before the token
embeddings, labels -100 on it and from the [RET] on, optionally concatenates row pairs
(`concat_captions`), and calls the LM with `labels=` and NO attention mask (Hugging Face's own
shifted loss); retrieval mode runs the tokens alone with the pads masked, takes the last layer at
caption_len - 1 through the text map, and `main.py` adds ret_loss_scale x (CE(logits_per_text) +
CE(logits_per_image)) / 2 with visual_embs = exp(logit_scale) x normalised visual_fc(pooled).
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from tests.train_model.conftest import TINY_VISION
from tests.train_model.test_recipes import M, enc, fromage_model
from vlmtrain.recipes import RecipeContext, get_recipe


def fromage_oracle(model, batch, tokenizer, concat: bool, cap_scale: float, ret_scale: float):
    """FROMAGe's total loss for one step on `batch` (one rank, no accumulation)."""
    n = len(batch["key"])
    ret, pad = model.ret_token_id, tokenizer.pad_token_id
    # data.py: tokens = "<s> caption [RET]" padded to max_len; caption_len = attention sum
    lens = batch["ret_attention_mask"].sum(1)
    width = int(lens.max()) + 2
    tokens = torch.full((n, width), pad)
    for i in range(n):
        tokens[i, : lens[i]] = batch["ret_input_ids"][i, : lens[i]]
    embed = model.lm.get_input_embeddings()
    _, pooled = model.vision(batch["pixel_values"])
    # models.py, captioning: [visual, tokens]; labels -100 on the image and from [RET] on
    visual = model.projector(pooled[:, None, :])
    input_embs = torch.cat([visual, embed(tokens)], dim=1)
    labels = torch.cat([torch.full((n, 1), -100), tokens], dim=1)
    pad_idx = [1 + int(lens[i]) - 1 for i in range(n)]  # the [RET] position in full_labels
    for i in range(n):
        labels[i, pad_idx[i] :] = -100
    if concat:
        rows_e, rows_l = [], []
        for i in range(n // 2):
            a, b = 2 * i, 2 * i + 1
            rows_e.append(
                torch.cat([input_embs[a, : pad_idx[a]], input_embs[b, : pad_idx[b]],
                           input_embs[a, pad_idx[a] :], input_embs[b, pad_idx[b] :]])
            )  # fmt: skip
            rows_l.append(
                torch.cat([labels[a, : pad_idx[a]], labels[b, : pad_idx[b]],
                           labels[a, pad_idx[a] :], labels[b, pad_idx[b] :]])
            )  # fmt: skip
        input_embs, labels = torch.stack(rows_e), torch.stack(rows_l)
    cap_ce = model.lm(inputs_embeds=input_embs, labels=labels).loss
    # models.py, retrieval: tokens alone, labels masked from the first pad
    ret_labels = tokens.clone()
    ret_labels[ret_labels == pad] = -100
    out = model.lm(inputs_embeds=embed(tokens), labels=ret_labels, output_hidden_states=True)
    last = out.hidden_states[-1][torch.arange(n), lens - 1]
    assert bool((tokens[torch.arange(n), lens - 1] == ret).all())
    text = model.heads.text_proj(last)
    vis = model.heads.image_proj(pooled)
    vis = model.heads.logit_scale.exp() * (vis / vis.norm(dim=1, keepdim=True))
    text = text / text.norm(dim=1, keepdim=True)
    logits_per_image = vis @ text.t()
    target = torch.arange(n)
    contrastive = (
        F.cross_entropy(logits_per_image.t(), target) + F.cross_entropy(logits_per_image, target)
    ) / 2
    return cap_scale * cap_ce + ret_scale * out.loss + ret_scale * contrastive


def _batch(model, recipe, samples, max_length=48):
    ctx = RecipeContext.for_model(model, max_length=max_length)
    return recipe.collate([recipe.make(s, ctx, "caption", text_index=i % 2)
                           for i, s in enumerate(samples)])  # fmt: skip


def test_fromage_examples_are_its_sequences(build, tokenizer, samples):
    """Captioning `<image> <s> CAPTION` (the image predicts <s>; no [RET]); text-only
    `<s> CAPTION [RET]` with the caption and [RET] supervised; truncation keeps [RET] last."""
    model = fromage_model(build)
    ctx = RecipeContext.for_model(model)
    s = samples[0]
    ex = get_recipe("fromage").make(s, ctx, "caption", text_index=0)
    bos, ret, img = tokenizer.bos_token_id, model.ret_token_id, model.image_token_id
    cap = enc(tokenizer, s["meta"]["texts"][0])
    assert ex["input_ids"] == [img, bos] + cap
    assert ex["labels"] == [M, bos] + cap
    assert ex["ret_input_ids"] == ex["ret_labels"] == [bos] + cap + [ret]
    short_ctx = RecipeContext.for_model(model, max_length=4)
    short = get_recipe("fromage").make(s, short_ctx, "caption", 0)
    assert short["ret_input_ids"] == [bos] + cap[:2] + [ret]
    assert short["input_ids"] == [img, bos] + cap[:2]


@pytest.mark.parametrize("concat", [False, True], ids=["plain", "concat_captions"])
def test_total_loss_equals_fromage_formulas(build, tokenizer, samples, concat):
    torch.manual_seed(0)
    model = fromage_model(build)
    with torch.no_grad():  # a temperature away from the initial value, to be sure it is used
        model.heads.logit_scale.fill_(2.5)
    recipe = get_recipe(
        "fromage",
        caption_weight=0.7,
        retrieval_weight=1.3,
        concat_captions_prob=1.0 if concat else 0.0,
    )
    batch = _batch(model, recipe, samples)
    model.eval()
    loss, metrics = recipe.loss(model, batch)
    want = fromage_oracle(model, batch, tokenizer, concat, 0.7, 1.3)
    assert float(loss.detach()) == pytest.approx(float(want.detach()), rel=1e-5, abs=1e-6)
    assert metrics["concat_captions"] == float(concat)
    assert metrics["retrieval_candidates"] == len(samples)
    # gradients too: the trained parts get FROMAGe's
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, params, allow_unused=True)
    ref = torch.autograd.grad(want, params, allow_unused=True)
    for g, r in zip(got, ref, strict=True):
        assert (g is None) == (r is None)
        if g is not None:
            torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def test_concat_coin_is_a_fair_stateless_draw():
    recipe = get_recipe("fromage")  # concat_captions_prob 0.5, FROMAGe's default
    batches = [[f"k{i}", f"k{i + 1}"] for i in range(400)]
    draws = [recipe.concat_coin(keys) for keys in batches]
    assert 0.42 < sum(draws) / len(draws) < 0.58
    assert draws == [get_recipe("fromage").concat_coin(keys) for keys in batches]  # no state
    assert draws != [get_recipe("fromage", seed=1).concat_coin(keys) for keys in batches]
    assert not any(get_recipe("fromage", concat_captions_prob=0.0).concat_coin(k) for k in batches)


def test_concat_odd_batch_keeps_last_row_alone(build, samples):
    from vlmtrain.recipes.fromage import concat_caption_pairs

    model = fromage_model(build)
    recipe = get_recipe("fromage")
    batch = _batch(model, recipe, samples[:3])
    out = concat_caption_pairs(batch, pad=7)
    lens = batch["attention_mask"].sum(1).tolist()
    assert out["attention_mask"].sum(1).tolist() == [lens[0] + lens[1], lens[2]]
    row0 = batch["input_ids"][0, : lens[0]].tolist() + batch["input_ids"][1, : lens[1]].tolist()
    assert out["input_ids"][0, : len(row0)].tolist() == row0
    assert out["input_ids"][1, lens[2] :].tolist() == [7] * (len(row0) - lens[2])
    assert (out["labels"][1, lens[2] :] == M).all()


def test_ret_row_rescaled_to_mean_norm_of_the_other_rows(build):
    model = fromage_model(build)
    ret = model.ret_token_id
    with torch.no_grad():
        model.embed_tokens.new_weight.mul_(7.0)  # far from the mean norm
    get_recipe("fromage").after_step(model)
    with torch.no_grad():
        table = model.embed_tokens(torch.arange(model.embed_tokens.num_embeddings))
    norms = table.norm(dim=1)
    others = torch.cat([norms[:ret], norms[ret + 1 :]])
    assert float(norms[ret]) == pytest.approx(float(others.mean()), rel=1e-5)
    before = model.embed_tokens.new_weight.detach().clone()
    get_recipe("fromage", ret_norm=False).after_step(model)
    assert torch.equal(before, model.embed_tokens.new_weight)


def test_pooler_output_is_the_pooled_token_before_the_projection(build):
    """HF CLIPVisionModel's pooler_output = post-layernorm CLS, before visual_projection; the
    open_clip equivalent is the tower's forward with `proj` removed."""
    vision = {"embed_dim": 24, "vision_cfg": dict(TINY_VISION["vision_cfg"])}  # width 32
    model = build(vision_feature="pooler_output", vision_config=vision, projector="linear",
                  num_visual_tokens=1, new_tokens=["[RET]"], ret_token="[RET]",
                  retrieval_dim=16)  # fmt: skip
    x = torch.randn(2, 3, 32, 32)
    ref_tower = copy.deepcopy(model.vision.visual)
    ref_tower.proj = None
    with torch.no_grad():
        want = ref_tower(x)
        want = want[0] if isinstance(want, tuple) else want
        tokens, pooled = model.vision(x)
        projected = model.vision.visual(x)
    torch.testing.assert_close(pooled, want)
    assert tokens.shape == (2, 1, 32) and model.vision.pooled_dim == 32  # width, not embed_dim
    assert (projected[0] if isinstance(projected, tuple) else projected).shape == (2, 24)
    assert model.heads.image_proj.in_features == 32
    assert _linear_in(model.projector) == 32


def _linear_in(module) -> int:
    return next(m for m in module.modules() if isinstance(m, torch.nn.Linear)).in_features


def test_crop_preprocessing_is_clips_feature_extractor(build):
    """FROMAGe's images go through HF's CLIPFeatureExtractor (CLIPImageProcessor): resize the
    short side (bicubic), centre crop, rescale, normalise; `image_aspect: crop` is that."""
    from PIL import Image
    from transformers import CLIPImageProcessor

    model = build(vision_feature="pooler_output", image_aspect="crop", projector="linear",
                  num_visual_tokens=1)  # fmt: skip
    hf = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    gen = torch.Generator().manual_seed(0)
    pixels = (torch.rand(45, 70, 3, generator=gen) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(pixels)  # wide: a crop and a pad would differ
    want = torch.from_numpy(hf(image, return_tensors="np")["pixel_values"][0])
    got = model.image_transform(image)
    assert got.shape == want.shape == (3, 32, 32)
    torch.testing.assert_close(got, want, atol=0.03, rtol=0)
