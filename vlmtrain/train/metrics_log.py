"""Training metrics: JSONL always (rank 0), TensorBoard / wandb when asked (imported lazily).

`metrics.jsonl` holds one object per logged optimizer step. On resume the lines of steps after
the checkpoint are dropped first, so the file reads like one uninterrupted run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlmdata.core.atomic import atomic_open


def truncate_jsonl(path: str | os.PathLike, keep_below: int, field: str = "step") -> int:
    """Drop lines whose `field` >= keep_below (atomically); returns the lines kept."""
    path = Path(path)
    if not path.exists():
        return 0
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and json.loads(line).get(field, -1) < keep_below:
            kept.append(line)
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("".join(k + "\n" for k in kept))
    return len(kept)


class JsonlWriter:
    """Append-only JSON lines, flushed per line (a killed run keeps what it logged)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, sort_keys=True) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class MetricsLogger:
    """Rank 0 writes metrics.jsonl (+ TensorBoard events / wandb); other ranks write nothing."""

    def __init__(
        self,
        output_dir: str | os.PathLike,
        *,
        enabled: bool,
        tensorboard: bool = False,
        wandb: bool = False,
        wandb_project: str = "vlm",
        config: dict[str, Any] | None = None,
    ) -> None:
        self.enabled = enabled
        self.out = Path(output_dir)
        self._jsonl = JsonlWriter(self.out / "metrics.jsonl") if enabled else None
        self._tb = self._wandb = None
        if enabled and tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.out / "tensorboard"))
        if enabled and wandb:
            import wandb as wandb_module

            self._wandb = wandb_module.init(
                project=wandb_project, dir=str(self.out), config=config or {}, resume="allow"
            )

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **metrics}
        self._jsonl.write(record)
        numbers = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        if self._tb is not None:
            for k, v in numbers.items():
                self._tb.add_scalar(f"train/{k}", v, step)
        if self._wandb is not None:
            self._wandb.log({f"train/{k}": v for k, v in numbers.items()}, step=step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
