"""A running engine's checkpoints: save (every rank, committed last), resume, and the export.

The on-disk rules (tags, completeness, RNG files, reading .pt without pickle) are in
vlmtrain.train.resume; what an export holds is in vlmtrain.train.checkpoint. This module is the
order in which a run's ranks do those things, with the barriers that keep them in step.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch.distributed as dist

from vlmtrain.errors import CheckpointError
from vlmtrain.train import resume as rs
from vlmtrain.train import testing
from vlmtrain.train.checkpoint import export_names, gathered_state, write_export
from vlmtrain.train.config import TrainConfig


def save(engine, ckpt_dir: Path, step: int, position: dict[str, Any], rank: int, keep: int):
    """Every rank saves its partition (rank 0 alone would hang ZeRO-3); the checkpoint is
    committed (complete.json, then `latest`) only after every rank wrote everything."""
    tag = rs.checkpoint_tag(step)
    testing.saving(step)
    if rank == 0:  # debris of a killed save of this very step
        shutil.rmtree(ckpt_dir / tag, ignore_errors=True)
    dist.barrier()
    engine.save_checkpoint(
        str(ckpt_dir),
        tag=tag,
        client_state={"data": position, "step": step},
        save_latest=False,  # ours is written last, once the checkpoint is complete
        exclude_frozen_parameters=True,  # rebuilt by build_parts; a 7B frozen LM stays out
    )
    testing.reached("deepspeed_saved")
    rs.save_rng(ckpt_dir, tag, rank)
    dist.barrier()
    if rank == 0:
        rs.write_position(ckpt_dir, tag, position)
        rs.mark_complete(ckpt_dir, tag)
        testing.reached("before_latest")
        rs.write_latest(ckpt_dir, tag)
        rs.prune_checkpoints(ckpt_dir, keep, [tag])
    testing.saving(None)
    dist.barrier()


def resume(engine, ckpt_dir: Path, rank: int, check_position) -> tuple[int, int] | None:
    """Load the newest complete checkpoint (weights, optimizer, LR, data position, RNG):
    (step, next batch as `check_position` accepts the saved position); None if there is none."""
    tag = rs.resume_tag(ckpt_dir)
    if tag is None:
        return None
    # frozen parameters are not in the checkpoint (see save), hence not strict
    path, client = engine.load_checkpoint(str(ckpt_dir), tag=tag, load_module_strict=False)
    if path is None:
        raise CheckpointError(
            "DeepSpeed could not load this checkpoint (a partial or foreign save?)",
            file=str(ckpt_dir / tag),
        )
    next_batch = check_position(client["data"])
    rs.load_rng(ckpt_dir, tag, rank)
    return int(client["step"]), next_batch


def export(engine, cfg: TrainConfig, tokenizer, lifted: dict[str, tuple], step: int, rank: int):
    """Gather the exported parameters (all ranks) and write OUTPUT/export (rank 0); 0-d
    parameters held as (1,) while training (`lifted`) get their true shape back."""
    names = export_names(engine.module, cfg.model, cfg.export)
    state = gathered_state(engine.module, names, rank)
    for name, shape in lifted.items():
        if name in state:
            state[name] = state[name].reshape(shape)
    path = None
    if rank == 0:
        info = {"step": step, "mode": cfg.export, "recipe": cfg.recipe.name}
        path = write_export(Path(cfg.output_dir) / "export", state, cfg, tokenizer, info)
    dist.barrier()
    return path
