"""What `vlmdata view` shows, as plain data: a seeded sample of images per split with all
their records, the reject reasons with a few examples each, and histograms.

Everything is read through the project's readers (ShardReader, load_records), so the page
follows the shard layout they define, local or in object storage.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.storage import Location
from vlmdata.shards.reader import ShardReader
from vlmdata.shards.records import load_records
from vlmdata.view.thumbs import Thumb, thumbnail

NO_SPLIT = "(no split)"
MAX_SOURCE_IMAGE_BYTES = (
    50_000_000  # a rejected image read from --images larger than this: no thumb
)


@dataclass
class ViewOptions:
    """Sizes that bound the page: about samples x splits + examples x reasons thumbnails."""

    samples: int = 24  # images drawn per split
    seed: int = 0
    thumb_side: int = 160
    max_records: int = 20  # records listed per image (the rest counted)
    reject_examples: int = 3  # examples per reason
    max_reasons: int = 30  # reasons in the chart (the rest summed in one bar)
    max_chars: int = 300  # one shown text field
    bins: int = 20
    images: str | None = None  # the local image folder the shard run read (reject thumbnails)


@dataclass
class Card:
    image_key: str
    thumb: Thumb | None
    records: list[dict[str, Any]]  # shown records, in records/records.parquet order
    total_records: int


@dataclass
class SplitView:
    name: str
    records: int
    images: int
    cards: list[Card]


@dataclass
class Reason:
    stage: str
    reason: str
    count: int
    examples: list[dict[str, Any]]  # reject rows, each with "thumb" (Thumb | None | "undecodable")


@dataclass
class Histogram:
    title: str
    edges: list[float]
    counts: list[int]
    low: float = 0.0  # the smallest and largest value
    high: float = 0.0


@dataclass
class PageData:
    source: str
    records: int
    images: int
    shards: int
    options: ViewOptions
    splits: list[SplitView] = field(default_factory=list)
    rejects: list[Reason] | None = None  # None: no rejects/rejects.parquet
    other_rejects: tuple[int, int] = (0, 0)  # (reasons, rejects) beyond max_reasons
    histograms: list[Histogram] = field(default_factory=list)


def gather(
    out_dir: str | os.PathLike, opt: ViewOptions, storage_options: dict[str, Any] | None = None
) -> PageData:
    """The page's content for OUT (a folder or an fsspec URL)."""
    root = Location(out_dir, storage_options)
    reader = ShardReader(root.url, storage_options=root.options)
    try:
        records = load_records(root).with_columns(pl.col("split").fill_null(NO_SPLIT))
        index = reader.index
        page = PageData(str(out_dir), records.height, index.height, index["shard"].n_unique(), opt)
        page.splits = _splits(reader, records, opt)
        if root.exists(layout.REJECTS):
            rejects = pl.read_parquet(io.BytesIO(root.read_bytes(layout.REJECTS)))
            page.rejects, page.other_rejects = _rejects(rejects, opt)
        page.histograms = _histograms(index, records, opt.bins)
    finally:
        reader.close()
    return page


def split_sample(image_keys: list[str], split: str, n: int, seed: int) -> list[str]:
    """n of a split's image keys (sorted, distinct), the same ones for the same seed."""
    rng = np.random.default_rng([seed, zlib.crc32(split.encode("utf-8"))])
    chosen = rng.choice(len(image_keys), size=min(n, len(image_keys)), replace=False)
    return [image_keys[i] for i in sorted(chosen.tolist())]


def _splits(reader: ShardReader, records: pl.DataFrame, opt: ViewOptions) -> list[SplitView]:
    by_split = records.group_by("split", maintain_order=True).agg(
        pl.len().alias("records"), pl.col("image_key").unique().sort().alias("images")
    )
    chosen = {
        s: split_sample(keys, s, opt.samples, opt.seed)
        for s, keys in zip(by_split["split"], by_split["images"], strict=True)
    }
    wanted = {k for keys in chosen.values() for k in keys}
    of_image: dict[str, list[dict[str, Any]]] = {}
    for row in records.filter(pl.col("image_key").is_in(list(wanted))).iter_rows(named=True):
        of_image.setdefault(row["image_key"], []).append(row)
    thumbs = {k: _stored_thumb(reader, k, opt.thumb_side) for k in sorted(wanted)}
    views = []
    for s, n, keys in sorted(by_split.iter_rows(), key=lambda r: r[0]):
        cards = [
            Card(k, thumbs[k], of_image[k][: opt.max_records], len(of_image[k])) for k in chosen[s]
        ]
        views.append(SplitView(s, n, len(keys), cards))
    return views


def _stored_thumb(reader: ShardReader, key: str, side: int) -> Thumb | None:
    try:
        row = reader.row_of(key)
    except KeyError:
        raise DataError(f"records point at image {key!r}, which is not in the index",
                        file=str(reader.root)) from None  # fmt: skip
    return thumbnail(reader.members(row)["image"], side)


def _rejects(rejects: pl.DataFrame, opt: ViewOptions) -> tuple[list[Reason], tuple[int, int]]:
    counts = (
        rejects.group_by("stage", "reason")
        .agg(pl.len().alias("count"))
        .sort(["count", "stage", "reason"], descending=[True, False, False])
    )
    shown, rest = counts.head(opt.max_reasons), counts.slice(opt.max_reasons)
    reasons = []
    for stage, reason, count in shown.iter_rows():
        rows = rejects.filter((pl.col("stage") == stage) & (pl.col("reason") == reason))
        picked = rows.sample(min(opt.reject_examples, rows.height), seed=opt.seed).sort("line")
        examples = [{**r, "thumb": _reject_thumb(r, opt)} for r in picked.iter_rows(named=True)]
        reasons.append(Reason(stage, reason, count, examples))
    return reasons, (rest.height, int(rest["count"].sum() or 0))


def _reject_thumb(row: dict[str, Any], opt: ViewOptions) -> Thumb | str | None:
    """The rejected row's own image where one exists: its `path` inside the local image folder
    given (the reject's key is no guide: a duplicate_key names another stored image);
    "undecodable" when the file is there but is no image; None when there is nothing."""
    data = _source_image(row.get("record"), opt.images)
    if data is None:
        return None
    return thumbnail(data, opt.thumb_side) or "undecodable"


def _source_image(record_text: str | None, images: str | None) -> bytes | None:
    if not record_text or images is None:
        return None
    try:
        rel = json.loads(record_text).get("path")
    except (ValueError, AttributeError):
        return None
    if not isinstance(rel, str) or not rel:
        return None
    base = Path(images).resolve()
    path = (base / rel).resolve()
    if base not in path.parents or not path.is_file():  # never outside the folder given
        return None
    if path.stat().st_size > MAX_SOURCE_IMAGE_BYTES:
        return None
    return path.read_bytes()


def _histograms(index: pl.DataFrame, records: pl.DataFrame, bins: int) -> list[Histogram]:
    words = records.select(pl.col("texts").explode().str.split(" ").list.len()).drop_nulls()
    series = [
        ("image width (px)", index["width"]),
        ("image height (px)", index["height"]),
        ("caption length (words)", words.to_series()),
    ]
    return [_histogram(title, s.drop_nulls().to_numpy(), bins) for title, s in series]


def _histogram(title: str, values: np.ndarray, bins: int) -> Histogram:
    if values.size == 0:
        return Histogram(title, [], [])
    lo, hi = float(values.min()), float(values.max())
    if hi - lo < bins and np.issubdtype(values.dtype, np.integer):  # one bar per integer value
        edges = np.arange(lo, hi + 2) - 0.5
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    counts, edges = np.histogram(values, bins=edges)
    return Histogram(title, edges.tolist(), counts.tolist(), lo, hi)
