"""LLaVA-1.5 `mm_projector.bin` into the projector, weights-only (AutoVER's initialisation).

Fixture layout: LLaVA's `LlavaMetaModel` saves `model.mm_projector.{0,2}.{weight,bias}` for
mlp2x_gelu (haotian-liu/LLaVA, llava/train/train.py `safe_save_model_for_hf_trainer` with
tune_mm_mlp_adapter; AutoVER's train_oven_ret.py keeps that layout), written by `torch.save`.
"""

from __future__ import annotations

import pytest
import torch

from vlmdata.core.errors import DataError
from vlmtrain.model.projector import build_projector
from vlmtrain.model.projector_init import load_llava_projector


def _llava_file(path, in_dim=8, out_dim=16, extra=None):
    g = torch.Generator().manual_seed(3)
    state = {
        "model.mm_projector.0.weight": torch.randn(out_dim, in_dim, generator=g),
        "model.mm_projector.0.bias": torch.randn(out_dim, generator=g),
        "model.mm_projector.2.weight": torch.randn(out_dim, out_dim, generator=g),
        "model.mm_projector.2.bias": torch.randn(out_dim, generator=g),
        **(extra or {}),
    }
    torch.save(state, path)
    return state


class _RunsCode:
    """Unpickling this calls open(marker, "w"): what a crafted pickle could do instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_llava_layout_loads_into_the_projector(tmp_path):
    state = _llava_file(tmp_path / "mm_projector.bin")
    proj = build_projector("mlp2x_gelu", 8, 16)
    load_llava_projector(proj, tmp_path / "mm_projector.bin")
    assert torch.equal(proj.net[0].weight, state["model.mm_projector.0.weight"])
    assert torch.equal(proj.net[2].bias, state["model.mm_projector.2.bias"])
    x = torch.randn(2, 3, 8)
    w0, b0 = state["model.mm_projector.0.weight"], state["model.mm_projector.0.bias"]
    w2, b2 = state["model.mm_projector.2.weight"], state["model.mm_projector.2.bias"]
    want = torch.nn.functional.gelu(x @ w0.T + b0) @ w2.T + b2  # LLaVA's mlp2x_gelu
    assert torch.allclose(proj(x), want, atol=1e-5)


def test_crafted_pickle_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "mm_projector.bin"
    _llava_file(path, extra={"model.mm_projector.evil": _RunsCode(marker)})
    proj = build_projector("mlp2x_gelu", 8, 16)
    before = [p.clone() for p in proj.parameters()]
    with pytest.raises(DataError, match="refused"):
        load_llava_projector(proj, path)
    assert not marker.exists()  # nothing was executed
    assert all(torch.equal(a, b) for a, b in zip(before, proj.parameters(), strict=True))


def test_wrong_shape_or_layout_names_the_file(tmp_path):
    _llava_file(tmp_path / "p.bin", in_dim=4)
    with pytest.raises(DataError, match=r"p.bin.*net.0.weight: shape \(16, 4\)"):
        load_llava_projector(build_projector("mlp2x_gelu", 8, 16), tmp_path / "p.bin")
    with pytest.raises(DataError, match="missing.*net.weight"):
        load_llava_projector(build_projector("linear", 8, 16), tmp_path / "p.bin")
