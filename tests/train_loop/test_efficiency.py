"""Efficiency figures of a real run: metrics.jsonl carries model TFLOP/s, MFU and the padded
share of the step, and they agree with the batches the run trained on."""

from __future__ import annotations

import json

import pytest

from tests.train_loop.test_train import run_in_process


def test_launch_peak_tflops_sets_the_config(tmp_path, monkeypatch):
    from click.testing import CliRunner

    import vlmtrain.train.launch as launch
    from cli.vlmtrain import main
    from tests.train_loop.conftest import CONFIGS
    from vlmtrain.train.config import load_config

    monkeypatch.setattr(launch, "run_launch", lambda plan: 0)  # the config is written, no ranks
    out = tmp_path / "run"
    args = ["launch", str(CONFIGS / "grace_tiny.yaml"), f"output_dir={out}"]
    res = CliRunner().invoke(main, [*args, "--skip-checks", "--peak-tflops", "989"])
    assert res.exit_code == 0, res.output
    assert load_config(out / "config.yaml").log.peak_tflops == 989.0


@pytest.mark.slow
def test_metrics_carry_mfu_and_padding_of_the_batches_trained_on(dataset, tmp_path, one_rank):
    out = tmp_path / "run"
    peak = 0.001  # TFLOP/s: a CPU's MFU needs a stated peak
    run, _ = run_in_process(
        "grace_tiny.yaml",
        dataset,
        out,
        "schedule.max_steps=2",
        f"log.peak_tflops={peak}",
        "deepspeed.zero_stage=auto",
    )
    # the defaults a run gets: stage 0 over one rank, fused AdamW, packed rows, SDPA
    assert run.zero_stage == 0 and run.engine.zero_optimization_stage() == 0
    assert run.engine.basic_optimizer.defaults["fused"] is True
    assert run.recipe.pack_length == run.cfg.data.max_length
    assert run.model.lm.config._attn_implementation == "sdpa"
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for step, row in zip(range(2), rows, strict=True):
        sb = next(iter(run.data.batches(step, step + 1)))  # the same batch, rebuilt
        assert "position_ids" in sb.batch  # packed
        mask = sb.batch["attention_mask"]
        flops = run.flop_model.batch_flops(sb.batch)
        samples, tokens, slots = len(sb.keys), int(mask.sum()), mask.numel()
        assert row["mfu"] == pytest.approx(row["tflops"] / peak, rel=1e-9)
        # per-second figures share one elapsed time: their ratios are the step's counts
        assert row["tflops"] * 1e12 / row["samples_per_s"] == pytest.approx(flops / samples)
        assert row["tokens_per_s"] / row["samples_per_s"] == pytest.approx(tokens / samples)
        assert row["pad_fraction"] == pytest.approx(1 - tokens / slots)
        assert flops > 0
