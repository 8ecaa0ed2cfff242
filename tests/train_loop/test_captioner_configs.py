"""Each shipped captioner config's example command (its header comment) trains at tiny size.

The command's overrides are applied as written, then the tiny tower and LM of the tests, the
generated loop data and two steps: what must survive is the config's own recipe options,
projector, vision feature and trainable parts.
"""

from __future__ import annotations

import json
import math
import shlex

import pytest

from tests.train_loop.conftest import CONFIGS, data_overrides
from tests.train_model.conftest import TINY_LM, TINY_VISION
from vlmtrain.train.config import load_config

pytestmark = pytest.mark.slow
CAPTIONERS = sorted(
    c.name for c in CONFIGS.glob("*.yaml") if load_config(c).recipe.name == "caption"
)
TINY = [
    "model.vision=tiny",
    "model.vision_pretrained=null",
    f"model.vision_config={TINY_VISION}",
    "model.lm=null",
    f"model.lm_config={TINY_LM}",
]
SMALL = ["schedule.max_steps=2", "schedule.warmup_steps=1", "deepspeed.zero_stage=0",
         "deepspeed.precision=fp32", "data.batch_size=4", "data.num_workers=0",
         "data.filter={split: train}", "log.progress=false"]  # fmt: skip


def example_command(config: str) -> list[str]:
    """The `vlmtrain launch CONFIG ...` command of the config's header, as argv."""
    lines = (CONFIGS / config).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "vlmtrain launch" in line)
    text = ""
    for line in lines[start:]:
        text += " " + line.lstrip("#").strip().rstrip("\\")
        if not line.rstrip().endswith("\\"):
            break
    argv = shlex.split(text)
    assert argv[:3] == ["vlmtrain", "launch", f"examples/configs/{config}"], argv
    return argv[3:]


def overrides_of(argv: list[str]) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg.startswith("--"):
            skip = "=" not in arg
        else:
            out.append(arg)
    return out


def test_every_captioner_config_has_an_example_command():
    assert {"caption_seed_vitb32_gpt2large.yaml", "clipcap_finetuned_gpt2large_vitb32.yaml",
            "caption_git_base_vitb16.yaml", "caption_git_tiny.yaml"} <= set(CAPTIONERS)  # fmt: skip
    for config in CAPTIONERS:
        assert all("=" in o for o in overrides_of(example_command(config))), config


@pytest.mark.parametrize("config", CAPTIONERS)
def test_example_command_trains_at_tiny_size(config, dataset, tmp_path, one_rank):
    from vlmtrain.train.trainer import Run, setup_distributed

    out = tmp_path / "run"
    given = overrides_of(example_command(config))
    cfg = load_config(CONFIGS / config, given + TINY + data_overrides(dataset, out) + SMALL)
    shipped = load_config(CONFIGS / config)
    assert cfg.recipe == shipped.recipe and cfg.model.train == shipped.model.train
    assert cfg.model.projector == shipped.model.projector
    rank, world = setup_distributed()
    run = Run(cfg, rank, world)
    summary = run.train()
    assert summary["steps"] == 2
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(v) and v > 0 for v in losses)
