"""The demo's closing table: text→image Recall@K of each evaluated model next to chance.

Reads `vlmtrain eval` reports (retrieval-generative: `recall@K`; retrieval-embedding:
`t2i_recall@K`). Chance@K = K / N, N the number of test images a query ranks (the report's
`details.images`): a random ranking puts the one right image in its top K with that probability.
Reports that ranked different numbers of images cannot share a chance row, so that is an error.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vlmdata.core.errors import DataError

KS = (1, 5, 10)
_RECALL = re.compile(r"^(?:t2i_)?recall@(\d+)$")


def text_to_image_recalls(report: dict) -> dict[int, float]:
    """K -> text→image recall from one report's metrics (i2t and other metrics ignored)."""
    out = {}
    for m in report.get("metrics", []):
        match = _RECALL.match(str(m.get("metric", "")))
        if match:
            out[int(match.group(1))] = float(m["value"])
    return out


def load_rows(labelled: list[tuple[str, str | os.PathLike]]) -> tuple[list, int]:
    """[(label, {K: recall}, queries)], N images; every report must rank the same N images."""
    rows, sizes = [], set()
    for label, path in labelled:
        try:
            report = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"cannot read report ({e})", file=str(path)) from e
        recalls = text_to_image_recalls(report)
        if not recalls:
            raise DataError("no recall@K metrics in this report", file=str(path))
        details = report.get("details") or {}
        if "images" not in details:
            msg = "report has no details.images (how many images were ranked)"
            raise DataError(msg, file=str(path))
        sizes.add(int(details["images"]))
        queries = max(m["count"] for m in report["metrics"] if _RECALL.match(m["metric"]))
        rows.append((label, recalls, int(queries)))
    if len(sizes) != 1:
        raise DataError(f"reports ranked different numbers of images: {sorted(sizes)}")
    return rows, sizes.pop()


def format_table(rows: list, n_images: int, ks: tuple[int, ...] = KS) -> str:
    """A markdown table: one row per model, then chance, then each model's ratio to chance."""
    head = ["text→image retrieval", *[f"R@{k}" for k in ks], "queries"]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(ks) + 1)) + "|",
    ]
    for label, rec, queries in rows:
        cells = [f"{rec[k]:.3f}" if k in rec else "-" for k in ks]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {queries} |")
    chance = [f"{min(1.0, k / n_images):.3f}" for k in ks]
    lines.append(f"| chance (K / {n_images} test images) | " + " | ".join(chance) + " | |")
    for label, rec, _ in rows:
        ratio = [f"{rec[k] / min(1.0, k / n_images):.1f}x" if k in rec else "-" for k in ks]
        lines.append(f"| {label} ÷ chance | " + " | ".join(ratio) + " | |")
    return "\n".join(lines)


def recall_table(labelled: list[tuple[str, str | os.PathLike]], ks: tuple[int, ...] = KS) -> str:
    rows, n_images = load_rows(labelled)
    return format_table(rows, n_images, ks)


def reports_made_with(paths: list[str | os.PathLike]) -> str:
    """The footer from the reports' own `made_with` (what the runs used); reports made in
    different environments are each named; a report without the field says so."""
    from vlmdata.core.environment import format_made_with

    seen: dict[str, list[str]] = {}
    for path in paths:
        facts = json.loads(Path(path).read_text(encoding="utf-8")).get("made_with")
        line = format_made_with(facts) if facts else "made with: not recorded in this report"
        seen.setdefault(line, []).append(Path(path).name)
    if len(seen) == 1:
        return next(iter(seen))
    return "\n".join(f"{', '.join(names)}: {line}" for line, names in seen.items())
