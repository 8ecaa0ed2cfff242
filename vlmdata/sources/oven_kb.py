"""OVEN's Wikipedia knowledge base: `Wiki6M_ver_1_0.jsonl` (6M entities, streamed).

Each line `{wikidata_id, wikipedia_title, wikipedia_content, wikipedia_image_url}` ->
OUT/entities.parquet (entity_id, entity_name, url, content), and a manifest row per entity that
has an image (key `wiki_{QID}`, url = wikipedia_image_url, texts = [title], split `kb`) so the
KB images can be downloaded and sharded like any other source. Entities without an image are
kept in entities.parquet and counted as `no_image` (they are not errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.core.parquet_rows import RowsWriter
from vlmdata.sources.fields import RowError, nonempty_text, optional, require
from vlmdata.sources.lines import iter_jsonl

ENTITY_SCHEMA = pa.schema(
    [
        ("entity_id", pa.string()),
        ("entity_name", pa.string()),
        ("url", pa.string()),
        ("content", pa.string()),
    ]
)


def entity(record: dict[str, Any]) -> dict[str, Any]:
    url = optional(record, "wikipedia_image_url")
    return {
        "entity_id": require(record, "wikidata_id"),
        "entity_name": nonempty_text(require(record, "wikipedia_title"), "wikipedia_title"),
        "url": url.strip() if url and url.strip() else None,
        "content": optional(record, "wikipedia_content"),
    }


def read(inputs: list[Path], sink: ManifestSink, split: str = "kb") -> dict[str, int]:
    seen: set[str] = set()  # entity ids: duplicates are rejected, not written twice
    no_image = 0
    with RowsWriter(sink.out_dir / "entities.parquet", ENTITY_SCHEMA, batch_rows=4096) as out:
        for path in inputs:
            for line, record, error in iter_jsonl(path):
                try:
                    if error is not None:
                        raise error
                    ent = entity(record)
                    if ent["entity_id"] in seen:
                        raise RowError("duplicate_key", f"entity {ent['entity_id']} seen before")
                except RowError as e:
                    original = getattr(e, "record", record)
                    sink.reject(
                        e.reason, file=str(path), line=line, detail=e.detail, record=original
                    )
                    continue
                seen.add(ent["entity_id"])
                out.write(ent)
                if ent["url"] is None:
                    no_image += 1
                    continue
                row = {
                    "key": make_key("wiki", ent["entity_id"]),
                    "source": "oven-kb",
                    "split": split,
                    "url": ent["url"],
                    "path": None,
                    "texts": [ent["entity_name"]],
                    "entity_id": ent["entity_id"],
                    "entity_name": ent["entity_name"],
                }
                sink.keep(row, file=str(path), line=line)
        return {"entities": out.count, "no_image": no_image}
