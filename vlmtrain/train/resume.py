"""Resume state: when a checkpoint is complete, which one `--resume` takes, loading without pickle.

A checkpoint folder `checkpoints/stepNNNNNNN/` holds DeepSpeed's files (model states, one ZeRO
optimizer partition per rank), one `rng-rankR.safetensors` per rank and `data_position.json`
(the data position and the world size). It is complete only once every rank has written all of
them: rank 0 then lists the folder with each file's size in `complete.json`, and only after that
points `latest` at it (atomically; DeepSpeed's own early `latest` is switched off). A kill at any
moment of a save leaves either the previous complete checkpoint or the new one; `--resume` takes
the newest complete checkpoint and the next save removes the debris (docs/DESIGN.md, Trainer).

Resuming never unpickles arbitrary objects: DeepSpeed's `.pt` files are read with
`torch.load(weights_only=True)` and an allowlist of the plain DeepSpeed types they hold; anything
else (a class whose unpickling would run code) is refused with a clear error.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from vlmdata.core.atomic import atomic_open, atomic_path, write_json
from vlmtrain.errors import CheckpointError
from vlmtrain.train import testing

LATEST = "latest"
POSITION = "data_position.json"
COMPLETE = "complete.json"


def checkpoint_tag(step: int) -> str:
    return f"step{step:07d}"


# ---- completeness ------------------------------------------------------------------------------


def mark_complete(ckpt_dir: str | os.PathLike, tag: str) -> None:
    """Rank 0, after every rank wrote its files: record them (name -> size) in complete.json."""
    folder = Path(ckpt_dir) / tag
    files = {
        p.name: p.stat().st_size
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != COMPLETE and ".tmp-" not in p.name
    }
    write_json(folder / COMPLETE, {"tag": tag, "files": files})


def incomplete_reason(ckpt_dir: str | os.PathLike, tag: str) -> str | None:
    """None when checkpoint `tag` is complete, else what is missing (for messages and tests)."""
    folder = Path(ckpt_dir) / tag
    try:
        files = json.loads((folder / COMPLETE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no readable {COMPLETE} (the save did not finish)"
    for name, size in files.items():
        f = folder / name
        if not f.is_file() or f.stat().st_size != size:
            return f"{name} is missing or not the size recorded at save"
    position = read_position(ckpt_dir, tag)
    if not position or "world" not in position:
        return f"no {POSITION} with the world size"
    world = int(position["world"])
    missing = [r for r in range(world) if f"rng-rank{r}.safetensors" not in files]
    if missing:
        return f"no RNG state for rank(s) {missing}"
    if not any(n.endswith("model_states.pt") for n in files):
        return "no model states"
    return None


def step_tags(ckpt_dir: str | os.PathLike) -> list[str]:
    """Every step folder, oldest first (complete or not)."""
    root = Path(ckpt_dir)
    return sorted(p.name for p in root.glob("step*") if p.is_dir()) if root.is_dir() else []


def resume_tag(ckpt_dir: str | os.PathLike) -> str | None:
    """The newest complete checkpoint, or None when there is none."""
    for tag in reversed(step_tags(ckpt_dir)):
        if incomplete_reason(ckpt_dir, tag) is None:
            return tag
    return None


def latest_tag(ckpt_dir: str | os.PathLike) -> str | None:
    """The tag `latest` names (the last committed checkpoint), or None when there is none yet."""
    f = Path(ckpt_dir) / LATEST
    return f.read_text(encoding="utf-8").strip() if f.exists() else None


def write_latest(ckpt_dir: str | os.PathLike, tag: str) -> None:
    """Point `latest` at `tag`, atomically: the last write of a save (the commit)."""
    with atomic_open(Path(ckpt_dir) / LATEST, "w", encoding="utf-8") as f:
        f.write(tag)


def prune_checkpoints(ckpt_dir: str | os.PathLike, keep: int, protect: Iterable[str]) -> None:
    """Rank 0, after a commit: keep the newest `keep` complete checkpoints (0: all) and remove
    every incomplete folder (debris of a killed save) except those in `protect`."""
    protect = set(protect)
    complete = [t for t in step_tags(ckpt_dir) if incomplete_reason(ckpt_dir, t) is None]
    kept = set(complete if keep <= 0 else complete[-keep:]) | protect
    for tag in step_tags(ckpt_dir):
        if tag not in kept:
            shutil.rmtree(Path(ckpt_dir) / tag, ignore_errors=True)


# ---- data position and RNG ---------------------------------------------------------------------


def write_position(ckpt_dir: str | os.PathLike, tag: str, state: dict[str, Any]) -> None:
    write_json(Path(ckpt_dir) / tag / POSITION, state)


def read_position(ckpt_dir: str | os.PathLike, tag: str) -> dict[str, Any] | None:
    f = Path(ckpt_dir) / tag / POSITION
    try:
        return json.loads(f.read_text(encoding="utf-8")) if f.exists() else None
    except ValueError as e:
        raise CheckpointError(f"not valid JSON: {e}", file=str(f)) from e


def save_rng(ckpt_dir: str | os.PathLike, tag: str, rank: int) -> None:
    """This rank's torch RNG state (dropout masks), so a resumed step draws the same ones."""
    import torch
    from safetensors.torch import save_file

    state = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    with atomic_path(Path(ckpt_dir) / tag / f"rng-rank{rank}.safetensors") as tmp:
        save_file(state, str(tmp))


def load_rng(ckpt_dir: str | os.PathLike, tag: str, rank: int) -> None:
    """Restore what `save_rng` wrote (a complete checkpoint has it for every rank)."""
    import torch
    from safetensors.torch import load_file

    f = Path(ckpt_dir) / tag / f"rng-rank{rank}.safetensors"
    if not f.exists():
        raise CheckpointError(f"no RNG state for rank {rank}", file=str(f))
    state = load_file(str(f))
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


# ---- loading DeepSpeed's .pt files without pickle ---------------------------------------------


def allowed_globals() -> list[Any]:
    """The non-tensor types DeepSpeed's checkpoints hold (found by saving ZeRO 0-3 checkpoints
    and listing `torch.serialization.get_unsafe_globals_in_checkpoint`): plain data classes and
    enums whose unpickling sets attributes and runs nothing."""
    import collections

    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [
        collections.OrderedDict,
        LossScaler,
        DynamicLossScaler,
        ZeroStageEnum,
        fragment_address,
    ]


def safe_torch_load(path: str | os.PathLike, map_location: Any = None) -> Any:
    """`torch.load` with `weights_only=True` and only `allowed_globals`; a file holding anything
    else is refused with a CheckpointError naming it (nothing in it is executed)."""
    import torch

    try:
        with torch.serialization.safe_globals(allowed_globals()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = found.group(1) if found else str(e).splitlines()[0]
        raise CheckpointError(
            f"refusing to load a checkpoint file: it holds {what}, which is neither a tensor nor "
            "one of DeepSpeed's allowlisted plain types (unpickling it could run code)",
            file=str(path),
        ) from None


def install_safe_checkpoint_engine(engine) -> None:
    """Swap DeepSpeed's torch checkpoint engine for one that loads through `safe_torch_load`
    (same files, same saving)."""
    from deepspeed.runtime.checkpoint_engine.torch_checkpoint_engine import TorchCheckpointEngine

    class SafeCheckpointEngine(TorchCheckpointEngine):
        def load(self, path: str, map_location=None):
            return safe_torch_load(path, map_location)

        def save(self, state_dict, path: str):
            super().save(state_dict, path)
            if path.endswith("model_states.pt"):
                testing.reached("model_states")  # between the model and optimizer files

    current = engine.checkpoint_engine
    if type(current) is not TorchCheckpointEngine:
        raise CheckpointError(
            f"checkpoint engine {type(current).__name__} is not supported: vlmtrain loads "
            "checkpoints only through its no-pickle reader (leave DeepSpeed's default engine)"
        )
    safe = SafeCheckpointEngine.__new__(SafeCheckpointEngine)
    safe.__dict__.update(current.__dict__)
    engine.checkpoint_engine = safe
