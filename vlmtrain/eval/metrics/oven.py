"""OVEN accuracy as the official toolkit (oven_eval.py) computes it.

Each reference row has `data_id`, `entity_id` and `data_split` (OVEN's published names:
`query_val_seen`, `query_val_unseen`, `entity_val_seen`, `entity_val_unseen`); a
prediction is `{data_id, pred_entity_id}`. Per split: accuracy in percent rounded to 2 places
(only predicted rows are scored, as the toolkit does; we report how many references had no
prediction so that gap is visible). Query score = harmonic mean of seen and unseen accuracy,
entity score likewise, final = harmonic mean of the two, each rounded to 2 places, with a zero
accuracy replaced by 1e-12 (so one empty side drives the mean to ~0 instead of dividing by 0).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping

from vlmdata.core.errors import DataError


def harmonic_mean(*values: float) -> float:
    """Harmonic mean with zeros replaced by 1e-12, as the official toolkit."""
    safe = [v if v != 0 else 1e-12 for v in values]
    return len(safe) / sum(1.0 / v for v in safe)


def split_side(data_split: str) -> str:
    """'seen' or 'unseen' from a split name like 'entity_val_unseen' (as the toolkit: by the
    `_seen` / `_unseen` in the name)."""
    if "_unseen" in data_split:
        return "unseen"
    if "_seen" in data_split:
        return "seen"
    raise ValueError(f"split {data_split!r} is neither seen nor unseen")


def split_family(data_split: str, file: str | None = None) -> str | None:
    """'query' or 'entity': the word of the split name (`query_val_seen`, and the older
    `val_query_seen` spelling), else of the file name (`oven_query_val.jsonl`: the toolkit takes
    the family from the file it reads), else None."""
    for name in (data_split, os.path.basename(file or "")):
        words = set(re.split(r"[_.\-]", name.lower()))
        fams = words & {"query", "entity"}
        if len(fams) == 1:
            return fams.pop()
    return None


def split_accuracy(
    references: Iterable[Mapping], predictions: Mapping[str, str]
) -> dict[str, dict[str, float | int]]:
    """{'seen'|'unseen': {accuracy (percent, 2 places), count, missing}} for one split family."""
    hits: dict[str, list[int]] = defaultdict(list)
    missing: dict[str, int] = defaultdict(int)
    for ref in references:
        side = split_side(ref["data_split"])
        pred = predictions.get(ref["data_id"])
        if pred is None:
            missing[side] += 1
            continue
        hits[side].append(int(pred == ref["entity_id"]))
    out: dict[str, dict[str, float | int]] = {}
    for side in sorted(set(hits) | set(missing)):
        h = hits.get(side, [])
        acc = round(sum(h) / len(h) * 100, 2) if h else 0.0
        out[side] = {"accuracy": acc, "count": len(h), "missing": missing.get(side, 0)}
    return out


def oven_scores(
    query_refs: Iterable[Mapping],
    entity_refs: Iterable[Mapping],
    query_preds: Mapping[str, str],
    entity_preds: Mapping[str, str],
) -> dict[str, object]:
    """The official final, query and entity scores plus the four split accuracies."""
    q = split_accuracy(query_refs, query_preds)
    e = split_accuracy(entity_refs, entity_preds)
    for name, res in (("query", q), ("entity", e)):
        for side in ("seen", "unseen"):
            if side not in res or res[side]["count"] == 0:
                raise DataError(f"OVEN {name} split has no scored '{side}' examples")
    query_score = harmonic_mean(q["seen"]["accuracy"], q["unseen"]["accuracy"])
    entity_score = harmonic_mean(e["seen"]["accuracy"], e["unseen"]["accuracy"])
    return {
        "query_score": round(query_score, 2),
        "entity_score": round(entity_score, 2),
        "final_score": round(harmonic_mean(query_score, entity_score), 2),
        "query_result": q,
        "entity_result": e,
    }
