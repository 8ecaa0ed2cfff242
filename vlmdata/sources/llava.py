"""LLaVA / LLaVAR instruction data: a JSON list of `{id, image?, conversations}`.

`conversations` = [{from: human|gpt, value}], `<image>` in the first human turn when the record
has an image. Manifest row (a record): key from `id`, path = image (relative to the image
folder), texts = the gpt turns, conversations = the original list as JSON text, data_id = id,
image_key from the image path, so every record naming one file shares one stored image.
`id` repeats in the published files (LLaVA-Instruct-150K: ~158k records over 118k COCO
images, `id` = the image id; the 665k mix: LLaVA, VQAv2, OK-VQA, A-OKVQA, RefCOCO records on
the same coco/train2017 files): the manifest suffixes repeated keys (`_1`, `_2`, ...).
Records without `image` are legitimate text-only instruction data, but the manifest contract
needs an image, so they go to OUT/text_only/ (same columns, no path) and are counted as
`text_only` in the summary. The file (~1 GB for the 665k mix) is streamed element by element
(`jsonstream`), so memory stays bounded; `line` in rejects is the list index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmdata.core import layout
from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.core.parquet_rows import RowsWriter
from vlmdata.sources.fields import (
    RowError,
    check_utf8,
    optional,
    path_stem,
    printable,
    require,
    safe_relpath,
)
from vlmdata.sources.jsonstream import iter_json_list

ROLES = ("human", "gpt")
IMAGE_TOKEN = "<image>"
TEXT_ONLY_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("source", pa.string()),
        ("split", pa.string()),
        ("texts", pa.list_(pa.string())),
        ("data_id", pa.string()),
        ("conversations", pa.string()),
    ]
)


def _turns(record: dict[str, Any]) -> list[dict[str, str]]:
    turns = require(record, "conversations", list)
    if not turns:
        raise RowError("empty_text", "no conversation turns")
    for j, turn in enumerate(turns):
        role = require(turn, "from") if isinstance(turn, dict) else None
        if role not in ROLES:
            raise RowError("wrong_type", f"conversations[{j}] 'from' is {role!r}, not human|gpt")
        check_utf8(require(turn, "value"), f"conversations[{j}].value")
    return turns


def record_row(record: dict[str, Any], split: str) -> dict[str, Any]:
    """The manifest row (`path` None for a text-only record)."""
    raw_id = require(record, "id", (str, int))
    turns = _turns(record)
    image = optional(record, "image")
    humans = [t["value"] for t in turns if t["from"] == "human"]
    has_token = bool(humans) and IMAGE_TOKEN in humans[0]
    if image is not None and not has_token:
        raise RowError("no_image_token", f"image record without {IMAGE_TOKEN} in first human turn")
    if image is None and any(IMAGE_TOKEN in t["value"] for t in turns):
        raise RowError("missing_field", f"{IMAGE_TOKEN} in a record without 'image'")
    texts = [t["value"].strip() for t in turns if t["from"] == "gpt" and t["value"].strip()]
    if not texts:
        raise RowError("empty_text", "no non-empty gpt turn")
    path = safe_relpath(image, "image") if image is not None else None
    return {
        "key": make_key("llava", raw_id),
        "source": "llava",
        "split": split,
        "url": None,
        "path": path,
        "texts": texts,
        "data_id": str(raw_id),
        "conversations": json.dumps(turns, ensure_ascii=False),
        "image_key": make_key(path_stem(path)) if path is not None else None,
    }


def read(inputs: list[Path], sink: ManifestSink, split: str = "train") -> dict[str, int]:
    with RowsWriter(sink.out_dir / layout.TEXT_ONLY, TEXT_ONLY_SCHEMA) as text_only:
        for path in inputs:
            for i, record in iter_json_list(path):
                try:
                    row = record_row(record, split)
                except RowError as e:
                    detail = f"[{i}] (list index): {e.detail}"
                    record = printable(record)
                    sink.reject(e.reason, file=str(path), line=i, detail=detail, record=record)
                    continue
                if row["path"] is None:
                    text_only.write({k: row[k] for k in TEXT_ONLY_SCHEMA.names})
                else:
                    sink.keep(row, file=str(path), line=i)
        return {"text_only": text_only.count}
