"""`vlmtrain launch --dry-run`: the exact DeepSpeed launcher command, nothing written."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main
from tests.train_loop.conftest import CONFIGS


@pytest.fixture(autouse=True)
def _no_accelerator_choice(monkeypatch):
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)


def test_dry_run_prints_the_exact_command(tmp_path):
    out = tmp_path / "run"
    args = [
        "launch",
        str(CONFIGS / "grace_tiny.yaml"),
        "--num-gpus",
        "2",
        "--master-port",
        "29999",
        "--dry-run",
        f"output_dir={out}",
        "optim.lr=1e-3",
    ]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    want = (
        f"DS_ACCELERATOR=cpu {sys.executable} -m deepspeed.launcher.runner --num_gpus 2 "
        "--master_port 29999 --log_level warning "
        f"--module vlmtrain.train.entry --config {out}/config.yaml\n"
    )
    assert res.output == want
    assert not out.exists()  # a dry run writes nothing


def test_multi_node_resume_command(tmp_path):
    from vlmtrain.train.launch import plan_launch

    hosts = tmp_path / "hosts"
    hosts.write_text("worker-0 slots=8\nworker-1 slots=8\n")
    plan = plan_launch(
        CONFIGS / "llava15_7b_stage2.yaml",
        [f"output_dir={tmp_path / 'r'}"],
        num_gpus=8,
        num_nodes=2,
        hostfile=str(hosts),
        master_port=29400,
        resume=True,
    )
    assert plan.argv[1:] == [
        "-m",
        "deepspeed.launcher.runner",
        "--hostfile",
        str(hosts),
        "--num_nodes",
        "2",
        "--num_gpus",
        "8",
        "--master_port",
        "29400",
        "--log_level",
        "warning",
        "--module",
        "vlmtrain.train.entry",
        "--config",
        str(tmp_path / "r" / "config.yaml"),
        "--resume",
    ]
    assert plan.env == {"DS_ACCELERATOR": "cpu"}  # no CUDA on this machine
    # the resolved config was saved and is what the ranks will read
    from vlmtrain.train.config import load_config

    saved = load_config(plan.config_path)
    assert saved.deepspeed.zero_stage == 3 and saved.output_dir == str(tmp_path / "r")


def test_bad_override_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(
        main, ["launch", str(CONFIGS / "grace_tiny.yaml"), "optim.lrr=1", "--dry-run"]
    )
    assert res.exit_code == 2
    assert "no key 'optim.lrr'" in res.output


def test_missing_config_is_a_clear_error(tmp_path):
    res = CliRunner().invoke(main, ["launch", str(tmp_path / "nope.yaml"), "--dry-run"])
    assert res.exit_code == 2 and "config not found" in res.output


def test_resume_takes_the_checkpoints_world_size(tmp_path):
    """A 2-rank checkpoint resumes on 2 ranks by default; another count is refused up front."""
    from vlmtrain.train.checkpoint import write_position

    out = tmp_path / "r"
    ckpt = out / "checkpoints"
    (ckpt / "step0000003").mkdir(parents=True)
    (ckpt / "latest").write_text("step0000003")
    write_position(ckpt, "step0000003", {"next_batch": 3, "world": 2})
    base = ["launch", str(CONFIGS / "grace_tiny.yaml"), f"output_dir={out}", "--resume"]
    res = CliRunner().invoke(main, [*base, "--master-port", "29999", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert " --num_gpus 2 --master_port 29999 --log_level warning " in res.output
    res = CliRunner().invoke(main, [*base, "--num-gpus", "1", "--dry-run"])
    assert res.exit_code == 2
    assert "step0000003 was written by 2 ranks; resume with --num-gpus 2" in res.output
