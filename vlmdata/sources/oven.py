"""OVEN queries: `oven_{entity,query}_{train,val,test}.jsonl`.

Each line `{data_id, image_id, question, entity_id, entity_text, data_split}` (test files lack
the entity fields, and may lack `data_split`; val splits are `*_seen` / `*_unseen`) -> one
manifest row per record, key from `data_id`, texts = [question], split = `--split`, else
data_split, else `{entity,query}_{train,val,test}` from the file name; path
`{image_id[5:7]}/{image_id}.jpg` (the published layout; `.JPEG` when only that file exists under
--images; without --images `vlmdata shard` tries both). image_key = image_id: entity and query
records on one image share one stored image.
"""

from __future__ import annotations

import re
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


_FILE_SPLIT = re.compile(r"(entity|query)_(train|val|test)")


def split_of_file(path: Path) -> str | None:
    """`oven_query_test.jsonl` -> `query_test` (val has no single split: seen / unseen)."""
    m = _FILE_SPLIT.search(path.name)
    return f"{m.group(1)}_{m.group(2)}" if m and m.group(2) != "val" else None


def record_row(
    record: dict[str, Any], images: Path | None, split: str | None, fallback: str | None = None
) -> dict:
    """`split` (--split) wins, then the record's data_split, then `fallback` (the file name's)."""
    data_id = require(record, "data_id")
    image_id = require(record, "image_id")
    question = nonempty_text(require(record, "question"), "question")
    split = split or optional(record, "data_split") or fallback
    if not split:
        raise RowError("missing_field", "no data_split, and none in the file name: pass --split")
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
        "image_key": make_key(image_id),
    }


def read(
    inputs: list[Path], sink: ManifestSink, images: str | None = None, split: str | None = None
) -> None:
    """`images`: the OVEN image root (only used to pick `.jpg` or `.JPEG`)."""
    root = Path(images) if images else None
    for path in inputs:
        fallback = split_of_file(path)
        for line, record, error in iter_jsonl(path):
            try:
                if error is not None:
                    raise error
                row = record_row(record, root, split, fallback)
            except RowError as e:
                original = getattr(e, "record", record)
                sink.reject(e.reason, file=str(path), line=line, detail=e.detail, record=original)
                continue
            sink.keep(row, file=str(path), line=line)
