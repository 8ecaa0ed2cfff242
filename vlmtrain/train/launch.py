"""`vlmtrain launch`: resolve the config, save it beside the checkpoints, run DeepSpeed's launcher.

The launcher (`python -m deepspeed.launcher.runner`, what the `deepspeed` command runs) starts
`python -m vlmtrain.train.entry --config OUTPUT/config.yaml` once per rank. Commands are argument
lists, never shell strings.

The accelerator is chosen where the ranks run, never from the launching machine alone: a
single-node run starts its ranks here, so without CUDA here it gets `DS_ACCELERATOR=cpu` (gloo;
`--num-gpus N` then means N CPU ranks). A hostfile / multi-node run leaves the choice to each
rank's machine (vlmtrain.train.entry), unless `accelerator` names one explicitly; then it is set
for the launcher and passed to every rank as `--accelerator`. Likewise the rendezvous port of a
hostfile run is not probed on the launching machine (rank 0 runs on the first host): it is
`master_port` or DeepSpeed's default, 29500.

Before any rank starts, `vlmtrain.train.preflight` checks the paths, the stream mix and the
columns the recipe reads (seconds here instead of minutes inside every rank).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vlmdata.core.lifetime import stop_group
from vlmdata.core.net import free_port
from vlmtrain.errors import CheckpointError, ConfigError, TrainError
from vlmtrain.train.checkpoint import CHECKPOINT_DIR
from vlmtrain.train.config import load_config, save_config, to_dict

ENTRY_MODULE = "vlmtrain.train.entry"


@dataclass
class LaunchPlan:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # variables added to the environment
    config_path: Path = Path()
    note: str | None = None  # said on stderr: where a dry run wrote the config, if not there

    def display(self) -> str:
        """The command as one could type it (for --dry-run; never executed as a string)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


DEFAULT_MASTER_PORT = 29500  # DeepSpeed's and torch.distributed's default rendezvous port
ACCELERATORS = ("auto", "cpu", "cuda", "xpu", "npu", "hpu", "mps")


def accelerator_env(accelerator: str = "auto", local: bool = True) -> dict[str, str]:
    """The DS_ACCELERATOR the launcher runs with: an explicit choice; for a local run with
    "auto", cpu when this machine (where its ranks run) has no CUDA; otherwise nothing."""
    if accelerator != "auto":
        return {"DS_ACCELERATOR": accelerator}
    if not local or "DS_ACCELERATOR" in os.environ:
        return {}
    import torch

    return {} if torch.cuda.is_available() else {"DS_ACCELERATOR": "cpu"}


def plan_launch(
    config: str | os.PathLike,
    overrides: list[str] = (),
    *,
    num_gpus: int | None = None,
    num_nodes: int | None = None,
    hostfile: str | None = None,
    master_port: int | None = None,
    accelerator: str = "auto",
    resume: bool = False,
    launcher_log: str = "warning",
    dry_run: bool = False,
    check: bool = True,
) -> LaunchPlan:
    """The launcher command for CONFIG + overrides; runs the pre-flight checks unless `check`
    is False and writes the resolved config the command reads: OUTPUT/config.yaml, or for a
    `dry_run` that finds another config there, OUTPUT/config.dry-run.yaml (`plan.note` says)."""
    if accelerator not in ACCELERATORS:
        raise ConfigError(f"--accelerator must be one of {ACCELERATORS}, got {accelerator!r}")
    cfg = load_config(config, list(overrides))
    resolved = (Path(cfg.output_dir) / "config.yaml").absolute()
    local = not hostfile and not (num_nodes and num_nodes > 1)
    if resume:  # checked first: a refusal writes nothing
        check_resume_schedule(cfg, resolved)
    if resume and local:
        num_gpus = resume_ranks(Path(cfg.output_dir) / CHECKPOINT_DIR, num_gpus)
    if check:
        from vlmtrain.train.preflight import preflight

        preflight(cfg)
    note = None
    if dry_run and _holds_another_config(resolved, cfg):
        kept, resolved = resolved, resolved.with_name(DRY_RUN_CONFIG)
        note = (
            f"{kept} holds another config (an earlier run's; --resume checks against it), so "
            f"the dry run left it and wrote the resolved config to {resolved}"
        )
    resolved.parent.mkdir(parents=True, exist_ok=True)
    save_config(cfg, resolved)
    argv = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if hostfile:
        argv += ["--hostfile", str(hostfile)]
    if num_nodes:
        argv += ["--num_nodes", str(num_nodes)]
    if num_gpus:
        argv += ["--num_gpus", str(num_gpus)]
    port = master_port or (free_port() if local else DEFAULT_MASTER_PORT)
    argv += ["--master_port", str(port), "--log_level", launcher_log]
    argv += ["--module", ENTRY_MODULE, "--config", str(resolved)]
    if accelerator != "auto":
        argv += ["--accelerator", accelerator]
    if resume:
        argv.append("--resume")
    env = accelerator_env(accelerator, local)
    return LaunchPlan(argv=argv, env=env, config_path=resolved, note=note)


DRY_RUN_CONFIG = "config.dry-run.yaml"


def _holds_another_config(path: Path, cfg) -> bool:
    """Whether `path` exists with a config other than `cfg` (unreadable counts as other)."""
    if not path.exists():
        return False
    try:
        return to_dict(load_config(path)) != to_dict(cfg)
    except (TrainError, OSError):
        return True


_SCHEDULE_FIELDS = ("max_steps", "epochs", "warmup_steps", "min_lr_ratio")


def check_resume_schedule(cfg, saved: Path) -> None:
    """Refuse a resume that changes the learning-rate schedule: the checkpoint restores the
    scheduler's own state (its warm-up, total and floor), so `schedule.max_steps=16` on a run
    of 8 would train steps 9-16 at the floor (lr 0 by default), silently."""
    if not saved.is_file():
        return
    old = load_config(saved).schedule
    new = cfg.schedule
    changed = [
        f"schedule.{f} {getattr(old, f)} -> {getattr(new, f)}"
        for f in _SCHEDULE_FIELDS
        if getattr(old, f) != getattr(new, f)
    ]
    if changed:
        raise ConfigError(
            f"--resume restores the run's learning-rate schedule from its checkpoint, so "
            f"{', '.join(changed)} would not take effect (steps past the old end would run at "
            f"lr x min_lr_ratio): resume without changing schedule.*, or start a new run "
            f"(another output_dir)",
            file=str(saved),
        )


def resume_ranks(ckpt_dir: Path, num_gpus: int | None) -> int | None:
    """Ranks for a single-node resume: the latest checkpoint's world size by default.

    ZeRO partitions and the data position are per rank, so a resume with another world size
    would fail inside every rank after the models load; refuse it here instead.
    """
    from vlmtrain.train.resume import read_position, resume_tag

    tag = resume_tag(ckpt_dir)
    pos = read_position(ckpt_dir, tag) if tag else None
    if not pos or "world" not in pos:
        return num_gpus
    world = int(pos["world"])
    if num_gpus is not None and num_gpus != world:
        raise CheckpointError(
            f"checkpoint {tag} was written by {world} ranks; resume with --num-gpus {world} "
            "(ZeRO partitions and data positions cannot be re-split)",
            file=str(ckpt_dir / tag),
        )
    return world


STOP_SECONDS = 30  # ranks get this long after SIGTERM before SIGKILL


def run_launch(plan: LaunchPlan) -> int:
    """Run the launcher; its exit status (non-zero when any rank failed).

    The launcher leads its own process group, so that a Ctrl-C or SIGTERM of `vlmtrain launch`
    reaches all of it: DeepSpeed's single-node runner has no SIGTERM handler and would die
    alone, leaving its `launch.py` and every rank training with nobody waiting for them."""
    env = {**os.environ, **plan.env}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    proc = subprocess.Popen(plan.argv, env=env, start_new_session=True)
    try:
        return proc.wait()
    except BaseException:
        stop_group(proc, STOP_SECONDS)
        raise
