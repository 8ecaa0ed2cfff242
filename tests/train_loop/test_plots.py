"""Run pictures: `vlmtrain launch` leaves RUN/plots/*.png (a tiny GRACE run here) and
`vlmtrain plot RUN` redraws them: files exist, decode as PNG, and the loss plot has one line
per stream of the config plus the total."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from PIL import Image

from cli.vlmtrain import main
from tests.train_loop.conftest import CONFIGS
from vlmtrain.train.plots import write_run_plots

FILES = ["efficiency.png", "loss.png", "lr.png", "samples_per_s.png"]
C0, C1 = (0x1F, 0x77, 0xB4), (0xFF, 0x7F, 0x0E)  # matplotlib's default cycle: first two lines


def pixels_near(png, rgb, tol: int = 40) -> int:
    with Image.open(png) as img:
        data = np.asarray(img.convert("RGB"), dtype=np.int32)
    return int((np.abs(data - np.array(rgb)).sum(axis=-1) < tol).sum())


def decodes(png) -> tuple[int, int]:
    with Image.open(png) as img:
        assert img.format == "PNG"
        img.load()
        return img.size


def fake_run(tmp_path, steps: int = 20, mfu: bool = True):
    rows = []
    for s in range(1, steps + 1):
        row = {"step": s, "loss": 5.0 / s, "image2id_loss": 3.0 / s, "query2id_loss": 2.0 / s}
        row.update(lr=1e-3 * min(1, s / 5), samples_per_s=100.0 + s, pad_fraction=0.25)
        if mfu:
            row["mfu"] = 0.3
        rows.append(row)
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return tmp_path


def test_plots_from_a_metrics_file(tmp_path):
    run = fake_run(tmp_path / "run")
    written = write_run_plots(run)
    assert sorted(p.name for p in (run / "plots").iterdir()) == FILES
    lines = {p.rsplit("/", 1)[1]: v for p, v in written.items()}
    assert lines == {
        "loss.png": ["image2id", "query2id", "total"],
        "lr.png": ["lr"],
        "samples_per_s.png": ["samples/s"],
        "efficiency.png": ["MFU", "padding share"],
    }
    for name in FILES:
        assert decodes(run / "plots" / name) == (640, 360)
    assert pixels_near(run / "plots" / "loss.png", C0) > 100  # both stream lines are drawn
    assert pixels_near(run / "plots" / "loss.png", C1) > 100
    assert pixels_near(run / "plots" / "lr.png", C1) == 0  # one line: no second colour


def test_without_mfu_only_padding_is_drawn(tmp_path):
    written = write_run_plots(fake_run(tmp_path, mfu=False))
    assert [v for p, v in written.items() if p.endswith("efficiency.png")] == [["padding share"]]


def test_cli_names_what_is_wrong(tmp_path):
    res = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "metrics.jsonl" in res.output
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "loss": 1.0}\nnot json\n')
    res = CliRunner().invoke(main, ["plot", str(tmp_path)])
    assert res.exit_code == 2 and "metrics.jsonl:2:" in res.output


@pytest.mark.slow
def test_tiny_grace_run_leaves_its_plots(dataset, tmp_path, one_rank):
    from tests.train_loop.test_train import run_in_process

    out = tmp_path / "grace"
    run_in_process("grace_tiny.yaml", dataset, out, "log.batch_keys=false")
    assert sorted(p.name for p in (out / "plots").iterdir()) == FILES
    for name in FILES:
        decodes(out / "plots" / name)
    streams = yaml.safe_load((CONFIGS / "grace_tiny.yaml").read_text())["data"]["streams"]
    res = CliRunner().invoke(main, ["plot", str(out), "-o", str(tmp_path / "again")])
    assert res.exit_code == 0, res.output
    loss_line = next(line for line in res.output.splitlines() if "loss.png" in line)
    assert loss_line.endswith(": " + ", ".join(sorted(s["kind"] for s in streams) + ["total"]))
    for name in FILES:  # the end-of-run pictures are the ones the command draws
        assert (tmp_path / "again" / name).read_bytes() == (out / "plots" / name).read_bytes()
