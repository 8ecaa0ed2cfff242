"""The VLM core: placeholder splicing, new-token rows, generation, transforms, retrieval."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from tests.train_model.conftest import png_bytes


def _pixels(model, colours):
    from vlmtrain.data.transforms import decode_image

    return torch.stack([model.image_transform(decode_image(png_bytes(c))) for c in colours])


def test_features_land_exactly_at_placeholders(build, tokenizer):
    model = build(vision_feature=-2, num_visual_tokens=4).eval()
    img = model.image_token_id
    words = tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    row0 = words[:1] + [img] * 4 + words[1:]  # image after the first word
    row1 = [img] * 4 + words + [img] * 4  # two images
    ids = torch.tensor([row0 + [0] * 4, row1])
    px = _pixels(model, [(200, 0, 0), (0, 200, 0), (0, 0, 200)])
    embeds = model.embed(ids, px)
    feats = model.image_features(px)
    plain = model.embed_tokens(ids)
    pos0 = list(range(1, 5))
    assert torch.allclose(embeds[0, pos0], feats[0])
    assert torch.allclose(embeds[1, 0:4], feats[1])
    assert torch.allclose(embeds[1, -4:], feats[2])
    other = ids != img
    assert torch.equal(embeds[other], plain[other])
    with pytest.raises(ValueError, match="placeholder"):
        model.embed(ids, px[:2])


def test_patch_feature_counts(build):
    patches = build(vision_feature=-2, num_visual_tokens=None)
    assert patches.num_image_tokens == 16  # 32x32 image, 8x8 patches
    pooled = build(vision_feature="pooled", num_visual_tokens=3, projector="linear")
    px = _pixels(pooled, [(1, 2, 3)])
    assert pooled.image_features(px).shape == (1, 3, 64)


def test_new_token_rows_train_alone(build, tokenizer):
    model = build(new_tokens=["[RET]"], train=["new_tokens"])
    ret = tokenizer.convert_tokens_to_ids("[RET]")
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["lm.transformer.wte.new_weight"]  # GPT-2 ties: one shared table
    opt = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=0.1, weight_decay=0.1
    )
    words = tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([words + [ret] + words])
    model.train()
    out = model(ids, torch.ones_like(ids), labels=ids)
    out.loss.backward()
    opt.step()
    after = dict(model.named_parameters())
    changed = [n for n in before if not torch.equal(before[n], after[n].detach())]
    assert changed == ["lm.transformer.wte.new_weight"]
    row = model.new_token_ids.index(ret)
    delta = after["lm.transformer.wte.new_weight"] - before["lm.transformer.wte.new_weight"]
    assert delta[row].abs().sum() > 0
    # the base table's [RET] row is shadowed: the embedding used is the trained one
    assert torch.equal(
        model.embed_tokens(torch.tensor([ret]))[0], after["lm.transformer.wte.new_weight"][row]
    )


def test_untied_llama_has_separate_new_output_rows(tokenizer):
    from tests.train_model.conftest import tiny_config
    from vlmtrain.model.vlm import build_model

    lm = {
        "model_type": "llama",
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": False,
    }
    model = build_model(
        tiny_config(lm_config=lm, new_tokens=["[RET]"], train=["new_tokens"]), tokenizer
    )
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names == ["lm.model.embed_tokens.new_weight", "lm.lm_head.new_weight"]


def test_freeze_policy_and_export_round_trip(build):
    model = build(train=["projector"])
    state = model.trainable_state_dict()
    assert state and all(k.startswith("projector.") for k in state)
    assert not model.lm.training or not model.training  # frozen LM stays in eval
    model.train()
    assert model.training and not model.lm.training and not model.vision.training
    other = build(train=["projector"])
    with torch.no_grad():
        for p in other.projector.parameters():
            p.add_(1.0)
    other.load_trainable_state_dict(state)
    assert all(torch.equal(state[k], dict(other.named_parameters())[k]) for k in state)
    with pytest.raises(KeyError):
        other.load_trainable_state_dict({"nope.weight": torch.zeros(1)})


def test_generate_pads_like_single_rows(build, tokenizer):
    model = build().eval()
    img = model.image_token_id
    a = [tokenizer.bos_token_id, *[img] * 4] + tokenizer("a red", add_special_tokens=False)[
        "input_ids"
    ]
    b = [tokenizer.bos_token_id, *[img] * 4] + tokenizer(
        "two black dogs run on", add_special_tokens=False
    )["input_ids"]
    px = _pixels(model, [(200, 0, 0), (0, 0, 200)])
    width = max(len(a), len(b))
    ids = torch.tensor([a + [0] * (width - len(a)), b + [0] * (width - len(b))])
    mask = torch.tensor(
        [[1] * len(a) + [0] * (width - len(a)), [1] * len(b) + [0] * (width - len(b))]
    )
    kw = dict(max_new_tokens=6, do_sample=False, num_beams=1, eos_token_id=None)
    both = model.generate(ids, mask, px, **kw)
    one_a = model.generate(torch.tensor([a]), torch.ones(1, len(a), dtype=torch.long), px[:1], **kw)
    one_b = model.generate(torch.tensor([b]), torch.ones(1, len(b), dtype=torch.long), px[1:], **kw)
    assert both.shape == (2, 6)
    assert torch.equal(both[0], one_a[0]) and torch.equal(both[1], one_b[0])
    beams = model.generate(
        torch.tensor([a]),
        None,
        px[:1],
        max_new_tokens=3,
        num_beams=3,
        num_return_sequences=3,
        do_sample=False,
        eos_token_id=None,
    )
    assert beams.shape == (3, 3)


def test_encode_texts_reads_the_ret_hidden_state(build, tokenizer):
    model = build(new_tokens=["[RET]"], ret_token="[RET]", retrieval_dim=8).eval()
    ret = model.ret_token_id
    words = tokenizer("a red circle", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([words + [ret] + [0, 0], words + words[:2] + [ret]])
    mask = torch.tensor([[1] * (len(words) + 1) + [0, 0], [1] * (len(words) + 3)])
    emb = model.encode_texts(ids, mask)
    hidden = model.lm(
        inputs_embeds=model.embed_tokens(ids), attention_mask=mask, output_hidden_states=True
    ).hidden_states[-1]
    expect = torch.nn.functional.normalize(
        model.heads.text_proj(torch.stack([hidden[0, len(words)], hidden[1, -1]])), dim=-1
    )
    assert torch.allclose(emb, expect, atol=1e-6)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2))
    img = model.encode_images(_pixels(model, [(1, 2, 3), (200, 100, 0)]))
    assert img.shape == (2, 8) and torch.allclose(img.norm(dim=-1), torch.ones(2))


def test_gradient_checkpointing_with_frozen_lm_reaches_new_rows(build, tokenizer):
    model = build(
        new_tokens=["[RET]"], train=["new_tokens", "projector"], gradient_checkpointing=True
    )
    model.lm.train()  # checkpointing is only active in train mode
    ret = tokenizer.convert_tokens_to_ids("[RET]")
    ids = torch.tensor([[*[model.image_token_id] * 4, ret, 5, 6, 7]])
    out = model(
        ids,
        torch.ones_like(ids),
        labels=ids.masked_fill(ids == model.image_token_id, -100),
        pixel_values=_pixels(model, [(9, 9, 9)]),
    )
    out.loss.backward()
    assert model.embed_tokens.new_weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.projector.parameters())


def test_image_transform_pad_vs_crop(build):
    from vlmtrain.data.transforms import build_image_transform

    wide = Image.new("RGB", (64, 16), (255, 0, 0))
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    pad = build_image_transform(32, mean, std, aspect="pad")(wide)
    crop = build_image_transform(32, mean, std, aspect="crop")(wide)
    assert pad.shape == crop.shape == (3, 32, 32)
    # pad: 12 rows of mean colour above and below the 8-row image band -> exactly 0 after norm
    assert torch.allclose(pad[:, :10], torch.zeros(3, 10, 32), atol=1e-2)
    assert torch.allclose(pad[0, 14:18], torch.full((4, 32), 2.0), atol=1e-2)  # red band
    assert torch.allclose(crop[0], torch.full((32, 32), 2.0), atol=1e-2)  # all red
    model = build(image_aspect="crop")
    assert model.image_transform(wide).shape == (3, 32, 32)
    with pytest.raises(ValueError):
        build_image_transform(32, mean, std, aspect="squash")


def test_model_config_rejects_unknown_keys():
    from vlmtrain.model.vlm import ModelConfig

    with pytest.raises(ValueError, match="unknown key"):
        ModelConfig.from_dict({"vison": "ViT-B-32"})
    with pytest.raises(ValueError, match="unknown part"):
        ModelConfig(train=["everything"])
    cfg = ModelConfig.from_dict({"ret_token": "[RET]"})
    assert cfg.new_tokens == ["[RET]"]
    with pytest.raises(ValueError, match="32 patch tokens cannot come from pooling"):
        ModelConfig(vision_feature=-2, num_visual_tokens=32)
    assert ModelConfig(vision_feature="pooled", num_visual_tokens=10).num_visual_tokens == 10
    assert ModelConfig(vision_feature=-2, num_visual_tokens=64).num_visual_tokens == 64


def test_every_example_config_loads():
    """The shipped configs parse and pass the model checks (a typo fails here, not on a cluster)."""
    from vlmtrain.train.config import load_config

    root = Path(__file__).resolve().parents[2]
    paths = sorted([*root.glob("examples/configs/*.yaml"), *root.glob("benchmarks/configs/*.yaml")])
    assert len(paths) >= 14
    for path in paths:
        assert load_config(path).recipe.name, path


def test_tokenizer_added_identifier_pieces_become_new_rows(build, tokenizer):
    tokenizer.add_tokens(["<id_0>", "<id_1>"])  # as `vlmdata build-ids --add-tokens` does
    pieces = tokenizer.convert_tokens_to_ids(["<id_0>", "<id_1>"])
    plain = build(new_tokens=["[RET]"])
    assert not set(pieces) & set(plain.new_token_ids)
    model = build(new_tokens=["[RET]"], new_tokens_from_tokenizer=True, train=["new_tokens"])
    ret = tokenizer.convert_tokens_to_ids("[RET]")
    assert model.new_token_ids == sorted({*pieces, ret, model.image_token_id})
    assert model.embed_tokens.new_weight.shape == (4, 64)


def test_state_dict_keys_are_unique_parameters(build):
    model = build(new_tokens=["[RET]"], retrieval_dim=8)
    keys = list(model.state_dict())
    assert not any(k.startswith("embed_tokens.") for k in keys)
    assert "lm.transformer.wte.new_weight" in keys
    assert set(dict(model.named_parameters())) <= set(keys)
