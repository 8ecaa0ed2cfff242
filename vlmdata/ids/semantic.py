"""GRACE's semantic identifiers: texts that describe the image.

Train images use their own captions. Test images must not (their captions are the retrieval
queries), so they use pseudo-queries generated for them, read from GRACE's JSON: a list of
{"image_id", "caption": [five strings], "original_caption"}. Different images can share a text;
such collisions are counted and reported, not hidden.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from vlmdata.core.errors import DataError


def load_pseudo_queries(path: str | os.PathLike) -> dict[str, list[str]]:
    """image_id (as a string) → its pseudo-queries."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"not JSON: {e}", file=str(path)) from e
    if not isinstance(data, list):
        raise DataError(
            "expected a JSON list of {image_id, caption, original_caption}", file=str(path)
        )
    out: dict[str, list[str]] = {}
    for i, item in enumerate(data):
        caps = item.get("caption") if isinstance(item, dict) else None
        if not isinstance(caps, list) or not caps or not all(isinstance(c, str) for c in caps):
            raise DataError(
                f"entry {i}: 'caption' must be a non-empty list of strings", file=str(path)
            )
        if "image_id" not in item:
            raise DataError(f"entry {i}: no 'image_id'", file=str(path))
        out[str(item["image_id"])] = caps
    return out


def semantic_ids(
    keys: list[str],
    splits: list[str],
    texts: list[list[str]],
    image_ids: list[str | None],
    pseudo: dict[str, list[str]] | None,
    source: str = "index",
) -> tuple[list[list[str]], dict[str, int]]:
    """Identifier texts per image, and collision counts {"texts", "images"}."""
    out: list[list[str]] = []
    for row, (key, split, caps, image_id) in enumerate(
        zip(keys, splits, texts, image_ids, strict=True)
    ):
        if split == "train":
            ids = list(caps or [])
        else:
            if pseudo is None:
                raise DataError(
                    f"row {row} (key {key!r}, split {split!r}): non-train images need "
                    "--pseudo-queries (their captions are the test queries)",
                    file=source,
                )
            ids = pseudo.get(str(image_id)) if image_id is not None else None
            ids = ids if ids is not None else pseudo.get(key)
            if ids is None:
                raise DataError(
                    f"row {row} (key {key!r}, image_id {image_id!r}): no pseudo-queries",
                    file=source,
                )
        if not ids:
            raise DataError(f"row {row} (key {key!r}): no texts to use as identifiers", file=source)
        out.append(list(ids))
    return out, collisions(out)


def collisions(identifiers: list[list[str]]) -> dict[str, int]:
    """How many distinct texts belong to more than one image, and how many images hold one."""
    owners = Counter(t for ids in identifiers for t in set(ids))
    shared = {t for t, n in owners.items() if n > 1}
    images = sum(1 for ids in identifiers if shared.intersection(ids))
    return {"texts": len(shared), "images": images}
