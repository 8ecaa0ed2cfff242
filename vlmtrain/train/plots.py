"""Pictures of a run from its metrics.jsonl: PNG plots of the loss per stream, the learning
rate, samples/s, and MFU / padding share, written to RUN/plots/ at the end of `vlmtrain launch`
and on demand (`vlmtrain plot RUN`). For a user with neither TensorBoard nor wandb.

matplotlib is imported here only (through its object API with the Agg canvas: no pyplot
global state, no display needed), so the command-line tools start without it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlmdata.core.atomic import atomic_open
from vlmtrain.errors import TrainError

METRICS = "metrics.jsonl"
PLOTS_DIR = "plots"
TOTAL = "total"


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The logged steps of a run; TrainError naming the file and line when it cannot be read."""
    path = Path(run_dir) / METRICS
    if not path.is_file():
        raise TrainError("no metrics.jsonl here: not a run folder (or nothing logged yet)",
                        file=str(path))  # fmt: skip
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise TrainError("not a JSON line", file=str(path), line=n) from None
        if not isinstance(row, dict) or not isinstance(row.get("step"), int):
            raise TrainError("a metrics line without an integer step", file=str(path), line=n)
        rows.append(row)
    if not rows:
        raise TrainError("no logged steps yet", file=str(path))
    return rows


def stream_losses(rows: list[dict[str, Any]]) -> list[str]:
    """The per-stream loss fields (`image2id_loss`, `query2id_loss`, `lm_loss` ...) in the run,
    sorted: every numeric `*_loss` field other than the total `loss`."""
    names = {k for r in rows for k, v in r.items() if k.endswith("_loss") and _number(v)}
    return sorted(names)


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _series(rows: list[dict[str, Any]], key: str, scale: float = 1.0) -> tuple[list, list]:
    pts = [(r["step"], r[key] * scale) for r in rows if _number(r.get(key))]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_specs(
    rows: list[dict[str, Any]],
) -> dict[str, tuple[str, str, list[tuple[str, str, float]]]]:
    """file -> (title, y label, [(line label, metrics field, scale)]): what each PNG draws."""
    losses = [(name.removesuffix("_loss"), name, 1.0) for name in stream_losses(rows)]
    efficiency = [("padding share", "pad_fraction", 100.0)]
    eff_title = "padding share (no MFU: peak TFLOP/s unknown, see log.peak_tflops)"
    if any(_number(r.get("mfu")) for r in rows):
        efficiency.insert(0, ("MFU", "mfu", 100.0))
        eff_title = "MFU and padding share"
    return {
        "loss.png": ("loss per stream", "loss", [*losses, (TOTAL, "loss", 1.0)]),
        "lr.png": ("learning rate", "lr", [("lr", "lr", 1.0)]),
        "samples_per_s.png": ("throughput", "samples/s", [("samples/s", "samples_per_s", 1.0)]),
        "efficiency.png": (eff_title, "%", efficiency),
    }


def write_run_plots(
    run_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> dict[str, list[str]]:
    """Write the PNGs (default RUN/plots/); returns file path -> the labels of its lines."""
    rows = read_metrics(run_dir)
    dest = Path(out_dir) if out_dir is not None else Path(run_dir) / PLOTS_DIR
    dest.mkdir(parents=True, exist_ok=True)
    written = {}
    for name, (title, ylabel, lines) in plot_specs(rows).items():
        drawn = _plot(dest / name, rows, title, ylabel, lines)
        written[str(dest / name)] = drawn
    return written


def _plot(path: Path, rows, title: str, ylabel: str, lines) -> list[str]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(6.4, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    drawn = []
    for label, key, scale in lines:
        x, y = _series(rows, key, scale)
        if not x:
            continue
        style = {"color": "black", "linestyle": "--"} if label == TOTAL else {}
        ax.plot(x, y, label=label, linewidth=1.4, marker="." if len(x) < 30 else None, **style)
        drawn.append(label)
    ax.set(title=title, xlabel="optimizer step", ylabel=ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "not logged in this run", ha="center", transform=ax.transAxes)
    elif len(drawn) > 1:
        ax.legend()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png", metadata={"Software": None})
    return drawn
