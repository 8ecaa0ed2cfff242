"""`vlmdata get -o DEST`: one sample's members as files, never outside DEST.

The file names come from the index (`key`, `format`), which is data, not trusted: a crafted
index could say `key = "../../home/u/.bashrc"`. The key must pass the one key rule
(core/manifest.key_problem), the format must be one the writer produces, and each final path
must still lie in DEST; otherwise nothing is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from vlmdata.core.atomic import atomic_open
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import key_problem
from vlmdata.shards.images import FORMATS
from vlmdata.shards.reader import ShardReader


def member_paths(dest: str | os.PathLike, key: object, fmt: object) -> dict[str, Path]:
    """role -> file in DEST for a sample; DataError if the index's key or format is unsafe."""
    problem = key_problem(key)
    if problem is not None:
        raise DataError(f"index/index.parquet: {problem}; refusing to write it as a file name")
    if fmt not in FORMATS:
        raise DataError(
            f"index/index.parquet: format {fmt!r} of key {key!r} is not one of {FORMATS}; "
            "refusing to write it as a file name"
        )
    root = Path(dest)
    paths = {role: root / f"{key}.{ext}" for role, ext in (("image", fmt), ("json", "json"))}
    paths["txt"] = root / f"{key}.txt"
    for path in paths.values():  # cannot fail after the checks above; kept as the invariant
        if path.resolve().parent != root.resolve():
            raise DataError(f"{path} is outside {root}")
    return paths


def write_members(reader: ShardReader, row: int, dest: str | os.PathLike) -> list[Path]:
    """Write row's image, json and txt into DEST (atomically); the paths written."""
    key, fmt = reader.index["key"][row], reader.index["format"][row]
    paths = member_paths(dest, key, fmt)
    parts = reader.members(row)
    for role, path in paths.items():
        with atomic_open(path, "wb") as f:
            f.write(parts[role])
    return list(paths.values())
