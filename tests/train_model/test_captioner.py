"""The captioners: the generative-image-to-text seed's model as shipped, and GIT's mode.

Oracles come from the definitions in the two repositories: the seed's `model.py`
(PREFIX_LENGTH = 5, `MLP((d_clip, (d_lm * 5) // 2, d_lm * 5))` with Tanh, CLIP in train mode in
the optimizer, every LM parameter `requires_grad = False`) and GIT's
`generativeimage2text/layers/decoder.py` (`BertEncoderAsDecoder`'s block mask,
`SmoothLabelCrossEntropyLoss`, the `max_text_len` handling of its train.py).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tests.train_loop.conftest import CONFIGS
from tests.train_model.conftest import TINY_LM, TINY_VISION
from vlmtrain.recipes import RecipeContext, get_recipe
from vlmtrain.recipes.caption import git_text_cap

M = -100
TINY = [
    "model.vision=tiny",
    "model.vision_pretrained=null",
    f"model.vision_config={TINY_VISION}",
    "model.lm=null",
    f"model.lm_config={TINY_LM}",
]


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def test_seed_config_trains_clip_and_the_mapper_with_a_5_token_prefix(tokenizer):
    from vlmtrain.model.vlm import build_model
    from vlmtrain.train.config import load_config

    cfg = load_config(CONFIGS / "caption_seed_vitb32_gpt2large.yaml", TINY)
    model = build_model(cfg.model, tokenizer)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    clip = {f"vision.{n}" for n, _ in model.vision.named_parameters()}
    mapper = {f"projector.{n}" for n, _ in model.projector.named_parameters()}
    assert trainable == clip | mapper
    assert model.num_image_tokens == 5
    d_clip, d_lm = model.vision.pooled_dim, 64
    layers = list(model.projector.net)
    assert [type(m) for m in layers] == [nn.Linear, nn.Tanh, nn.Linear]
    assert (layers[0].in_features, layers[0].out_features) == (d_clip, d_lm * 5 // 2)
    assert (layers[2].in_features, layers[2].out_features) == (d_lm * 5 // 2, d_lm * 5)
    model.train()
    assert model.vision.visual.training and not model.lm.training  # CLIP trains, LM frozen
    recipe = get_recipe(cfg.recipe.name, **dict(cfg.recipe.options))
    assert recipe.decoding == {"beams": 3, "length_penalty": 1.0, "max_new_tokens": 100}


def test_seed_grid_and_git_tokens_are_last_block_outputs_after_ln_post(build):
    model = build(vision_feature="grid", num_visual_tokens=None, projector="linear_ln")
    x = torch.randn(2, 3, 32, 32)
    visual = model.vision.visual
    with torch.no_grad():  # the ViT by hand: embed, every block, ln_post on every token
        h = visual._embeds(x)
        for block in visual.transformer.resblocks:
            h = block(h)
        want = visual.ln_post(h)
        grid, _ = model.vision(x)
    assert torch.allclose(grid, want[:, 1:], atol=1e-5)  # 16 patches, class token dropped
    assert isinstance(model.projector.net[1], nn.LayerNorm)
    git = build(vision_feature="tokens", num_visual_tokens=None, projector="linear_ln")
    git.vision.visual.load_state_dict(visual.state_dict())
    with torch.no_grad():
        tokens, _ = git.vision(x)
    assert git.num_image_tokens == 17 and torch.allclose(tokens, want, atol=1e-5)


# GIT's decoder.py, for memory (image) tokens m and text tokens t, with 0 = attend and -inf = not:
#   [[zeros(m, m), -inf(m, t)], [zeros(t, m), causal(t, t)]], padding keys -inf.
# Row 0: 3 image tokens, then <s> a b, one pad. Row 1: 3 image tokens, <s> a b c (no pad).
X = 0  # not attended
GIT_MASK = [
    [  # i  i  i  s  a  b  pad
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, 1, X, X, X],
        [1, 1, 1, 1, 1, X, X],
        [1, 1, 1, 1, 1, 1, X],
        [1, 1, 1, 1, 1, 1, X],
    ],
    [  # i  i  i  s  a  b  c
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, X, X, X, X],
        [1, 1, 1, 1, X, X, X],
        [1, 1, 1, 1, 1, X, X],
        [1, 1, 1, 1, 1, 1, X],
        [1, 1, 1, 1, 1, 1, 1],
    ],
]


def git_batch(model, tokenizer):
    img, bos = model.image_token_id, tokenizer.bos_token_id
    a, b, c = enc(tokenizer, "a red circle")[:3]
    ids = torch.tensor([[img] * 3 + [bos, a, b, 0], [img] * 3 + [bos, a, b, c]])
    mask = torch.tensor([[1] * 6 + [0], [1] * 7])
    torch.manual_seed(1)
    return ids, mask, torch.randn(2, 3, 32, 32)


def test_git_mask_is_the_block_mask_of_gits_decoder(build, tokenizer):
    from vlmtrain.model.attention import image_block_allowed

    model = build(vision_feature="pooled", num_visual_tokens=3)
    ids, mask, _ = git_batch(model, tokenizer)
    got = image_block_allowed(ids == model.image_token_id, mask)
    assert got.long().tolist() == GIT_MASK
    sdpa = model.image_attention_mask(ids, mask, torch.float32)
    assert sdpa.shape == (2, 1, 7, 7) and sdpa[:, 0].long().tolist() == GIT_MASK


def test_git_forward_equals_a_reference_forward_built_from_the_hand_mask(build, tokenizer):
    model = build(vision_feature="pooled", num_visual_tokens=3, projector="mlp_tanh").eval()
    ids, mask, pixels = git_batch(model, tokenizer)
    with torch.no_grad():
        got = model(ids, mask, pixel_values=pixels, image_attention="bidirectional").logits
        embeds = model.embed(ids, pixels)
        allowed = torch.tensor(GIT_MASK, dtype=torch.bool)[:, None]
        additive = torch.zeros(allowed.shape).masked_fill(~allowed, torch.finfo(torch.float32).min)
        model.lm.config._attn_implementation = "eager"  # the reference: plain softmax attention
        want = model.lm(inputs_embeds=embeds, attention_mask=additive, use_cache=False).logits
        model.lm.config._attn_implementation = "sdpa"
        causal = model(ids, mask, pixel_values=pixels).logits
        other_text = ids.clone()
        other_text[:, 4:6] = torch.tensor(enc(tokenizer, "two black")[:2])
        moved = model(other_text, mask, pixel_values=pixels, image_attention="bidirectional")
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-4)
    assert not torch.allclose(got[:, 0], causal[:, 0], atol=1e-3)  # image 1 now sees image 3
    assert torch.allclose(moved.logits[:, :4], got[:, :4], atol=1e-5)  # images ignore the text


def test_label_smoothed_loss_is_gits_kl_computed_by_hand():
    from vlmtrain.recipes.losses import causal_lm_loss, smoothed_lm_loss

    logits = torch.tensor([[[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 3.0, -2.0], [0.0, 1.0, 0.0, 1.0]]])
    labels = torch.tensor([[M, 2, 1]])  # positions 0 and 1 predict labels 2 and 1
    eps, vocab = 0.1, 4

    def kl(row, target):
        z = sum(math.exp(v) for v in row)
        logp = [v - math.log(z) for v in row]
        q = [1 - eps if c == target else eps / (vocab - 1) for c in range(vocab)]
        return sum(qc * (math.log(qc) - lp) for qc, lp in zip(q, logp, strict=True))

    want = (kl(logits[0, 0].tolist(), 2) + kl(logits[0, 1].tolist(), 1)) / 2
    got, n = smoothed_lm_loss(logits, labels, eps)
    assert n == 2 and got.item() == pytest.approx(want, rel=1e-6)
    plain, _ = smoothed_lm_loss(logits, labels, 0.0)
    assert plain.item() == pytest.approx(causal_lm_loss(logits, labels)[0].item(), rel=1e-6)


def test_git_text_cap_keeps_the_last_38_and_eos(build, tokenizer, samples):
    # GIT: payload = prompt + target (each cut to 40); over 40 -> payload[-38:]; [CLS] .. [SEP]
    # the target's first 40 (100..139) + 5 prompt tokens = 45 > 40: the last 38 remain
    assert git_text_cap(list(range(5)), list(range(100, 150)), 40) == ([], list(range(102, 140)))
    assert git_text_cap(list(range(30)), list(range(100, 120)), 40) == (
        list(range(12, 30)), list(range(100, 120)))  # fmt: skip
    assert git_text_cap([1, 2], list(range(100, 138)), 40) == ([1, 2], list(range(100, 138)))
    model = build(vision_feature="pooled", num_visual_tokens=3)
    s = dict(samples[2], meta={"texts": ["three people ride bikes in the city " * 3]})
    cap = enc(tokenizer, s["meta"]["texts"][0])
    eos, bos = tokenizer.eos_token_id, tokenizer.bos_token_id
    image = [model.image_token_id] * 3
    plain = get_recipe("caption", image_attention="bidirectional", max_text_tokens=8)
    ex = plain.make(s, RecipeContext.for_model(model), "caption", text_index=0)
    assert ex["input_ids"] == image + [bos] + cap[:8] + [eos]  # 8 payload tokens: not > 8
    prompted = get_recipe("caption", prompt="a photo of", image_attention="bidirectional",
                          max_text_tokens=8)  # fmt: skip
    ex = prompted.make(s, RecipeContext.for_model(model), "caption", text_index=0)
    payload = enc(tokenizer, "a photo of") + cap[:8]
    assert len(payload) > 8
    assert ex["input_ids"] == image + [bos] + payload[-6:] + [eos]
    assert ex["labels"] == [M] * 4 + cap[2:8] + [eos]


def test_a_vqa_record_through_the_caption_recipe_carries_its_question(build, tokenizer, samples):
    model = build(vision_feature="pooled", num_visual_tokens=3)
    ctx = RecipeContext.for_model(model)
    s = dict(samples[4], meta={"texts": ["a boat"], "question": "what is on the lake?"})
    for recipe in (get_recipe("caption"), get_recipe("caption", prompt="a photo of")):
        ex = recipe.make(s, ctx, "caption", text_index=0)
        question = enc(tokenizer, "Question: what is on the lake? Answer:")
        answer = enc(tokenizer, "a boat") + [tokenizer.eos_token_id]
        prompt = [tokenizer.bos_token_id] + [model.image_token_id] * 3 + question
        assert ex["input_ids"] == prompt + answer
        assert ex["labels"] == [M] * len(prompt) + answer
    for bad in ("", "no field"):
        with pytest.raises(ValueError, match=r"\{question\}"):
            get_recipe("caption", question_prompt=bad)


def test_git_decoding_with_one_beam_is_greedy_under_the_block_mask(build, tokenizer):
    from vlmtrain.eval.beam import image_block_generate

    model = build(vision_feature="pooled", num_visual_tokens=3).eval()
    img, bos, eos = model.image_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id
    ids = torch.tensor([[img] * 3 + [bos]] * 2)
    torch.manual_seed(3)
    pixels = torch.randn(2, 3, 32, 32)
    want = []
    with torch.no_grad():
        for r in range(2):
            row = ids[r : r + 1]
            out = []
            for _ in range(6):
                logits = model(row, pixel_values=pixels[r : r + 1], image_attention="bidirectional")
                t = int(logits.logits[0, -1].argmax())
                out.append(t)
                if t == eos:
                    break
                row = torch.cat([row, torch.tensor([[t]])], dim=1)
            want.append(out)
    got = image_block_generate(model, ids, torch.ones_like(ids), pixels, eos_id=eos,
                               num_beams=1, max_new_tokens=6)  # fmt: skip
    assert got == want
    beams = image_block_generate(model, ids, torch.ones_like(ids), pixels, eos_id=eos,
                                 num_beams=3, length_penalty=0.6, max_new_tokens=6)  # fmt: skip
    assert len(beams) == 2 and all(1 <= len(b) <= 6 for b in beams)


def test_git_step_logits_of_a_left_padded_row_equal_the_row_alone(build, tokenizer):
    from vlmtrain.eval.beam import next_token_logits
    from vlmtrain.model.vlm import left_align

    model = build(vision_feature="pooled", num_visual_tokens=3).eval()
    img, bos = model.image_token_id, tokenizer.bos_token_id
    short = [img] * 3 + [bos] + enc(tokenizer, "a red")
    long = [img] * 3 + [bos] + enc(tokenizer, "two black dogs run on the grass")
    ids = torch.zeros(2, len(long), dtype=torch.long)
    ids[0, : len(short)], ids[1] = torch.tensor(short), torch.tensor(long)
    mask = (torch.arange(len(long)) < torch.tensor([[len(short)], [len(long)]])).long()
    torch.manual_seed(2)
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ids_l, mask_l = left_align(ids, mask, 0)
        is_img = ids_l == img
        batch = next_token_logits(model, model.embed(ids_l, pixels), mask_l, is_img)
        for r, row in enumerate((short, long)):
            one = torch.tensor([row])
            alone = next_token_logits(model, model.embed(one, pixels[r : r + 1]),
                                      torch.ones_like(one), one == img)  # fmt: skip
            want = model(one, pixel_values=pixels[r : r + 1], image_attention="bidirectional")
            assert torch.allclose(batch[r], alone[0], atol=1e-4)
            assert torch.allclose(alone[0], want.logits[0, -1], atol=1e-4)


def test_git_mode_is_never_packed():
    from vlmdata.core.errors import DataError
    from vlmtrain.data.packing import packing_decision

    git = get_recipe("caption", image_attention="bidirectional")
    row_length, line = packing_decision(git, "auto", 64)
    assert line.startswith("packing: off (caption: GIT's")
    assert row_length is None
    with pytest.raises(DataError, match="cannot pack rows"):
        packing_decision(git, True, 64)
    causal = get_recipe("caption")
    assert packing_decision(causal, "auto", 64)[0] == 64


def test_seed_grid_of_a_resnet_is_its_last_stage_grid():
    """The seed's RN50 grid: layer4's (B, C, 7, 7) map as 49 tokens (here a tiny ResNet: 2x2)."""
    from vlmtrain.model.vision import VisionTower, build_visual

    cfg = {"embed_dim": 32, "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                                           "head_width": 8}}  # fmt: skip
    visual, pp = build_visual("tiny", config=cfg)
    tower = VisionTower(visual, pp, "grid")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        h = visual.stem(x)
        for layer in (visual.layer1, visual.layer2, visual.layer3, visual.layer4):
            h = layer(h)
        grid, _ = tower(x)
    assert grid.shape == (2, 4, 256)
    assert torch.allclose(grid, h.flatten(2).transpose(1, 2), atol=1e-5)
