"""`vlmdata view OUT -o page.html`: gather, render, write atomically (a local file or a URL)."""

from __future__ import annotations

import os
from typing import Any

from vlmdata.core.atomic import atomic_open
from vlmdata.core.storage import Location, is_url
from vlmdata.view.gather import ViewOptions, gather
from vlmdata.view.html import render

__all__ = ["ViewOptions", "write_view"]


def write_view(
    out_dir: str | os.PathLike,
    dest: str | os.PathLike,
    opt: ViewOptions | None = None,
    storage_options: dict[str, Any] | None = None,
) -> int:
    """Write the page for OUT to `dest` (a path, or an fsspec URL read with the same storage
    options); returns its size in bytes."""
    data = render(gather(out_dir, opt or ViewOptions(), storage_options)).encode("utf-8")
    text = os.fspath(dest)
    if is_url(text):
        parent, _, name = text.rstrip("/").rpartition("/")
        Location(parent, storage_options).write_bytes(name, data)
    else:
        with atomic_open(text, "wb") as f:
            f.write(data)
    return len(data)
