"""Fixed-size numpy rows in an unlinked temp file: plan state kept off the heap (issue 23).

Shared by the disk runs of keyset.py (sorted_runs.DiskRun) and the shard plan's DiskRows.
Plain `pwrite` / `preadv`, never `mmap`: a mapped file's pages count as the process's resident
memory. The file is unlinked at once, so it is gone with its descriptor, even on a kill.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np


class RowFile:
    """Rows of one structured dtype, written and read by row number."""

    def __init__(self, dtype: np.dtype, prefix: str, suffix: str) -> None:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
        os.unlink(path)  # read by this process only
        self._fd, self.dtype = fd, np.dtype(dtype)

    def write_at(self, row: int, rows: np.ndarray) -> None:
        """Write `rows` (this dtype) starting at row number `row`."""
        data = memoryview(np.ascontiguousarray(rows, dtype=self.dtype)).cast("B")
        at, offset = 0, row * self.dtype.itemsize
        while at < len(data):
            at += os.pwrite(self._fd, data[at:], offset + at)

    def read_into(self, row: int, buffer: np.ndarray) -> np.ndarray:
        """Fill `buffer` (this dtype) with the rows from row number `row`; returns it."""
        view = memoryview(buffer).cast("B")
        at, offset = 0, row * self.dtype.itemsize
        while at < len(view):
            got = os.preadv(self._fd, [view[at:]], offset + at)
            if got <= 0:
                raise OSError("a temp file of plan rows ended early")
            at += got
        return buffer

    def read(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 as a new array."""
        return self.read_into(lo, np.empty(hi - lo, dtype=self.dtype))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()
