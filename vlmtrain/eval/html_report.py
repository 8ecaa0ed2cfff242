"""`vlmtrain eval ... --html PAGE`: the report as one self-contained HTML file: the metric
table, the configuration and details, and for retrieval a few queries with their top-K images
as embedded thumbnails, each marked right (green, ✓) or wrong (red, ✗).

Images come from the report's data folder through ShardReader; the page has no script and
fetches nothing. Like the JSON report it holds no timestamp, so a rerun writes the same bytes.
"""

from __future__ import annotations

import json
import os
from html import escape
from typing import Any

from vlmdata.core.atomic import atomic_open
from vlmtrain.eval.report import Report

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 40px;color:#222;background:#fafafa}
h1{font-size:20px}h2{font-size:16px;margin-top:24px}
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #ddd;padding:3px 10px}
td.v{text-align:right;font-variant-numeric:tabular-nums}
pre{background:#fff;border:1px solid #ddd;padding:8px;font-size:12px;white-space:pre-wrap}
.query{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin:8px 0}
.hits{display:flex;gap:8px;flex-wrap:wrap;margin-top:6px}
.hit{width:120px;border:3px solid;border-radius:4px;padding:2px;font-size:11px;text-align:center}
.hit img{display:block;width:110px;height:110px;object-fit:contain;margin:0 auto}
.right{border-color:#2e9d3a}.wrong{border-color:#d9534f}
.none{height:110px;display:flex;align-items:center;justify-content:center;background:#eee}
"""


def write_html_report(report: Report, path: str | os.PathLike, thumb_side: int = 128) -> None:
    """Write `report` as HTML to `path` (atomically)."""
    thumbs = _thumbs(report, thumb_side)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        f"<title>vlmtrain eval {escape(report.task)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(report.task)}</h1>",
        _metrics(report),
        _kv("run", {"checkpoint": report.checkpoint, "data": report.data}),
        _kv("config", report.config),
        "<h2>details</h2><pre>" + escape(json.dumps(report.details, indent=1, sort_keys=True))
        + "</pre>",
        _examples(report.examples, thumbs),
        "</body></html>\n",
    ]  # fmt: skip
    with atomic_open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))


def _metrics(report: Report) -> str:
    rows = "".join(
        f'<tr class="metric" data-metric="{escape(m["metric"])}"><td>{escape(m["metric"])}</td>'
        f'<td class="v">{m["value"]:.4f}</td><td class="v">{m["count"]:,}</td></tr>'
        for m in report.metrics
    )
    return f"<table><tr><th>metric</th><th>value</th><th>count</th></tr>{rows}</table>"


def _kv(title: str, values: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(json.dumps(v))}</td></tr>"
        for k, v in sorted(values.items())
    )
    return f"<h2>{escape(title)}</h2><table>{rows}</table>"


def _thumbs(report: Report, side: int) -> dict[str, str | None]:
    """key -> data URI of every image an example shows (None: not in the data / no data)."""
    keys = sorted({k for ex in report.examples for k in ex["ranked"] if k is not None})
    if not keys or not report.data:
        return {}
    from vlmdata.shards import ShardReader
    from vlmdata.view.thumbs import thumbnail

    out: dict[str, str | None] = {}
    with ShardReader(report.data) as reader:
        for k in keys:
            try:
                thumb = thumbnail(reader.members(reader.row_of(k))["image"], side)
            except KeyError:
                thumb = None
            out[k] = thumb.uri if thumb else None
    return out


def _examples(examples: list[dict[str, Any]], thumbs: dict[str, str | None]) -> str:
    if not examples:
        return ""
    k = max(len(ex["ranked"]) for ex in examples)
    blocks = [f"<h2>{len(examples)} queries and their top {k}</h2>"]
    for ex in examples:
        hits = []
        for rank, key in enumerate(ex["ranked"], 1):
            right = key is not None and key in ex["answers"]
            uri = thumbs.get(key) if key is not None else None
            img = f'<img src="{uri}" alt="{escape(key)}">' if uri else '<div class="none">—</div>'
            mark = "✓" if right else "✗"
            hits.append(
                f'<div class="hit {"right" if right else "wrong"}" data-key="{escape(key or "")}">'
                f"{img}{rank}. {mark} <code>{escape(key or 'off the trie')}</code></div>"
            )
        answers = ", ".join(escape(a) for a in ex["answers"])
        blocks.append(
            f'<div class="query"><b>{escape(ex["query"])}</b> <small>right: {answers}</small>'
            f'<div class="hits">{"".join(hits)}</div></div>'
        )
    return "".join(blocks)
