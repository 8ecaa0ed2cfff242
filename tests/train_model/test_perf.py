"""Parallelism defaults (vlmtrain.train.perf): the ZeRO stage rule with model-state bytes counted
by hand, fused AdamW, torch.compile of the LM, and the one pad-id rule."""

from __future__ import annotations

import pytest
import torch

GIB = 2**30
B = 10**9  # parameters


@pytest.mark.parametrize(
    "stage, world, precision, want",
    [
        # bf16 + fp32 Adam: 2 + 2 + 12 bytes per trainable parameter (+4: stage 0's fp32 grads)
        (0, 1, "bf16", 20 * B + 2 * 0.3 * B),
        (1, 4, "bf16", (2 + 2 + 12 / 4) * B + 2 * 0.3 * B),
        (2, 4, "bf16", (2 + (2 + 12) / 4) * B + 2 * 0.3 * B),
        (3, 4, "bf16", (16 / 4) * B + 2 * 0.3 * B / 4),
        (0, 1, "fp32", 16 * B + 4 * 0.3 * B),
    ],
)
def test_state_bytes_by_hand(stage, world, precision, want):
    from vlmtrain.train.perf import state_bytes

    assert state_bytes(stage, world, B, int(0.3 * B), precision) == pytest.approx(want)


def test_zero_stage_rule():
    from vlmtrain.train.perf import choose_zero_stage

    h200 = 141 * GIB
    grace = (1.1 * B, 0.3 * B)  # 1.1B trained LM + projector, frozen ViT-L
    # one rank: nothing to partition -> stage 0 (22.6 GB of states fit half of an H200)
    stage, why = choose_zero_stage("auto", 1, *grace, "bf16", h200)
    assert stage == 0 and "1 rank" in why
    # one rank, states beyond half the device: stage 1 (one fp32 copy less)
    assert choose_zero_stage("auto", 1, 7 * B, 0, "bf16", 80 * GIB)[0] == 1
    # several ranks: the lowest stage that fits
    assert choose_zero_stage("auto", 8, *grace, "bf16", h200)[0] == 0
    # 7B on 8 x 80 GiB (40 GiB = 42.9 GB for states): stage 0 needs 140 GB, stage 1 38.5 GB
    assert choose_zero_stage("auto", 8, 7 * B, 0, "bf16", 80 * GIB)[0] == 1
    # 13B: stage 1 71.5 GB, stage 2 (2 + 14/8) * 13 = 48.75 GB, stage 3 26 GB
    assert choose_zero_stage("auto", 8, 13 * B, 0, "bf16", 80 * GIB)[0] == 3
    assert choose_zero_stage("auto", 4, 1 * B, 0, "fp32", None)[0] == 0  # CPU: memory unknown
    assert choose_zero_stage("auto", 1, *grace, "bf16", h200, offload=True)[0] == 2
    # an explicit stage is kept; over one rank it says what it costs
    stage, why = choose_zero_stage(3, 1, *grace, "bf16", h200)
    assert stage == 3 and "partitions nothing" in why
    assert choose_zero_stage(3, 8, *grace, "bf16", h200) == (3, "ZeRO-3 (configured)")


def test_adamw_is_fused_where_the_device_supports_it():
    from vlmtrain.train.perf import adamw_factory

    make = adamw_factory({"lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0})
    p = torch.nn.Parameter(torch.ones(3))
    opt = make([{"params": [p], "weight_decay": 0.0}])
    assert opt.defaults["fused"] is True  # torch's fused AdamW runs on CPU too
    p.grad = torch.ones(3)
    opt.step()
    ref = torch.nn.Parameter(torch.ones(3))
    plain = torch.optim.AdamW([ref], lr=0.1, weight_decay=0.0)
    ref.grad = torch.ones(3)
    plain.step()
    assert torch.allclose(p, ref)


def test_compiled_lm_gives_the_same_loss_and_names(build):
    from vlmtrain.train.perf import compile_lm

    model = build(train=["projector", "lm"]).eval()
    ids = torch.arange(5, 17)[None]
    before = model(ids, torch.ones_like(ids), labels=ids).loss
    names = [n for n, _ in model.named_parameters()]
    assert compile_lm(model, False) is None
    assert compile_lm(model, "eager") == "eager"  # dynamo traces; no C++ toolchain needed
    after = model(ids, torch.ones_like(ids), labels=ids).loss
    assert torch.allclose(before, after)
    assert [n for n, _ in model.named_parameters()] == names  # checkpoints read the same


def test_one_pad_rule(tokenizer):
    from vlmdata.core.tokenizer import pad_id

    class Tok:
        pad_token_id, eos_token_id = None, 7

    assert pad_id(Tok()) == 7
    Tok.pad_token_id = 0  # id 0 is a pad id, not "missing"
    assert pad_id(Tok()) == 0
    Tok.pad_token_id = Tok.eos_token_id = None
    with pytest.raises(ValueError, match="neither"):
        pad_id(Tok())
    assert pad_id(tokenizer) == tokenizer.pad_token_id
