"""Atomic writes: a file appears under its final name complete, or not at all.

A killed run leaves only `*.tmp-*` files behind, which a rerun ignores and overwrites, so reruns
end with the same output as an uninterrupted run. A failed write (a full disk) removes its temp
file before the error goes up. Files get the usual mode (0666 less the umask), like `open()`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO


def temp_path_for(path: str | os.PathLike) -> Path:
    """A unique temporary name in the same directory (rename is atomic within a file system)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a shared folder must be readable
    finally:
        os.close(fd)
    return Path(tmp)


def _umask() -> int:
    """The process umask (read by setting it back at once: there is no getter before 3.13)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; rename it over `path` only if the block succeeds.

    The mode is set again before the rename: a writer that replaces the temp file instead of
    writing into it (safetensors' `save_file` makes a new 0600 file) would otherwise publish 0600.
    """
    tmp = temp_path_for(path)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """`open()` for writing, atomically; the data is fsynced before the rename."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | os.PathLike, obj: object) -> None:
    """Write JSON atomically with stable formatting (sorted keys, so reruns are byte-identical)."""
    import json

    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, ensure_ascii=False)
        f.write("\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[object]) -> None:
    """Write one JSON value a line, atomically (keys in the rows' own order)."""
    import json

    with atomic_open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
