"""PageData -> one HTML document: inline CSS, inline SVG histograms, thumbnails as data URIs,
no script and nothing fetched, so the file opens from disk or object storage as it is.

Every element a reader (or a test) may want to count carries a data- attribute: sections
`data-split`, cards `data-image-key`, records `data-record-key`, reject bars `data-count`.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from vlmdata.view.gather import Card, Histogram, PageData, Reason, SplitView
from vlmdata.view.thumbs import Thumb

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 24px 40px;color:#222;background:#fafafa}
h1{font-size:20px;margin:18px 0 4px}h2{font-size:17px;margin:28px 0 8px}
h2 small,.muted{color:#777;font-weight:normal}
nav a{margin-right:12px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px;margin:0}
.card img{display:block;height:128px;max-width:100%;object-fit:contain;margin:0 auto 6px}
.noimg{height:60px;display:flex;align-items:center;justify-content:center;background:#eee;
color:#a00;margin-bottom:6px}
code{font-size:12px}
ol.records{margin:4px 0 0;padding-left:18px}
li.record{margin:3px 0;border-top:1px dotted #ddd;padding-top:3px}
.tag{display:inline-block;background:#e8eef8;color:#235;border-radius:3px;padding:0 4px;
font-size:11px;margin-right:4px}
.f{color:#777;font-size:12px}
.t{padding-left:10px;text-indent:-10px}.t::before{content:"• ";color:#999}
.chart{max-width:760px}
.bar{display:grid;grid-template-columns:260px 1fr 70px;align-items:center;gap:8px;margin:2px 0}
.fill{background:#d9534f;height:14px;border-radius:2px}
.n{text-align:right;font-variant-numeric:tabular-nums}
.examples{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:10px}
.example{background:#fff;border:1px solid #e3c0c0;border-radius:6px;padding:8px;font-size:12px}
.example img{display:block;height:96px;max-width:100%;object-fit:contain;margin-bottom:4px}
.example code{word-break:break-all}
.example pre{white-space:pre-wrap;word-break:break-word;margin:4px 0;font-size:11px}
.hists{display:flex;flex-wrap:wrap;gap:24px}
.hist rect{fill:#4a7bb7}.hist text{font-size:10px;fill:#555}
"""
SHOWN_FIELDS = ("question", "answers", "conversations", "entity_id", "entity_name", "image_id")


def render(page: PageData) -> str:
    """The whole document."""
    opt = page.options
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>vlmdata view: {escape(page.source)}</title><style>{CSS}</style></head><body>",
        f"<h1>{escape(page.source)}</h1>",
        f'<p class="muted">{page.records:,} records on {page.images:,} images in '
        f"{page.shards:,} shard{'s' * (page.shards != 1)}; up to {opt.samples} images drawn "
        f"per split (seed {opt.seed}), "
        "each with all its records.</p>",
        _nav(page),
    ]
    parts += [_split(s, opt.max_chars) for s in page.splits]
    parts.append(_rejects(page))
    parts.append(_histograms(page.histograms))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def _nav(page: PageData) -> str:
    links = [f'<a href="#split-{escape(s.name)}">{escape(s.name)}</a>' for s in page.splits]
    links += ['<a href="#rejects">rejects</a>', '<a href="#histograms">histograms</a>']
    return "<nav>" + "".join(links) + "</nav>"


def _split(s: SplitView, max_chars: int) -> str:
    head = (
        f'<section class="split" id="split-{escape(s.name)}" data-split="{escape(s.name)}">'
        f"<h2>{escape(s.name)} <small>{s.records:,} records on {s.images:,} images; "
        f"{len(s.cards)} shown</small></h2>"
    )
    return (
        head
        + '<div class="grid">'
        + "".join(_card(c, max_chars) for c in s.cards)
        + "</div></section>"
    )


def _image(thumb: Thumb | str | None, alt: str) -> str:
    if isinstance(thumb, Thumb):
        return f'<img src="{thumb.uri}" alt="{escape(alt)}">'
    if thumb is None:
        return ""
    return '<div class="noimg">image does not decode</div>'


def _card(c: Card, max_chars: int) -> str:
    size = f" {c.thumb.width}×{c.thumb.height}" if c.thumb else ""
    img = _image(c.thumb if c.thumb else "undecodable", c.image_key)
    recs = "".join(_record(r, max_chars) for r in c.records)
    more = c.total_records - len(c.records)
    tail = f'<p class="f">+{more:,} more records not shown</p>' if more else ""
    return (
        f'<figure class="card" data-image-key="{escape(c.image_key)}" '
        f'data-records="{c.total_records}">{img}<figcaption><code>{escape(c.image_key)}</code>'
        f'<span class="f">{size} · {c.total_records} record{"s" * (c.total_records != 1)}'
        f'</span><ol class="records">{recs}</ol>{tail}</figcaption></figure>'
    )


def _cut(text: Any, n: int) -> str:
    s = str(text)
    return escape(s if len(s) <= n else s[: n - 1] + "…")


def _record(r: dict[str, Any], max_chars: int) -> str:
    tags = "".join(
        f'<span class="tag">{escape(str(r[k]))}</span>' for k in ("split", "source") if r.get(k)
    )
    lines = [f'<div class="t">{_cut(t, max_chars)}</div>' for t in r.get("texts") or []]
    for k in SHOWN_FIELDS:
        v = r.get(k)
        if v is not None and v != "":
            lines.append(f'<div><span class="f">{k}:</span> {_field(k, v, max_chars)}</div>')
    return (
        f'<li class="record" data-record-key="{escape(str(r["key"]))}">{tags}'
        f'<code class="f">{escape(str(r["key"]))}</code>{"".join(lines)}</li>'
    )


def _field(name: str, value: Any, max_chars: int) -> str:
    """answers / conversations are JSON text in records/records.parquet: shown as their content."""
    if name in ("answers", "conversations") and isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return _cut(value, max_chars)
    if name == "conversations" and isinstance(value, list):
        return "".join(_turn(t, max_chars) for t in value)
    if isinstance(value, list):
        return _cut(
            ", ".join(a.get("answer", str(a)) if isinstance(a, dict) else str(a) for a in value),
            max_chars,
        )
    return _cut(value, max_chars)


def _turn(t: Any, max_chars: int) -> str:
    if not isinstance(t, dict):
        return f"<div>{_cut(t, max_chars)}</div>"
    who = escape(str(t.get("from", "?")))
    return f"<div>▸ <b>{who}</b>: {_cut(t.get('value', ''), max_chars)}</div>"


def _rejects(page: PageData) -> str:
    if page.rejects is None:
        none = '<p class="muted">no rejects/rejects.parquet</p>'
        return f'<section id="rejects"><h2>Rejects</h2>{none}</section>'
    total = sum(r.count for r in page.rejects) + page.other_rejects[1]
    top = max([r.count for r in page.rejects] + [page.other_rejects[1], 1])
    bars = [_bar(f"{r.stage} / {r.reason}", r.count, top, r.stage, r.reason) for r in page.rejects]
    if page.other_rejects[0]:
        n, count = page.other_rejects
        bars.append(_bar(f"{n} more reasons", count, top, "", "(other)"))
    examples = "".join(_reason_examples(r, page.options.max_chars) for r in page.rejects)
    if not total:
        bars = ['<p class="muted">none: every input row was kept</p>']
    return (
        f'<section id="rejects"><h2>Rejects <small>{total:,}</small></h2>'
        f'<div class="chart">{"".join(bars)}</div>{examples}</section>'
    )


def _bar(label: str, count: int, top: int, stage: str, reason: str) -> str:
    return (
        f'<div class="bar" data-stage="{escape(stage)}" data-reason="{escape(reason)}" '
        f'data-count="{count}"><span>{escape(label)}</span>'
        f'<span><div class="fill" style="width:{100 * count / top:.1f}%"></div></span>'
        f'<span class="n">{count:,}</span></div>'
    )


def _reason_examples(r: Reason, max_chars: int) -> str:
    cards = []
    for ex in r.examples:
        where = ex.get("file") or ""
        if ex.get("line") is not None:
            where += f":{ex['line']}"
        fields = [
            f'<div><span class="f">{k}:</span> {_cut(ex[k], max_chars)}</div>'
            for k in ("key", "detail")
            if ex.get(k)
        ]
        record = _pretty(ex.get("record"))
        cards.append(
            f'<div class="example" data-reason="{escape(r.reason)}">'
            f"{_image(ex.get('thumb'), ex.get('key') or 'rejected image')}"
            f'<div><span class="tag">{escape(r.reason)}</span><code>{escape(where)}</code></div>'
            f"{''.join(fields)}<pre>{_cut(record, 4 * max_chars)}</pre></div>"
        )
    return (
        f'<h3>{escape(r.stage)} / {escape(r.reason)} <small class="muted">{r.count:,}; '
        f'{len(r.examples)} shown</small></h3><div class="examples">{"".join(cards)}</div>'
    )


def _pretty(record: str | None) -> str:
    if not record:
        return ""
    try:
        fields = json.loads(record)
    except ValueError:
        return record
    if isinstance(fields, dict):  # the original row's fields that had a value
        fields = {k: v for k, v in fields.items() if v is not None}
    return json.dumps(fields, ensure_ascii=False, indent=1)


def _histograms(hists: list[Histogram]) -> str:
    return (
        '<section id="histograms"><h2>Histograms</h2><div class="hists">'
        + "".join(_svg_histogram(h) for h in hists)
        + "</div></section>"
    )


def _svg_histogram(h: Histogram, width: int = 320, height: int = 150) -> str:
    title = f"<div><b>{escape(h.title)}</b></div>"
    if not h.counts:
        return f'<div class="hist" data-total="0">{title}<p class="muted">no values</p></div>'
    top, n, top_y, plot_h = max(h.counts) or 1, len(h.counts), 14, height - 34
    bar_w = width / n
    rects = []
    for i, c in enumerate(h.counts):
        bh = plot_h * c / top
        label = f"{_num(h.edges[i])} to {_num(h.edges[i + 1])}: {c:,}"
        rects.append(
            f'<rect x="{i * bar_w:.1f}" y="{top_y + plot_h - bh:.1f}" '
            f'width="{max(bar_w - 1, 1):.1f}" height="{bh:.1f}" data-count="{c}">'
            f"<title>{label}</title></rect>"
        )
    axis = (
        f'<text x="0" y="{height - 4}">min {_num(h.low)}</text>'
        f'<text x="{width}" y="{height - 4}" text-anchor="end">max {_num(h.high)}</text>'
        f'<text x="{width}" y="10" text-anchor="end">tallest bar {top:,}</text>'
    )
    return (
        f'<div class="hist" data-total="{sum(h.counts)}">{title}<svg width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}">{"".join(rects)}{axis}</svg></div>'
    )


def _num(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 10 else f"{x:.1f}"
