"""The position-based identifier schemes of GRACE: numeric, string and atomic.

Each image gets a position: its row number (0-based) in index order, or a seeded random
permutation of it (`seed`), so identifiers carry no information about the index order.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

CHUNK = 65536


def positions(n: int, seed: int | None) -> np.ndarray:
    """Row i's position: i, or a permutation drawn from `seed` (numpy PCG64, stable), int32
    where n fits: half of `permutation(n)`'s int64 (4 MB at 10^6 rows, held through the
    write). `Generator.permutation(n)` is `shuffle(arange(n))`, and a shuffle's draws do not
    depend on the dtype, so the values are permutation(n)'s (tests/ids/test_ids_write.py)."""
    pos = np.arange(n, dtype=np.int32 if n <= 2**31 else np.int64)
    if seed is not None:
        np.random.default_rng(seed).shuffle(pos)
    return pos


# numeric: digits separated by spaces ("1 2 3 4"), one token per digit; string: the position as
# one string ("1234"), split however the tokenizer splits it; atomic: "image_N", with
# --add-tokens one new vocabulary token per identifier.
_FORMATS = {"numeric": lambda p: " ".join(str(p)), "string": str, "atomic": "image_{}".format}


# Each identifier's length in bytes from its position's decimal digits d (positions >= 0).
_LENGTHS = {"numeric": lambda d: 2 * d - 1, "string": lambda d: d, "atomic": lambda d: d + 6}


def position_id_array(scheme: str, n: int, seed: int | None = None) -> pa.Array:
    """The identifiers of the numeric / string / atomic scheme as one Arrow string
    array, made CHUNK positions at a time (no Python string per row held)."""
    return _id_strings(scheme, positions(n, seed))


def _id_strings(scheme: str, pos: np.ndarray) -> pa.Array:
    """The identifiers of positions `pos` as one string array whose buffers are sized from
    the digit counts first and filled CHUNK identifiers at a time: the column is held once
    (joining formatted chunks held it twice: ~15 MB more at 10^6 ids, build-ids' peak)."""
    fmt = _FORMATS[scheme]
    digits = np.ones(len(pos), dtype=np.int32)
    for k in range(1, 19):  # decimal digits of each position
        digits += pos >= 10**k
    lengths = _LENGTHS[scheme](digits)
    del digits
    if int(lengths.sum(dtype=np.int64)) >= 2**31:
        raise ValueError(f"{len(pos)} identifiers do not fit one Arrow string array")
    offsets = np.zeros(len(pos) + 1, dtype=np.int32)
    np.cumsum(lengths, dtype=np.int32, out=offsets[1:])
    del lengths
    data = np.empty(int(offsets[-1]), dtype=np.uint8)
    for i in range(0, len(pos), CHUNK):
        text = "".join(fmt(int(p)) for p in pos[i : i + CHUNK]).encode("ascii")
        lo, hi = int(offsets[i]), int(offsets[min(i + CHUNK, len(pos))])
        if len(text) != hi - lo:  # the lengths above are the formats' own
            raise AssertionError(f"identifier lengths of scheme {scheme!r} mispredicted")
        data[lo:hi] = np.frombuffer(text, dtype=np.uint8)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.Array.from_buffers(pa.string(), len(pos), buffers, null_count=0)


class PositionIds:
    """`position_id_array`'s identifiers handed out `rows` at a time (`take`, in order), each
    part made only when asked for: a writer holds one row group's identifiers, not all.

    The positions themselves are drawn when first needed and dropped by `drop` and after the
    last row is taken (drawn again if asked for after `drop`: the same values, from `seed`),
    so the key column's write, build-ids' peak, does not hold them (4 bytes a row)."""

    type = pa.string()

    def __init__(self, scheme: str, n: int, seed: int | None = None) -> None:
        self._scheme, self._n, self._seed, self._at = scheme, n, seed, 0
        self._pos: np.ndarray | None = None

    def __len__(self) -> int:
        return self._n

    def _positions(self) -> np.ndarray:
        if self._pos is None:
            self._pos = positions(self._n, self._seed)
        return self._pos

    def drop(self) -> None:
        """Let the positions go until they are needed again."""
        self._pos = None

    def take(self, rows: int) -> pa.Array:
        part = self._positions()[self._at : self._at + rows]
        self._at += len(part)
        if self._at >= self._n:
            self.drop()
        return _id_strings(self._scheme, part)

    def part(self, start: int, stop: int) -> pa.Array:
        """Identifiers [start, stop), not taken; the positions are dropped once a part reaches
        the last row (drawn again if asked for after)."""
        part = _id_strings(self._scheme, self._positions()[start:stop])
        if stop >= self._n:
            self.drop()
        return part

    def row_bytes(self) -> int:
        """Arrow bytes of the longest identifier and its offset: an upper bound per row."""
        return int(_LENGTHS[self._scheme](len(str(max(self._n - 1, 0))))) + 4

    def texts(self, start: int, stop: int) -> list[str]:
        """Identifiers [start, stop) as Python strings (for the tokenizer), not taken."""
        fmt = _FORMATS[self._scheme]
        return [fmt(p) for p in self._positions()[start:stop].tolist()]
