"""Per-row and per-sample state of the shard plan in numpy arrays (issue 23): hashes, numbers and
fixed-size records, never a Python object per row. A string key becomes two 64-bit hashes
(core/keyset.py), a sample a row of a structured array."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmdata.core.keyset import hash128
from vlmdata.core.row_file import RowFile


class Growing:
    """A structured (or plain) numpy array appended to a row at a time, capacity doubled."""

    def __init__(self, dtype: np.dtype | str, capacity: int = 1024) -> None:
        self._a = np.zeros(max(capacity, 16), dtype=dtype)
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, row: Any) -> int:
        """Add one row; its number."""
        if self.n == len(self._a):
            self._grow(2 * self.n)
        self._a[self.n] = row
        self.n += 1
        return self.n - 1

    def extend(self, rows: np.ndarray) -> None:
        if self.n + len(rows) > len(self._a):
            self._grow(max(2 * len(self._a), self.n + len(rows)))
        self._a[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    def _grow(self, size: int) -> None:
        bigger = np.zeros(size, dtype=self._a.dtype)
        bigger[: self.n] = self._a[: self.n]
        self._a = bigger

    @property
    def array(self) -> np.ndarray:
        """The rows so far (a view: valid until the next append)."""
        return self._a[: self.n]


def _text(value: Any) -> str | None:
    """A value as the string hashed for it: strings as they are, None as null, anything else
    by its type and repr (it can only be compared for equality with a like value)."""
    if value is None or isinstance(value, str):
        return value
    return f"\0{type(value).__name__}:{value!r}"


def value_hashes(values: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo) 128-bit hashes of any values (null has its own hash)."""
    if not values:
        empty = np.empty(0, dtype=np.uint64)
        return empty, empty
    return hash128([_text(v) for v in values])


def digest_hashes(hex_digests: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hi, lo): the first 128 bits of hex sha256 digests (already uniform: no hashing)."""
    raw = b"".join(bytes.fromhex(h[:32]) for h in hex_digests)
    pairs = np.frombuffer(raw, dtype="<u8").reshape(-1, 2)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


class DiskRows:
    """Fixed-size rows of a structured dtype appended to a temp file and read back by row
    numbers: per-sample facts the plan needs only after placement (layout, writing), kept on
    disk rather than in memory (issue 23). BUFFER rows wait in memory between writes."""

    BUFFER = 4096

    def __init__(self, dtype: np.dtype) -> None:
        self._file = RowFile(dtype, prefix="vlmdata-plan-", suffix=".rows")
        self.dtype = self._file.dtype
        self._buffer = np.zeros(self.BUFFER, dtype=self.dtype)
        self._held = 0  # rows in the buffer
        self.n = 0

    def __len__(self) -> int:
        return self.n

    def append(self, row: Any) -> int:
        self._buffer[self._held] = row
        self._held += 1
        self.n += 1
        if self._held == self.BUFFER:
            self.flush()
        return self.n - 1

    def extend(self, rows: np.ndarray) -> None:
        """Append many rows at once (written straight through)."""
        self.flush()
        self._file.write_at(self.n, rows)
        self.n += len(rows)

    def read_range(self, lo: int, hi: int) -> np.ndarray:
        """Rows lo..hi-1 in one read."""
        self.flush()
        hi = min(hi, self.n)
        return self._file.read(lo, hi) if hi > lo else np.zeros(0, dtype=self.dtype)

    def flush(self) -> None:
        if self._held:
            self._file.write_at(self.n - self._held, self._buffer[: self._held])
            self._held = 0

    def read(self, which: np.ndarray) -> np.ndarray:
        """The rows numbered `which` (any order), each run of near rows read in one pread."""
        self.flush()
        out = np.zeros(len(which), dtype=self.dtype)
        if len(which) == 0:
            return out
        order = np.argsort(which, kind="stable")
        wanted = which[order]
        runs = np.split(np.arange(len(wanted)), np.flatnonzero(np.diff(wanted) > GAP) + 1)
        for run in runs:
            lo, hi = int(wanted[run[0]]), int(wanted[run[-1]]) + 1
            out[order[run]] = self._file.read(lo, hi)[wanted[run] - lo]
        return out

    def close(self) -> None:
        self._file.close()


def index_dtype(n: int) -> np.dtype:
    """The narrowest signed integer for numbers below n and -1: int32 unless n needs more
    (a row or sample number per row: 4 bytes, not 8)."""
    return np.dtype(np.int32 if n < 2**31 else np.int64)


GAP = 64  # rows between two wanted rows beyond which DiskRows.read starts another pread
