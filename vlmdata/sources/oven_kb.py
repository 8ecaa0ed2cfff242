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

from vlmdata.core.keyset import DISK_PAST, HashSet, hash128
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


BATCH = 4096  # lines whose entity ids are checked against the earlier ones at once


def read(inputs: list[Path], sink: ManifestSink, split: str = "kb") -> dict[str, int]:
    # entity ids: duplicates are rejected, not written twice (16 B an id, past 1 MiB on disk)
    seen = HashSet(disk_past=DISK_PAST)
    counts = {"no_image": 0}
    with RowsWriter(sink.out_dir / "entities.parquet", ENTITY_SCHEMA, batch_rows=4096) as out:
        for path in inputs:
            batch: list[tuple[int, Any, Any]] = []
            for item in iter_jsonl(path):
                batch.append(item)
                if len(batch) >= BATCH:
                    _read_batch(batch, path, seen, sink, out, split, counts)
                    batch = []
            _read_batch(batch, path, seen, sink, out, split, counts)
        return {"entities": out.count, "no_image": counts["no_image"]}


def _parse(batch: list[tuple[int, Any, Any]]) -> list[dict[str, Any] | RowError]:
    parsed: list[dict[str, Any] | RowError] = []
    for _, record, error in batch:
        try:
            if error is not None:
                raise error
            parsed.append(entity(record))
        except RowError as e:
            parsed.append(e)
    return parsed


def _read_batch(batch, path: Path, seen: HashSet, sink: ManifestSink, out, split, counts) -> None:
    """One batch of lines in line order; entity ids checked against `seen`, then added."""
    parsed = _parse(batch)
    ids = [p["entity_id"] for p in parsed if isinstance(p, dict)]
    earlier = iter(seen.contains(*hash128(ids)) if ids else ())
    new: list[str] = []
    batch_ids: set[str] = set()
    for (line, record, _), ent in zip(batch, parsed, strict=True):
        if isinstance(ent, dict) and (next(earlier) or ent["entity_id"] in batch_ids):
            ent = RowError("duplicate_key", f"entity {ent['entity_id']} seen before")
        if isinstance(ent, RowError):
            original = getattr(ent, "record", record)
            sink.reject(ent.reason, file=str(path), line=line, detail=ent.detail, record=original)
            continue
        batch_ids.add(ent["entity_id"])
        new.append(ent["entity_id"])
        out.write(ent)
        if ent["url"] is None:
            counts["no_image"] += 1
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
    if new:
        seen.add(*hash128(new))
