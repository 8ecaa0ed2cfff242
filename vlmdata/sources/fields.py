"""Small checks shared by the source readers: typed field access, splits, safe relative paths.

Each check raises `RowError(reason, detail)`; the reader turns it into one rejects row,
so every reader reports the same reasons for the same kind of damage.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath
from typing import Any

from vlmdata.core.errors import DataError, Rejected


class RowError(Rejected):
    """One input row cannot be used (a source reader's reject)."""


def require(record: dict[str, Any], field: str, kind: type | tuple[type, ...] = str) -> Any:
    """`record[field]`, checked for presence and type (strings must also be valid UTF-8)."""
    if not isinstance(record, dict):
        raise RowError("wrong_type", f"record is {type(record).__name__}, not an object")
    if field not in record or record[field] is None:
        raise RowError("missing_field", f"no {field!r}")
    value = record[field]
    if isinstance(value, bool) or not isinstance(value, kind):
        raise RowError("wrong_type", f"{field!r} is {type(value).__name__}")
    if isinstance(value, str):
        check_utf8(value, field)
    return value


def optional(record: dict[str, Any], field: str, kind: type | tuple[type, ...] = str) -> Any:
    """Like `require`, but a missing or null field is None."""
    if record.get(field) is None:
        return None
    return require(record, field, kind)


def check_utf8(text: str, what: str) -> None:
    """JSON is decoded with `surrogateescape`, so invalid UTF-8 bytes show up as surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise RowError("bad_utf8", f"{what}: invalid UTF-8 at character {e.start}") from None


def nonempty_text(text: str, what: str) -> str:
    """The text stripped; empty or whitespace-only text is a row error."""
    text = text.strip()
    if not text:
        raise RowError("empty_text", f"{what} is empty")
    return text


def safe_relpath(path: str, what: str = "path") -> str:
    """A relative POSIX path that cannot leave the image folder it is joined to."""
    check_utf8(path, what)
    p = path.replace("\\", "/")
    if not p.strip() or p.startswith("/") or re.match(r"^[A-Za-z]:", p) or "\x00" in p:
        raise RowError("unsafe_path", f"{what} {path!r} is empty or absolute")
    norm = posixpath.normpath(p)
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise RowError("unsafe_path", f"{what} {path!r} leaves the image folder")
    return norm


def path_stem(path: str) -> str:
    """The path without its extension, e.g. `train2014/COCO_1.jpg` -> `train2014/COCO_1`."""
    p = PurePosixPath(path)
    return str(p.with_suffix("")) if p.suffix else str(p)


_SPLIT_WORDS = (("train", "train"), ("validation", "val"), ("val", "val"), ("test", "test"))


def split_from_name(name: str, override: str | None = None) -> str:
    """`--split` if given, else the split named in a file name (train/val/test)."""
    if override:
        return override
    lower = name.lower()
    for word, split in _SPLIT_WORDS:
        if re.search(rf"(^|[^a-z]){word}", lower):
            return split
    raise DataError("cannot tell the split from the file name; pass --split", file=name)


def printable(obj: Any) -> Any:
    """`obj` with invalid UTF-8 (surrogate-escaped bytes) shown as `\\xNN`, so a reject record
    can be stored as Parquet text."""
    if isinstance(obj, str):
        return obj.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    if isinstance(obj, dict):
        return {printable(k): printable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [printable(v) for v in obj]
    return obj
