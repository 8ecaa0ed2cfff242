"""Every recipe's tiny config trains on 2 CPU ranks (gloo) through `vlmtrain launch` at ZeRO 0, 1,
2 and 3, and its loss falls.

ZeRO-3 partitions every parameter and gathers it only inside its module's forward: a recipe that
reads a parameter elsewhere (FROMAGe's and AutoVER's learned temperature once did) crashes at
step 1 with a size-0 tensor. A few steps per run keep each case to seconds of training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_loop.conftest import CONFIGS, data_overrides

pytestmark = pytest.mark.slow
STEPS = 4
RECIPES = {
    "grace_tiny.yaml": [],
    "fromage_tiny.yaml": [],
    "caption_tiny.yaml": [],
    # contrastive: true, as shipped; the generated rows carry train/test, not OVEN's splits
    "autover_tiny.yaml": ["data.filter={split: train}"],
    "llava_stage1_tiny.yaml": [],
    "llava_stage2_tiny.yaml": ["init_from=null"],
}


def launch(args: list[str], extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`vlmtrain launch ARGS` as a user runs it (no rank variables, the launcher picks cpu)."""
    drop = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "DS_ACCELERATOR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", **(extra_env or {}))
    cmd = [str(Path(sys.executable).parent / "vlmtrain"), "launch", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
@pytest.mark.parametrize("config", sorted(RECIPES))
def test_tiny_config_trains_on_two_ranks(config, zero, dataset, tmp_path):
    out = tmp_path / "run"
    over = data_overrides(dataset, out) + [
        "log.progress=false",
        f"deepspeed.zero_stage={zero}",
        f"schedule.max_steps={STEPS}",
        "schedule.warmup_steps=1",
        *RECIPES[config],
    ]
    res = launch([str(CONFIGS / config), "--num-gpus", "2", *over])
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    got = losses(out)
    assert len(got) == STEPS
    assert sum(got[-2:]) < sum(got[:2]), got  # the loss falls
    assert (out / "export" / "model.safetensors").exists()
