"""KEY.json / KEY.txt bytes of every planned sample, kept in a local temp file, not in memory.

The planned writer makes every sample's KEY.json once all its records are placed, long before
its shard is written; held as bytes they were the largest per-image state of a run (issue 23).
The plan keeps (offset, json size, txt size) per sample; the task writing a shard reads them
back with one pread each. Local workers open the file by its path; a Spark or Ray task gets
its shard's bytes inlined in the job instead (`inline`), since executors may be elsewhere.
"""

from __future__ import annotations

import contextlib
import os
import struct
import tempfile
from collections.abc import Iterator

Slot = bytes  # (offset, json size, txt size) packed: 16 bytes, not a tuple of three ints
_SLOT = struct.Struct("<QII")


def unpack_slot(slot: Slot) -> tuple[int, int, int]:
    """(offset, json size, txt size)."""
    return _SLOT.unpack(slot)


class Spill:
    """An append-only temp file of json+txt pairs; `close()` removes it."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="vlmdata-plan-", suffix=".spill")
        self._fd, self._end = fd, 0

    def put(self, js: bytes, txt: bytes) -> Slot:
        """Append one sample's pair; where it is."""
        at = self._end
        os.pwrite(self._fd, js + txt, at)
        self._end += len(js) + len(txt)
        return _SLOT.pack(at, len(js), len(txt))

    def put_raw(self, data: bytes) -> int:
        """Append bytes the plan reads back itself (`get_raw`); where they are."""
        at = self._end
        os.pwrite(self._fd, data, at)
        self._end += len(data)
        return at

    def get_raw(self, at: int, size: int) -> bytes:
        data = os.pread(self._fd, size, at)
        if len(data) != size:
            raise OSError(f"plan spill file ended early at byte {at}")
        return data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


def read_pair(fd: int, slot: Slot) -> tuple[bytes, bytes]:
    """One sample's (json, txt) from an open spill file."""
    at, nj, nt = _SLOT.unpack(slot)
    data = os.pread(fd, nj + nt, at)
    if len(data) != nj + nt:
        raise OSError(f"plan spill file ended early at byte {at}")
    return data[:nj], data[nj:]


@contextlib.contextmanager
def open_spill(path: str) -> Iterator[int]:
    """The spill file opened for reading (a descriptor for `read_pair`)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        yield fd
    finally:
        os.close(fd)
