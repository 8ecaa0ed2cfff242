"""OVEN queries: `oven_{entity,query}_{train,val,test}.jsonl`.

Each line `{data_id, image_id, question, entity_id, entity_text, data_split}` (test files lack
the entity fields; val splits are `*_seen` / `*_unseen`) -> one manifest row per record, key
from `data_id`, texts = [question], split = data_split, path `{image_id[5:7]}/{image_id}.jpg`
(the published layout; `.JPEG` when that file exists under --images).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.sources.fields import RowError, nonempty_text, optional, require, safe_relpath
from vlmdata.sources.lines import iter_jsonl


def image_path(image_id: str, images: Path | None) -> str:
    """`oven_05123456` -> `05/oven_05123456.jpg` (or `.JPEG` if only that exists)."""
    if len(image_id) < 7 or not image_id[5:7].isalnum():
        raise RowError("bad_image_id", f"image_id {image_id!r} has no folder at [5:7]")
    path = safe_relpath(f"{image_id[5:7]}/{image_id}.jpg", "image_id")
    if images is not None and not (images / path).exists():
        upper = path[: -len(".jpg")] + ".JPEG"
        if (images / upper).exists():
            return upper
    return path


def record_row(record: dict[str, Any], images: Path | None, split: str | None) -> dict:
    data_id = require(record, "data_id")
    image_id = require(record, "image_id")
    question = nonempty_text(require(record, "question"), "question")
    split = split or require(record, "data_split")
    return {
        "key": make_key(data_id),
        "source": "oven",
        "split": split,
        "url": None,
        "path": image_path(image_id, images),
        "texts": [question],
        "image_id": image_id,
        "data_id": data_id,
        "entity_id": optional(record, "entity_id"),
        "entity_name": optional(record, "entity_text"),
        "question": question,
    }


def read(
    inputs: list[Path], sink: ManifestSink, images: str | None = None, split: str | None = None
) -> None:
    """`images`: the OVEN image root (only used to pick `.jpg` or `.JPEG`)."""
    root = Path(images) if images else None
    for path in inputs:
        for line, record, error in iter_jsonl(path):
            try:
                if error is not None:
                    raise error
                row = record_row(record, root, split)
            except RowError as e:
                original = getattr(e, "record", record)
                sink.reject(e.reason, file=str(path), line=line, detail=e.detail, record=original)
                continue
            sink.keep(row, file=str(path), line=line)
