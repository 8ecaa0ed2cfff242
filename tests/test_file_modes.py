"""Every file we write gets 0666 less the umask (README, "Atomicity"), .safetensors included:
safetensors' save_file replaces the temp file with a new 0600 one."""

from __future__ import annotations

import os
import stat

import pytest


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_safetensors_through_atomic_path(tmp_path, umask):
    import torch
    from safetensors.torch import save_file

    from vlmdata.core.atomic import atomic_open, atomic_path

    with atomic_path(tmp_path / "w.safetensors") as tmp:
        save_file({"x": torch.zeros(2)}, str(tmp))
    with atomic_open(tmp_path / "a.json") as f:
        f.write("{}")
    assert _mode(tmp_path / "w.safetensors") == 0o666 & ~umask
    assert _mode(tmp_path / "a.json") == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


def test_rng_state_and_demo_clip(tmp_path, umask):
    from vlmdata.demo.clip import save_demo_clip
    from vlmtrain.train.resume import save_rng

    save_rng(tmp_path / "ckpt", "step1", 0)
    assert _mode(tmp_path / "ckpt" / "step1" / "rng-rank0.safetensors") == 0o666 & ~umask
    out = save_demo_clip(tmp_path / "clip", width=32, image_size=32)
    assert _mode(out / "open_clip_model.safetensors") == 0o666 & ~umask
