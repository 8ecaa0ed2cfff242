"""Resume state: only complete checkpoints resume, debris is pruned, and `.pt` files are read
without pickle (a crafted file whose unpickling would run code is refused, and nothing runs)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from tests.train_loop.test_train import run_in_process
from vlmdata.core.errors import DataError
from vlmtrain.train import resume as rs


def fake_checkpoint(ckpt: Path, tag: str, world: int, commit: bool = True) -> Path:
    """A checkpoint folder with DeepSpeed's file names (ZeRO: one optimizer file per rank)."""
    folder = ckpt / tag
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "mp_rank_00_model_states.pt").write_bytes(b"model")
    for r in range(world):
        (folder / f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt").write_bytes(b"optim")
        (folder / f"rng-rank{r}.safetensors").write_bytes(b"rng")
    rs.write_position(ckpt, tag, {"next_batch": int(tag[4:]), "world": world})
    if commit:
        rs.mark_complete(ckpt, tag)
        rs.write_latest(ckpt, tag)
    return folder


def test_resume_takes_the_newest_complete_checkpoint(tmp_path):
    ckpt = tmp_path / "checkpoints"
    assert rs.resume_tag(ckpt) is None
    fake_checkpoint(ckpt, "step0000003", world=2)
    # killed before the commit: every file there, no complete.json, `latest` still on step 3
    fake_checkpoint(ckpt, "step0000006", world=2, commit=False)
    assert rs.incomplete_reason(ckpt, "step0000006").startswith("no readable complete.json")
    assert rs.resume_tag(ckpt) == "step0000003" == rs.latest_tag(ckpt)
    # committed, then a file lost or cut short: not complete either
    rs.mark_complete(ckpt, "step0000006")
    assert rs.resume_tag(ckpt) == "step0000006"
    (ckpt / "step0000006" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").write_bytes(b"opt")
    assert "zero_pp_rank_1" in rs.incomplete_reason(ckpt, "step0000006")
    assert rs.resume_tag(ckpt) == "step0000003"
    (ckpt / "step0000006" / "zero_pp_rank_1_mp_rank_00_optim_states.pt").unlink()
    assert rs.resume_tag(ckpt) == "step0000003"


def test_a_checkpoint_without_every_ranks_rng_is_not_complete(tmp_path):
    ckpt = tmp_path / "checkpoints"
    folder = fake_checkpoint(ckpt, "step0000002", world=2, commit=False)
    (folder / "rng-rank1.safetensors").unlink()
    rs.mark_complete(ckpt, "step0000002")  # lists what is there: still short of rank 1's RNG
    assert rs.incomplete_reason(ckpt, "step0000002") == "no RNG state for rank(s) [1]"
    assert rs.resume_tag(ckpt) is None


def test_prune_keeps_the_newest_complete_and_removes_debris(tmp_path):
    ckpt = tmp_path / "checkpoints"
    for step in (2, 4, 6):
        fake_checkpoint(ckpt, f"step{step:07d}", world=1)
    fake_checkpoint(ckpt, "step0000009", world=1, commit=False)  # a killed save's folder
    fake_checkpoint(ckpt, "step0000008", world=1)
    rs.prune_checkpoints(ckpt, keep=2, protect=["step0000008"])
    assert rs.step_tags(ckpt) == ["step0000006", "step0000008"]


class _WritesMarker:
    """Unpickling this calls open(marker, "w"): code run by merely loading a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (builtins.open, (self.marker, "w"))


def _crafted(path: Path, marker: Path) -> Path:
    import torch

    torch.save({"module": {"w": torch.zeros(2)}, "evil": _WritesMarker(marker)}, path)
    return path


def test_crafted_pt_is_refused_and_runs_nothing(tmp_path):
    import torch

    # the crafted file is live: an ordinary unpickling load does run its code
    live = tmp_path / "live-marker"
    torch.load(_crafted(tmp_path / "live.pt", live), weights_only=False)  # noqa: S614
    assert live.exists()
    marker = tmp_path / "marker"
    path = _crafted(tmp_path / "mp_rank_00_model_states.pt", marker)
    with pytest.raises(DataError) as err:
        rs.safe_torch_load(path)
    assert not marker.exists()
    msg = str(err.value)
    assert "refusing to load a checkpoint file: it holds io.open" in msg  # builtins.open
    assert str(path) in msg


@pytest.mark.slow
@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_every_zero_stage_checkpoint_loads_without_pickle(zero, dataset, tmp_path, one_rank):
    """The allowlist covers what DeepSpeed really writes at each ZeRO stage."""
    import torch

    out = tmp_path / "run"
    extra = [f"deepspeed.zero_stage={zero}", "schedule.max_steps=1"]
    run_in_process("fromage_tiny.yaml", dataset, out, *extra)
    files = sorted((out / "checkpoints" / "step0000001").glob("*.pt"))
    assert len(files) == (2 if zero else 1)
    for f in files:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(f)
        allowed = {f"{g.__module__}.{g.__qualname__}" for g in rs.allowed_globals()}
        assert set(unsafe) <= allowed, (f.name, unsafe)
        assert isinstance(rs.safe_torch_load(f), dict)


@pytest.mark.slow
def test_resume_refuses_a_crafted_checkpoint(dataset, tmp_path, one_rank):
    out = tmp_path / "run"
    run_in_process("grace_tiny.yaml", dataset, out, "schedule.max_steps=2")
    ckpt = out / "checkpoints"
    tag = rs.resume_tag(ckpt)
    marker = tmp_path / "marker"
    target = ckpt / tag / "mp_rank_00_model_states.pt"
    _crafted(target, marker)
    rs.mark_complete(ckpt, tag)  # a complete-looking checkpoint: the content is the attack
    with pytest.raises(DataError) as err:
        run_in_process("grace_tiny.yaml", dataset, out, "schedule.max_steps=3", resume=True)
    assert not marker.exists()
    assert str(target) in str(err.value) and "it holds io.open" in str(err.value)
    assert json.loads((ckpt / tag / "complete.json").read_text())["tag"] == tag
