"""Training runs: every tiny recipe learns (in-process, one rank), export -> load_checkpoint
rebuilds the trained model exactly, stop + resume == uninterrupted, and two CPU ranks with
ZeRO-3 through `vlmtrain launch`, SIGKILLed while saving, resumed to the same end."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.train_loop.conftest import CONFIGS, data_overrides

pytestmark = pytest.mark.slow
QUIET = ["log.progress=false", "log.batch_keys=true"]


def run_in_process(config: str, dataset, out: Path, *extra: str, resume=False, stop_after=None):
    from vlmtrain.train.config import load_config
    from vlmtrain.train.trainer import Run, setup_distributed

    cfg = load_config(CONFIGS / config, data_overrides(dataset, out) + QUIET + list(extra))
    rank, world = setup_distributed()
    run = Run(cfg, rank, world)
    if resume:
        assert run.resume()
    summary = run.train(stop_after=stop_after)
    return run, summary


def losses(out: Path) -> list[float]:
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def batch_keys(out: Path, rank: int = 0) -> dict[int, list[str]]:
    lines = (out / f"batches-rank{rank}.jsonl").read_text().splitlines()
    return {r["batch"]: r["keys"] for r in map(json.loads, lines)}


def assert_falls(values: list[float], ratio: float = 0.95) -> None:
    head, tail = values[:2], values[-2:]
    assert sum(tail) / 2 < ratio * sum(head) / 2, values


def assert_export_rebuilds(run, out: Path) -> None:
    """load_checkpoint(run dir) gives back exactly the trained parameters."""
    import torch

    from vlmtrain.train.checkpoint import load_checkpoint

    model, tok, cfg = load_checkpoint(out)
    trained = dict(run.engine.module.named_parameters())
    loaded = dict(model.named_parameters())
    assert set(trained) == set(loaded)
    for name, p in loaded.items():
        assert torch.equal(p, trained[name].detach().reshape(p.shape)), name
    assert cfg == run.cfg and len(tok) == len(run.tokenizer) and not model.training


@pytest.mark.parametrize(
    "config", ["grace_tiny.yaml", "fromage_tiny.yaml", "caption_tiny.yaml", "autover_tiny.yaml"]
)
def test_tiny_recipe_trains_and_exports(config, dataset, tmp_path, one_rank):
    out = tmp_path / "run"
    # the loop data's splits are train/test; autover_tiny selects OVEN's entity/query_train
    split = ["data.filter={split: train}"] if config.startswith("autover") else []
    run, summary = run_in_process(config, dataset, out, "schedule.max_steps=6", *split)
    assert summary["steps"] == 6 and summary["export"] == out / "export"
    got = losses(out)
    assert len(got) == 6
    assert_falls(got)
    assert_export_rebuilds(run, out)
    info = json.loads((out / "export" / "export.json").read_text())
    assert info["step"] == 6 and info["mode"] == "auto"
    # the logged lr is the one each step's update used: step s (from 0) warms up linearly,
    # lr x (s + 1) / warmup_steps, then follows a cosine from lr towards lr x min_lr_ratio
    cfg = run.cfg
    lr, warm, total = cfg.optim.lr, cfg.schedule.warmup_steps, 6
    want = [lr * (s + 1) / warm if s < warm else 0.0 for s in range(total)]
    for s in range(warm, total):
        cos = 0.5 * (1 + math.cos(math.pi * (s - warm) / (total - warm)))
        want[s] = lr * (cfg.schedule.min_lr_ratio + (1 - cfg.schedule.min_lr_ratio) * cos)
    lines = (out / "metrics.jsonl").read_text().splitlines()
    logged = [json.loads(line)["lr"] for line in lines]
    assert logged == pytest.approx(want, rel=1e-9), (logged, want)


def test_fromage_export_is_trainable_parts_when_parts_are_pretrained(dataset, tmp_path, one_rank):
    """With a pretrained LM and tower (simulated by naming paths), auto export skips them."""
    from vlmtrain.train.checkpoint import export_names

    run, _ = run_in_process("fromage_tiny.yaml", dataset, tmp_path / "r", "schedule.max_steps=1")
    cfg = run.cfg.model
    cfg.lm, cfg.vision_pretrained = "/models/lm", "/models/clip.pt"
    names = export_names(run.engine.module, cfg, "auto")
    trainable = [n for n, p in run.engine.module.named_parameters() if p.requires_grad]
    assert names == trainable
    assert all(n.startswith(("projector.", "heads.")) or "new_weight" in n for n in names)


def test_llava_two_stages(dataset, tmp_path, one_rank):
    import torch

    from vlmtrain.train.checkpoint import read_weights

    s1, s2 = tmp_path / "stage1", tmp_path / "stage2"
    run_in_process("llava_stage1_tiny.yaml", dataset, s1, "schedule.max_steps=6")
    assert_falls(losses(s1), 0.99)  # projector alone under a frozen random LM: a slow start
    stage1 = read_weights(s1 / "export" / "model.safetensors")
    from vlmtrain.train.config import load_config
    from vlmtrain.train.trainer import Run

    cfg = load_config(
        CONFIGS / "llava_stage2_tiny.yaml",
        data_overrides(dataset, s2) + QUIET + [f"init_from={s1}", "schedule.max_steps=6"],
    )
    run = Run(cfg, 0, 1)
    start = dict(run.engine.module.named_parameters())
    for name in [n for n in stage1 if n.startswith("projector.")]:
        assert torch.equal(start[name].detach(), stage1[name]), name
    run.train()
    assert_falls(losses(s2))


def test_stop_and_resume_equals_uninterrupted(dataset, tmp_path, one_rank):
    extra = ["schedule.max_steps=6", "schedule.save_every=2", "deepspeed.grad_accum=2"]
    full, cut = tmp_path / "full", tmp_path / "cut"
    run_in_process("grace_tiny.yaml", dataset, full, *extra)
    _, s = run_in_process("grace_tiny.yaml", dataset, cut, *extra, stop_after=3)
    assert s["steps"] == 3 and s["export"] is None
    assert (cut / "checkpoints" / "latest").read_text() == "step0000002"
    assert max(batch_keys(cut)) == 5  # 3 steps x 2 micro-batches were read before the stop
    _, s = run_in_process("grace_tiny.yaml", dataset, cut, *extra, resume=True)
    assert s["steps"] == 6
    assert batch_keys(cut) == batch_keys(full)  # batches 4.. re-read exactly
    assert losses(cut) == pytest.approx(losses(full), rel=1e-5)


def _launch_env(tmp: Path) -> dict[str, str]:
    """The environment of a `vlmtrain launch` the test may kill. Ranks import wandb (open_clip
    -> timm), whose two temp folders only atexit removes, so a killed rank leaves them in
    TMPDIR: a folder of the test's own here, not the machine's /tmp."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.pop("DS_ACCELERATOR", None)  # `vlmtrain launch` decides (no CUDA -> cpu)
    tmp.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmp)
    return env


def _launch(args: list[str], tmp: Path, **env_extra: str) -> subprocess.CompletedProcess:
    env = _launch_env(tmp) | env_extra
    cmd = [str(Path(sys.executable).parent / "vlmtrain"), "launch", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=420)


def _export(out: Path) -> dict:
    from vlmtrain.train.checkpoint import read_weights

    return read_weights(out / "export" / "model.safetensors")


@pytest.mark.timeout(1800)  # four 2-rank launches: about 2 minutes on an idle 2-core machine
def test_two_cpu_ranks_zero3_killed_while_saving_resume_the_same(dataset, tmp_path):
    """2 ranks, ZeRO-3 through `vlmtrain launch`; runs SIGKILLed in the middle of step 6's save
    (where DeepSpeed's own `latest` used to appear, and between the model and optimizer files)
    resume with plain `--resume` from step 3 and end with the same batches, losses and export."""
    import torch

    from vlmtrain.train.resume import incomplete_reason, latest_tag
    from vlmtrain.train.testing import KILL_ENV

    extra = QUIET + ["deepspeed.zero_stage=3", "schedule.max_steps=6", "schedule.save_every=3"]
    grace = str(CONFIGS / "grace_tiny.yaml")
    out, tmp = tmp_path / "z3", tmp_path / "tmp"
    res = _launch([grace, "--num-gpus", "2", *data_overrides(dataset, out), *extra], tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert_falls(losses(out))
    step6 = out / "checkpoints" / "step0000006"
    assert len(sorted(step6.glob("*optim_states.pt"))) == 2  # each rank saved its partition
    assert json.loads((step6 / "data_position.json").read_text())["next_batch"] == 6
    keys = [batch_keys(out, r) for r in range(2)]
    assert sorted(keys[0]) == sorted(keys[1]) == list(range(6))  # equal batches per rank

    cut = tmp_path / "cut"
    ckpt6 = cut / "checkpoints" / "step0000006"
    res = _launch(
        [grace, "--num-gpus", "2", *data_overrides(dataset, cut), *extra],
        tmp,
        **{KILL_ENV: "deepspeed_saved@6"},
    )
    assert res.returncode != 0 and not (cut / "export").exists()
    # ZeRO-3: every rank writes its model states and optimizer partition
    assert len(list(ckpt6.glob("*_model_states.pt"))) == len(list(ckpt6.glob("*optim_states.pt")))
    assert len(list(ckpt6.glob("*optim_states.pt"))) == 2  # DeepSpeed's part was all written
    assert incomplete_reason(cut / "checkpoints", "step0000006") is not None
    assert latest_tag(cut / "checkpoints") == "step0000003"
    # plain --resume (world size from the checkpoint), killed again: model file, no optimizer
    resume = [str(cut / "config.yaml"), "--resume"]
    res = _launch(resume, tmp, **{KILL_ENV: "model_states@6"})
    assert res.returncode != 0 and "resuming from step 3 (batch 3)" in res.stdout
    assert list(ckpt6.glob("*_model_states.pt"))  # a rank killed itself right after its model
    assert len(list(ckpt6.glob("*optim_states.pt"))) < 2  # file, before its optimizer file
    res = _launch(resume, tmp)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "resuming from step 3 (batch 3)" in res.stdout
    for r in range(2):
        assert batch_keys(cut, r) == keys[r]
    assert losses(cut) == pytest.approx(losses(out), rel=1e-5)
    want, got = _export(out), _export(cut)
    assert set(got) == set(want)
    for name, value in want.items():
        assert torch.allclose(got[name], value, rtol=1e-5, atol=1e-7), name
    assert incomplete_reason(cut / "checkpoints", "step0000006") is None


@pytest.mark.timeout(300)
def test_sigterm_of_launch_stops_every_rank(dataset, tmp_path):
    """`kill` of `vlmtrain launch` (or a scheduler's preemption) reaches the launcher's whole
    group: DeepSpeed's single-node runner has no SIGTERM handler, and its launch.py and ranks
    used to train on with nobody waiting for them."""
    import signal
    import time

    from tests.proc_tree import descendants, wait_gone

    env = _launch_env(tmp_path / "tmp")
    out, log = tmp_path / "run", tmp_path / "stderr.txt"
    extra = QUIET + ["schedule.max_steps=100000", "schedule.save_every=100000"]
    cmd = [str(Path(sys.executable).parent / "vlmtrain"), "launch",
           str(CONFIGS / "grace_tiny.yaml"), "--num-gpus", "2",
           *data_overrides(dataset, out), *extra]  # fmt: skip
    with open(log, "w") as err:  # a file, not a pipe: ranks left behind would hold a pipe open
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 240
    while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)  # both ranks are training
    started = descendants(proc.pid)
    assert len(started) >= 4  # the runner, its launch.py and two ranks
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=60) == 143
        assert log.read_text().splitlines()[-1] == "terminated (SIGTERM)"
    finally:
        left = wait_gone(started)
        for pid in left:
            os.kill(pid, signal.SIGKILL)
    assert left == set(), "launcher or ranks outlived `vlmtrain launch`"
