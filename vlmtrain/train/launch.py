"""`vlmtrain launch`: resolve the config, save it beside the checkpoints, run DeepSpeed's launcher.

The launcher (`python -m deepspeed.launcher.runner`, what the `deepspeed` command runs) starts
`python -m vlmtrain.train.entry --config OUTPUT/config.yaml` once per rank. Commands are argument
lists, never shell strings. Without CUDA, `DS_ACCELERATOR=cpu` makes DeepSpeed use gloo, and
`--num-gpus N` then means N CPU ranks.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from vlmdata.core.net import free_port
from vlmtrain.train.config import load_config, save_config

ENTRY_MODULE = "vlmtrain.train.entry"


@dataclass
class LaunchPlan:
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)  # variables added to the environment
    config_path: Path = Path()

    def display(self) -> str:
        """The command as one could type it (for --dry-run; never executed as a string)."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        return (env + " " if env else "") + shlex.join(self.argv)


def accelerator_env() -> dict[str, str]:
    """DS_ACCELERATOR=cpu when there is no CUDA device (and the user set none)."""
    if "DS_ACCELERATOR" in os.environ:
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
    resume: bool = False,
    stop_after: int | None = None,
    launcher_log: str = "warning",
    write: bool = True,
) -> LaunchPlan:
    """The launcher command for CONFIG + overrides; writes OUTPUT/config.yaml unless `write`
    is False (dry run)."""
    cfg = load_config(config, list(overrides))
    resolved = (Path(cfg.output_dir) / "config.yaml").absolute()
    if resume and not hostfile and not num_nodes:  # checked first: a refusal writes nothing
        num_gpus = resume_ranks(Path(cfg.output_dir) / "checkpoints", num_gpus)
    if write:
        resolved.parent.mkdir(parents=True, exist_ok=True)
        save_config(cfg, resolved)
    argv = [sys.executable, "-m", "deepspeed.launcher.runner"]
    if hostfile:
        argv += ["--hostfile", str(hostfile)]
    if num_nodes:
        argv += ["--num_nodes", str(num_nodes)]
    if num_gpus:
        argv += ["--num_gpus", str(num_gpus)]
    argv += ["--master_port", str(master_port or free_port()), "--log_level", launcher_log]
    argv += ["--module", ENTRY_MODULE, "--config", str(resolved)]
    if resume:
        argv.append("--resume")
    if stop_after is not None:
        argv += ["--stop-after", str(stop_after)]
    return LaunchPlan(argv=argv, env=accelerator_env(), config_path=resolved)


def resume_ranks(ckpt_dir: Path, num_gpus: int | None) -> int | None:
    """Ranks for a single-node resume: the latest checkpoint's world size by default.

    ZeRO partitions and the data position are per rank, so a resume with another world size
    would fail inside every rank after the models load; refuse it here instead.
    """
    from vlmdata.core.errors import DataError
    from vlmtrain.train.checkpoint import latest_tag, read_position

    tag = latest_tag(ckpt_dir)
    pos = read_position(ckpt_dir, tag) if tag else None
    if not pos or "world" not in pos:
        return num_gpus
    world = int(pos["world"])
    if num_gpus is not None and num_gpus != world:
        raise DataError(
            f"checkpoint {tag} was written by {world} ranks; resume with --num-gpus {world} "
            "(ZeRO partitions and data positions cannot be re-split)",
            file=str(ckpt_dir / tag),
        )
    return world


def run_launch(plan: LaunchPlan) -> int:
    """Run the launcher; its exit status (non-zero when any rank failed)."""
    env = {**os.environ, **plan.env}
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    return subprocess.run(plan.argv, env=env, check=False).returncode
