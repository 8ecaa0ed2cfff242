"""`vlmdata inspect`: what is in a shard folder, as small plain-text tables.

Counts both units: records (the records table, what training and evaluation iterate) and images
(the index, one stored sample each); per split and source, the images are those the
group's records use, so an image shared across splits counts in each.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import polars as pl

from vlmdata.core import layout
from vlmdata.core.storage import Location
from vlmdata.shards.output import format_splits, splits_from_wids
from vlmdata.shards.reader import read_index
from vlmdata.shards.records import load_records


def summarize(
    out_dir: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The figures `inspect` prints, as plain data (tests and scripts use this).
    OUT may be an fsspec URL (`s3://bucket/prefix`)."""
    root = Location(out_dir, storage_options)
    index = read_index(root)
    records = load_records(root, columns=["key", "image_key", "split", "source", "texts"])
    words = records.select(
        pl.col("texts").explode().str.split(" ").list.len().alias("n")
    ).drop_nulls()["n"]
    shard_bytes = 0
    if root.exists("wids.json"):
        shardlist = json.loads(root.read_text("wids.json"))["shardlist"]
        shard_bytes = sum(s["filesize"] for s in shardlist)
    sizes = index.select(pl.col("key").alias("image_key"), "image_size")
    groups = (
        records.join(sizes, on="image_key", how="left")
        .group_by("split", "source")
        .agg(
            pl.len().alias("records"),
            pl.col("image_key").n_unique().alias("images"),
            pl.col("image_size").filter(pl.col("image_key").is_first_distinct()).sum()
            .alias("image_bytes"),
        )
        .sort("split", "source")
    )  # fmt: skip
    rejects = pl.DataFrame({"stage": [], "reason": [], "count": []})
    if root.exists(layout.REJECTS):
        rej = pl.read_parquet(io.BytesIO(root.read_bytes(layout.REJECTS)))
        rejects = rej.group_by("stage", "reason").agg(pl.len().alias("count"))
        rejects = rejects.sort(["count", "reason"], descending=[True, False])
    return {
        "samples": len(index),  # image samples in the tars
        "images": len(index),
        "records": records.height,
        "shards": index["shard"].n_unique(),
        "shard_bytes": shard_bytes,
        "image_bytes": int(index["image_size"].sum() or 0),
        "by_split_source": groups.rows(named=True),
        "formats": dict(index["format"].value_counts(sort=True).iter_rows()),
        "width": _quantiles(index["width"]),
        "height": _quantiles(index["height"]),
        "caption_words": _quantiles(words),
        "texts_per_record": _quantiles(records["texts"].list.len()),
        "records_per_image": _quantiles(records.group_by("image_key").len()["len"]),
        "rejects": rejects.rows(named=True),
        # split folder -> {pattern, shards, samples}: the shard set a webdataset peer pastes
        "splits": {
            k: {"pattern": p, "shards": n, "samples": c}
            for k, (p, n, c) in splits_from_wids(root, relative=True).items()
        },
    }


def _quantiles(s: pl.Series) -> dict[str, float]:
    if s.len() == 0:
        return {}
    q = {f"p{p}": float(s.quantile(p / 100, interpolation="nearest")) for p in (5, 50, 95)}
    return {"min": float(s.min()), **q, "max": float(s.max())}


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers] + [[_fmt(v) for v in r] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(headers))]
    lines = [
        "  ".join(
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in cells
    ]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.0f}" if v == int(v) else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return "" if v is None else str(v)


def format_report(s: dict[str, Any], root: str = "") -> str:
    """The plain-text report; split patterns are printed under `root` (OUT as given)."""
    parts = [
        f"records {s['records']:,} on {s['images']:,} images in {s['shards']:,} shards, "
        f"{s['shard_bytes'] / 1e6:,.1f} MB of tars ({s['image_bytes'] / 1e6:,.1f} MB images)",
        _table(
            ["split", "source", "records", "images", "image MB"],
            [
                [g["split"], g["source"], g["records"], g["images"], g["image_bytes"] / 1e6]
                for g in s["by_split_source"]
            ],
        ),
        _table(["format", "images"], [[k, v] for k, v in s["formats"].items()]),
    ]
    stats = ("width", "height", "caption_words", "texts_per_record", "records_per_image")
    cols = ["min", "p5", "p50", "p95", "max"]
    parts.append(_table(["", *cols], [[n, *[s[n].get(c) for c in cols]] for n in stats if s[n]]))
    rej = [[r["stage"], r["reason"], r["count"]] for r in s["rejects"]]
    parts.append(_table(["stage", "rejected", "count"], rej) if rej else "rejects: none")
    prefix = root.rstrip("/") + "/" if root else ""
    splits = {k: (prefix + v["pattern"], v["shards"], v["samples"]) for k, v in s["splits"].items()}
    if splits:
        parts.append(format_splits(splits).lstrip("\n"))
    return "\n\n".join(parts)
