"""Every recipe's tiny config trains on 2 CPU ranks (gloo) at ZeRO 0, 1, 2 and 3, and its loss
falls.

ZeRO-3 partitions every parameter and gathers it only inside its module's forward: a recipe that
reads a parameter elsewhere (FROMAGe's and AutoVER's learned temperature once did) crashes at
step 1 with a size-0 tensor. A few steps per run keep each case to seconds of training.

Each config is resolved and pre-flighted by `plan_launch` (what `vlmtrain launch` does), and
DeepSpeed's launcher runs it, but one launch per stage trains all six configs in turn
(run_many.py): the launch itself (two ranks importing torch and DeepSpeed on 2 cores) was most
of each of the 24 cases. `vlmtrain launch` itself is run end to end by test_train.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.train_loop.conftest import CONFIGS, data_overrides
from vlmtrain.train.launch import plan_launch

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
STAGES = (0, 1, 2, 3)
RUN_MANY = Path(__file__).with_name("run_many.py")


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def launch_stage(zero: int, dataset: dict[str, Path], root: Path) -> subprocess.CompletedProcess:
    """All configs at one ZeRO stage: resolved like `vlmtrain launch`, one 2-rank launch."""
    resolved = []
    for config in sorted(RECIPES):
        over = data_overrides(dataset, root / config) + [
            "log.progress=false",
            f"deepspeed.zero_stage={zero}",
            f"schedule.max_steps={STEPS}",
            "schedule.warmup_steps=1",
            *RECIPES[config],
        ]
        plan = plan_launch(CONFIGS / config, over, num_gpus=2)
        resolved.append(str(plan.config_path))
    argv = plan.argv[: plan.argv.index("--module")] + [str(RUN_MANY), *resolved]
    drop = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "DS_ACCELERATOR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", **plan.env)
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def stage_runs(dataset, tmp_path_factory) -> dict[int, tuple[Path, str]]:
    """Per stage: the run folder and the launcher's output tail (for failure messages)."""
    runs = {}
    for zero in STAGES:
        root = tmp_path_factory.mktemp(f"zero{zero}")
        res = launch_stage(zero, dataset, root)
        runs[zero] = (root, f"exit {res.returncode}\n{res.stdout[-3000:]}{res.stderr[-3000:]}")
    return runs


@pytest.mark.timeout(1800)  # the first case runs the four launches (about 2 minutes idle)
@pytest.mark.parametrize("zero", STAGES)
@pytest.mark.parametrize("config", sorted(RECIPES))
def test_tiny_config_trains_on_two_ranks(config, zero, stage_runs):
    root, log = stage_runs[zero]
    out = root / config
    status = out / "entry_exit.txt"
    assert status.exists() and status.read_text() == "0\n", log
    got = losses(out)
    assert len(got) == STEPS
    assert sum(got[-2:]) < sum(got[:2]), got  # the loss falls
    assert (out / "export" / "model.safetensors").exists()
