"""`vlmtrain launch --dry-run`: the exact DeepSpeed launcher command and the resolved config it
reads (written, so the command runs as printed; an earlier run's config is never overwritten);
the accelerator and rendezvous port of a hostfile run are not taken from the launching machine."""

from __future__ import annotations

import os
import shlex
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
    # the printed command reads the resolved config: written, and equal to the resolution
    from vlmtrain.train.config import load_config

    assert sorted(p.name for p in out.iterdir()) == ["config.yaml"]  # and nothing else
    resolved = load_config(CONFIGS / "grace_tiny.yaml", [f"output_dir={out}", "optim.lr=1e-3"])
    assert load_config(printed_config(res.output)) == resolved


def printed_config(output: str) -> str:
    """The --config path of the printed launcher command (parsed as a shell would)."""
    argv = shlex.split(output.strip().splitlines()[-1])
    return argv[argv.index("--config") + 1]


def test_dry_run_never_overwrites_an_earlier_runs_config(tmp_path):
    """A run's config.yaml is what --resume checks its schedule against: a dry run with other
    values writes config.dry-run.yaml beside it, says so, and the command reads that one."""
    from vlmtrain.train.config import load_config
    from vlmtrain.train.launch import plan_launch

    out = tmp_path / "run"
    plan_launch(CONFIGS / "grace_tiny.yaml", [f"output_dir={out}", "schedule.max_steps=8"],
                check=False)  # fmt: skip
    before = (out / "config.yaml").read_bytes()
    args = ["launch", str(CONFIGS / "grace_tiny.yaml"), f"output_dir={out}",
            "schedule.max_steps=16", "--master-port", "29999", "--dry-run"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert (out / "config.yaml").read_bytes() == before
    assert printed_config(res.output) == str(out / "config.dry-run.yaml")
    assert load_config(out / "config.dry-run.yaml").schedule.max_steps == 16
    assert f"note: {out / 'config.yaml'} holds another config" in res.output
    # the same values again: config.yaml is already that config, so the command reads it
    args[3] = "schedule.max_steps=8"
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "note:" not in res.output and printed_config(res.output) == str(out / "config.yaml")
    assert (out / "config.yaml").read_bytes() == before


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
        check=False,  # /models/... exist on the hosts, not here
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
    assert plan.env == {}  # this machine's lack of CUDA is not imposed on the hosts' ranks
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
    from tests.train_loop.test_resume_state import fake_checkpoint

    out = tmp_path / "r"
    ckpt = out / "checkpoints"
    fake_checkpoint(ckpt, "step0000003", world=2)
    base = ["launch", str(CONFIGS / "grace_tiny.yaml"), f"output_dir={out}", "--resume"]
    res = CliRunner().invoke(main, [*base, "--master-port", "29999", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert " --num_gpus 2 --master_port 29999 --log_level warning " in res.output
    res = CliRunner().invoke(main, [*base, "--num-gpus", "1", "--dry-run"])
    assert res.exit_code == 2
    assert "step0000003 was written by 2 ranks; resume with --num-gpus 2" in res.output


def _hosts(tmp_path) -> str:
    hosts = tmp_path / "hosts.txt"
    hosts.write_text("worker-0 slots=8\nworker-1 slots=8\n")
    return str(hosts)


def test_hostfile_run_from_a_head_node_without_gpus(tmp_path):
    """This machine has no CUDA, but the hosts' ranks may: no DS_ACCELERATOR, no port probed
    here (rank 0 listens on worker-0): DeepSpeed's default 29500."""
    out = tmp_path / "r"
    args = ["launch", str(CONFIGS / "llava15_7b_stage2.yaml"), "--num-nodes", "2"]
    args += ["--num-gpus", "8", "--hostfile", _hosts(tmp_path), "--dry-run", f"output_dir={out}"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    want = (
        f"{sys.executable} -m deepspeed.launcher.runner --hostfile {tmp_path}/hosts.txt "
        "--num_nodes 2 --num_gpus 8 --master_port 29500 --log_level warning "
        f"--module vlmtrain.train.entry --config {out}/config.yaml\n"
    )
    assert res.output == want


def test_explicit_accelerator_and_port_reach_the_launcher_and_every_rank(tmp_path):
    out = tmp_path / "r"
    args = ["launch", str(CONFIGS / "llava15_7b_stage2.yaml"), "--hostfile", _hosts(tmp_path)]
    args += ["--accelerator", "cuda", "--master-port", "29600", "--dry-run", f"output_dir={out}"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"DS_ACCELERATOR=cuda {sys.executable} -m deepspeed")
    assert " --master_port 29600 " in res.output
    assert res.output.endswith(f"--config {out}/config.yaml --accelerator cuda\n")


def test_the_entry_takes_the_accelerator_before_deepspeed_loads(monkeypatch):
    from vlmtrain.train import entry

    seen = {}

    def fake_train(cfg, resume):
        seen["accelerator"] = os.environ.get("DS_ACCELERATOR")
        return {"last": {}, "steps": 0, "total": 0, "export": None}

    monkeypatch.setattr("vlmtrain.train.trainer.train", fake_train)
    monkeypatch.setattr("vlmtrain.train.config.load_config", lambda path: None)
    monkeypatch.setenv("RANK", "1")
    assert entry.main(["--config", "c.yaml", "--accelerator", "cuda"]) == 0
    assert seen == {"accelerator": "cuda"}
