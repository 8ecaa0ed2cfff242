"""All-or-nothing JSONL reading for vlmtrain's inputs (subset files, eval annotations): unlike
vlmdata's source readers, which reject bad rows one by one, the first bad line is an error."""

from __future__ import annotations

import os
from collections.abc import Iterator

from vlmdata.core.errors import DataError
from vlmdata.sources.lines import iter_jsonl as iter_jsonl_rows


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """(line number, record) for each non-blank line of a JSONL file; the first bad line is an
    error naming the file and line."""
    for n, rec, error in iter_jsonl_rows(path):
        if error is not None:
            raise DataError(f"{error.reason}: {error.detail}", file=str(path), line=n)
        yield n, rec
