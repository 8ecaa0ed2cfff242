"""The evaluation report: one JSON schema for every task, and the table printed from it.

No timestamps or host names go in, so rerunning an evaluation reproduces the file byte for byte
(a diff then shows real changes only).
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

from vlmdata.core.atomic import write_json

SCHEMA_VERSION = 1
REQUIRED_KEYS = ("schema_version", "task", "metrics", "config", "checkpoint", "data")
# What a value is measured in, said in every report (`units`) and under every table: the
# official scripts differ (oven_eval.py prints percent, vqaEval.py and Recall@K fractions).
UNITS = ("fraction", "percent", "score", "count")


def _made_with() -> dict[str, str]:
    from vlmdata.core.environment import made_with

    return made_with()


@dataclass
class Report:
    """What one `vlmtrain eval TASK` run measured."""

    task: str
    config: dict[str, Any] = field(default_factory=dict)
    checkpoint: str | None = None
    data: str | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    # a few queries with their top-K answers, for the HTML report only (not in the JSON):
    # [{"query": text, "answers": [right keys], "ranked": [key or None, ...]}]
    examples: list[dict[str, Any]] = field(default_factory=list)
    units: dict[str, str] = field(default_factory=dict)
    made_with: dict[str, str] = field(default_factory=_made_with)

    def add(self, metric: str, value: float, count: int, unit: str = "fraction") -> None:
        """Record one figure; `count` is how many queries/questions/images it averages over,
        `unit` one of UNITS (fraction: in [0, 1]; percent: 0-100; score: an unbounded scale
        such as CIDEr-D; count: a number of items)."""
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"metric {metric} is NaN")
        if unit not in UNITS:
            raise ValueError(f"unit {unit!r} of {metric} is not one of {UNITS}")
        self.metrics.append({"metric": metric, "value": value, "count": int(count)})
        self.units[metric] = unit

    def value(self, metric: str) -> float:
        """The recorded value of `metric` (KeyError if absent)."""
        for m in self.metrics:
            if m["metric"] == metric:
                return m["value"]
        raise KeyError(metric)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "task": self.task,
            "metrics": self.metrics,
            "config": self.config,
            "checkpoint": self.checkpoint,
            "data": self.data,
            "details": self.details,
            "units": self.units,
            "made_with": self.made_with,  # library versions and CPU pins of this run
        }

    def write(self, path: str | os.PathLike) -> None:
        """Atomic, sorted-key JSON (identical inputs give identical bytes)."""
        write_json(path, self.to_dict())

    def table(self) -> str:
        return format_table(self.to_dict())


EXAMPLES = 8  # queries shown in the HTML report
TOP_K = 5  # answers shown per query


def spread(total: int, n: int = EXAMPLES) -> list[int]:
    """n positions spread evenly over range(total): the same queries on every run."""
    if total <= 0:
        return []
    return sorted({round(i * (total - 1) / max(1, n - 1)) for i in range(n)})


def pick_examples(
    queries: list[str], answers: list[list[str]], ranked: list[list[str | None]], k: int = TOP_K
) -> list[dict[str, Any]]:
    """A few queries (`spread`), each with its right answers and its top k."""
    return [
        {"query": queries[i], "answers": list(answers[i]), "ranked": list(ranked[i][:k])}
        for i in spread(len(queries))
    ]


def validate_report(obj: dict[str, Any]) -> None:
    """Raise ValueError if `obj` does not follow the report schema."""
    missing = [k for k in REQUIRED_KEYS if k not in obj]
    if missing:
        raise ValueError(f"report lacks {missing}")
    if not isinstance(obj["metrics"], list):
        raise ValueError("report metrics must be a list")
    for m in obj["metrics"]:
        if set(m) != {"metric", "value", "count"}:
            raise ValueError(f"metric entry {m} must have exactly metric, value, count")
        if not isinstance(m["metric"], str) or not isinstance(m["count"], int):
            raise ValueError(f"metric entry {m} has wrong types")
        if not isinstance(m["value"], (int, float)):
            raise ValueError(f"metric entry {m} has a non-numeric value")
    for metric, unit in (obj.get("units") or {}).items():
        if unit not in UNITS:
            raise ValueError(f"unit {unit!r} of {metric} is not one of {UNITS}")


def load_report(path: str | os.PathLike) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        obj = json.load(f)
    validate_report(obj)
    return obj


def format_table(report: dict[str, Any]) -> str:
    """A fixed-width metric | value | count table headed by the task."""
    rows = [(m["metric"], _fmt(m["value"]), str(m["count"])) for m in report["metrics"]]
    head = ("metric", "value", "count")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(3)]
    lines = [f"task: {report['task']}"]
    lines.append(f"{head[0]:<{widths[0]}}  {head[1]:>{widths[1]}}  {head[2]:>{widths[2]}}")
    lines.append("  ".join("-" * w for w in widths))
    for name, value, count in rows:
        lines.append(f"{name:<{widths[0]}}  {value:>{widths[1]}}  {count:>{widths[2]}}")
    units = report.get("units") or {}
    if units:
        kinds = sorted(set(units.values()))
        if len(kinds) == 1:
            lines.append(f"values: {_UNIT_WORDS[kinds[0]]}")
        else:
            lines.append("values: " + "; ".join(f"{m} {_UNIT_WORDS[u]}" for m, u in units.items()))
    return "\n".join(lines)


_UNIT_WORDS = {"fraction": "fractions (0-1)", "percent": "percent (0-100)",
               "score": "scores (the metric's own scale)", "count": "counts"}  # fmt: skip


def _fmt(value: float) -> str:
    return f"{value:.4f}"
