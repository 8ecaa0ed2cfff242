"""Model FLOPs and MFU (vlmtrain.train.flops) against FLOPs counted by hand from the tiny
model's shapes (tests/train_model/conftest.py: a 2-block ViT of width 32 on 32x32 images with
8x8 patches, a 2-layer GPT-2 of width 64, 2 heads, 256 positions)."""

from __future__ import annotations

import pytest
import torch

from tests.train_model.conftest import TINY_LM, TINY_VISION

D, LAYERS = TINY_LM["n_embd"], TINY_LM["n_layer"]


def gpt2_matmul_params(head_rows: int) -> int:
    """Weight matrices of the tiny GPT-2 by hand: per block c_attn (D x 3D), attn c_proj (D x D),
    mlp c_fc (D x 4D), mlp c_proj (4D x D); the head is the token table (tied) plus the new-token
    rows (their logits are computed apart); the position table is a lookup and does not count."""
    block = D * 3 * D + D * D + D * 4 * D + 4 * D * D
    return LAYERS * block + head_rows * D


def tower_forward_flops() -> int:
    """The tiny ViT on one 32x32 image by hand: a 2*MACs count of every matmul."""
    v = TINY_VISION["vision_cfg"]
    w, p, side = v["width"], v["patch_size"], v["image_size"]
    patches = (side // p) ** 2
    t = patches + 1  # + class token
    hidden = int(w * v["mlp_ratio"])
    conv = 2 * patches * (3 * p * p) * w
    block = 2 * t * (w * 3 * w + w * w + w * hidden + hidden * w) + 2 * 2 * t * t * w
    pooled_proj = 2 * w * TINY_VISION["embed_dim"]
    return conv + v["layers"] * block + pooled_proj


def test_flop_model_of_the_tiny_vlm_matches_hand_counts(build):
    from vlmtrain.train.flops import FlopModel

    model = build(train=["projector", "lm"])  # GRACE's parts: the tower is frozen
    head_rows = model.embed_tokens.base_rows + len(model.new_token_ids)
    fm = FlopModel.from_model(model)
    assert fm.lm_params == gpt2_matmul_params(head_rows)
    assert (fm.lm_layers, fm.lm_attn_width) == (LAYERS, D)
    assert fm.image_vision == tower_forward_flops()
    # mlp2x_gelu on the 4 pooled tokens: 32 -> 64 -> 64
    assert fm.image_projector == 4 * 2 * (32 * D + D * D)
    assert (fm.mult_lm, fm.mult_vision, fm.mult_projector) == (3, 1, 3)


def test_batch_flops_by_hand_padded_and_packed():
    from vlmtrain.train.flops import FlopModel

    fm = FlopModel(
        lm_params=1000,
        lm_layers=2,
        lm_attn_width=8,
        image_vision=50.0,
        image_projector=7.0,
        mult_lm=3,
        mult_vision=1,
        mult_projector=3,
    )
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    batch = {"attention_mask": mask, "pixel_values": torch.zeros(2, 3, 4, 4)}

    def seq(s):  # 3 * (2*N*s + 4*L*A*s^2)
        return 3 * (2 * 1000 * s + 4 * 2 * 8 * s * s)

    images = 2 * (50 + 3 * 7)
    assert fm.batch_flops(batch) == seq(3) + seq(4) + images
    # the same 7 tokens packed as examples of 3, 2 and 2 in one row: per-example lengths count
    packed = {
        "attention_mask": torch.ones(1, 8, dtype=torch.long).index_fill(1, torch.tensor([7]), 0),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 0, 1, 0]]),
        "pixel_values": None,
    }
    assert fm.batch_flops(packed) == seq(3) + seq(2) + seq(2)
    # an extra LM pass of the recipe (FROMAGe's [RET] texts) counts too
    extra = dict(batch, ret_attention_mask=torch.tensor([[1, 1], [1, 0]]))
    assert fm.batch_flops(extra) == seq(3) + seq(4) + images + seq(2) + seq(1)


def test_lm_rule_equals_a_counted_forward(build):
    """2*N*s + 4*L*A*s^2 is what torch's FlopCounterMode counts for one LM forward of s tokens."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from vlmtrain.train.flops import FlopModel

    model = build(train=["projector", "lm"]).eval()
    fm = FlopModel.from_model(model)
    s = 11
    ids = torch.arange(5, 5 + s)[None]
    with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(ids, torch.ones_like(ids))
    assert fc.get_total_flops() == fm.lm_flops(torch.tensor([s])) / fm.mult_lm


@pytest.mark.parametrize(
    "parts, expected",
    [
        (["projector", "lm"], (3, 1, 3)),  # GRACE, LLaVA stage 2
        (["projector"], (2, 1, 3)),  # LLaVA stage 1: gradients cross the frozen LM
        (["projector", "new_tokens", "heads"], (2, 1, 3)),  # FROMAGe
        (["heads"], (1, 1, 1)),  # nothing upstream of the LM trains
        (["vision", "projector", "lm"], (3, 3, 3)),
        (["vision"], (2, 3, 2)),
    ],
)
def test_pass_multipliers(parts, expected):
    from vlmtrain.train.flops import multipliers

    m = multipliers(parts)
    assert (m["lm"], m["vision"], m["projector"]) == expected


@pytest.mark.parametrize(
    "name, precision, peak",
    [
        ("NVIDIA H200", "bf16", 989.0),
        ("NVIDIA GH200 480GB", "bf16", 989.0),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.0),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA H100 NVL", "fp16", 835.0),
        ("NVIDIA A100-SXM4-80GB", "bf16", 312.0),
        ("NVIDIA A100 80GB PCIe", "fp32", 19.5),
        ("NVIDIA L40S", "bf16", 362.0),
        ("NVIDIA L4", "bf16", 121.0),
        ("NVIDIA A10", "bf16", 125.0),
        ("NVIDIA A10G", "bf16", None),  # not A10, not in the table
        ("Tesla V100-SXM2-32GB", "fp16", 125.0),
        ("Tesla V100-PCIE-16GB", "fp16", 112.0),
        ("Some Future GPU", "bf16", None),
    ],
)
def test_peak_table(name, precision, peak):
    from vlmtrain.train.flops import peak_tflops

    assert peak_tflops(name, precision) == peak


def test_throughput_and_override():
    from vlmtrain.train.flops import device_peak, throughput

    assert throughput(4e12, 2.0, 2, 10.0) == {"tflops": 1.0, "mfu": 0.1}
    assert throughput(4e12, 2.0, 2, None) == {"tflops": 1.0}
    assert device_peak("bf16", 123.0) == (123.0, "log.peak_tflops")


def test_segment_lengths_per_row_and_example():
    from vlmtrain.data.packing import segment_lengths

    pos = torch.tensor([[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0]])
    assert segment_lengths(pos, mask).tolist() == [3, 2, 4, 1]
    with pytest.raises(ValueError, match="before the first"):
        segment_lengths(torch.tensor([[1, 0]]), torch.tensor([[1, 1]]))


def test_pooled_prefix_projector_counts_once_per_image(build):
    """ClipCap/FROMAGe shape: one pooled embedding -> 3 prefix tokens by one linear map."""
    from vlmtrain.train.flops import FlopModel

    model = build(vision_feature="pooled", num_visual_tokens=3, projector="linear")
    fm = FlopModel.from_model(model)
    assert fm.image_projector == 2 * TINY_VISION["embed_dim"] * 3 * D
    assert fm.image_vision == tower_forward_flops()
    assert (fm.mult_lm, fm.mult_projector) == (2, 3)  # model.train defaults to ["projector"]
