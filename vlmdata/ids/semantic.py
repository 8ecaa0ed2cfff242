"""GRACE's semantic identifiers: texts that describe the image.

As GRACE's `convert_flicker30k_to_wds_*` (semantic_identifier) builds them: train images use
their own captions; test images must not (their captions are the retrieval queries), so they use
pseudo-queries generated for them, read from GRACE's published JSON: a list of {"image_id",
"caption": [strings], "original_caption"}. GRACE keys an entry by the image file's stem
(Flickr30k: "1000092795" for 1000092795.jpg) or, for COCO, by the COCO id (an entry 391895 is
COCO_val2014_000000391895.jpg); a train image found there gets its pseudo-queries too. Val
images get no semantic id (GRACE writes no val sample): they are accepted with a null
identifier unless the file has pseudo-queries for them. Each image's training identifier is one
of its texts picked at random (GRACE's `choice`), here from a seeded generator. Different images
can share a text; such collisions are counted and reported, not hidden.
"""

from __future__ import annotations

import json
import os
import random
import re
from collections import Counter
from pathlib import Path, PurePosixPath

from vlmdata.core.errors import DataError

COCO_STEM = re.compile(r"(?:COCO_[a-z]+\d{4}_)?(\d{12})")


def load_pseudo_queries(path: str | os.PathLike) -> dict[str, list[str]]:
    """GRACE's image_id (as a string) → its pseudo-queries."""
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
        if "image_id" not in item or not isinstance(item["image_id"], str | int):
            raise DataError(f"entry {i}: no 'image_id' (a file stem or a COCO id)", file=str(path))
        out.setdefault(str(item["image_id"]), []).extend(caps)  # GRACE appends repeats
    return out


def pseudo_keys(path: str | None) -> list[str]:
    """The keys GRACE's pseudo-query file may give an image stored at `path`: the file's stem,
    its name, and for COCO file names the COCO id ("COCO_val2014_000000391895" -> "391895")."""
    if not path:
        return []
    name = PurePosixPath(path.replace("\\", "/")).name
    stem = name.rsplit(".", 1)[0] if "." in name else name
    keys = [stem, name]
    m = COCO_STEM.fullmatch(stem)
    if m:
        keys.append(str(int(m.group(1))))
    return keys


def semantic_ids(
    keys: list[str],
    splits: list[str],
    texts: list[list[str]],
    paths: list[str | None],
    pseudo: dict[str, list[str]] | None,
    source: str = "index",
) -> tuple[list[list[str] | None], dict[str, int]]:
    """Identifier texts per image (None: a val image without any), and collision counts."""
    out: list[list[str] | None] = []
    for row, (key, split, caps, path) in enumerate(zip(keys, splits, texts, paths, strict=True)):
        found = _lookup(pseudo, path)
        if split == "train":
            ids = list(caps or []) + (found or [])
        elif found is not None:
            ids = found
        elif split == "val":
            out.append(None)
            continue
        elif pseudo is None:
            raise DataError(
                f"row {row} (key {key!r}, split {split!r}): non-train images need "
                "--pseudo-queries (their captions are the test queries)",
                file=source,
            )
        else:
            raise DataError(
                f"row {row} (key {key!r}, path {path!r}): no pseudo-queries under any of "
                f"{pseudo_keys(path)} (GRACE keys them by the file's stem or COCO id)",
                file=source,
            )
        if not ids:
            raise DataError(f"row {row} (key {key!r}): no texts to use as identifiers", file=source)
        out.append(ids)
    return out, collisions([ids for ids in out if ids is not None])


def _lookup(pseudo: dict[str, list[str]] | None, path: str | None) -> list[str] | None:
    if pseudo is None:
        return None
    for k in pseudo_keys(path):
        if k in pseudo:
            return list(pseudo[k])
    return None


def choose(identifiers: list[list[str] | None], seed: int) -> list[str | None]:
    """One text per image at random (GRACE: `choice(image_name2id_dict[filename])`), seeded,
    drawn in row order."""
    rng = random.Random(seed)
    return [None if texts is None else rng.choice(texts) for texts in identifiers]


def collisions(identifiers: list[list[str]]) -> dict[str, int]:
    """How many distinct texts belong to more than one image, and how many images hold one."""
    owners = Counter(t for ids in identifiers for t in set(ids))
    shared = {t for t, n in owners.items() if n > 1}
    images = sum(1 for ids in identifiers if shared.intersection(ids))
    return {"texts": len(shared), "images": images}
