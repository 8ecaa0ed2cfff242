"""The position-based identifier schemes of GRACE: numeric, string and atomic.

Each image gets a position: its row number (0-based) in index order, or a seeded random
permutation of it (`seed`), so identifiers carry no information about the index order.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

CHUNK = 65536


def positions(n: int, seed: int | None) -> np.ndarray:
    """Row i's position: i, or a permutation drawn from `seed` (numpy PCG64, stable)."""
    if seed is None:
        return np.arange(n)
    return np.random.default_rng(seed).permutation(n)


# numeric: digits separated by spaces ("1 2 3 4"), one token per digit; string: the position as
# one string ("1234"), split however the tokenizer splits it; atomic: "image_N", with
# --add-tokens one new vocabulary token per identifier.
_FORMATS = {"numeric": lambda p: " ".join(str(p)), "string": str, "atomic": "image_{}".format}


def position_id_array(scheme: str, n: int, seed: int | None = None) -> pa.Array:
    """The identifiers of the numeric / string / atomic scheme as one Arrow string
    array, made CHUNK positions at a time (no Python string per row held)."""
    return pa.chunked_array(list(_chunks(scheme, n, seed)), pa.string()).combine_chunks()


def _chunks(scheme: str, n: int, seed: int | None) -> Iterator[pa.Array]:
    yield from _formatted(_FORMATS[scheme], positions(n, seed))


def _formatted(fmt, pos: np.ndarray) -> Iterator[pa.Array]:
    for i in range(0, len(pos), CHUNK):
        yield pa.array([fmt(int(p)) for p in pos[i : i + CHUNK]], pa.string())


class PositionIds:
    """`position_id_array`'s identifiers handed out `rows` at a time (`take`, in order), each
    part made only when asked for: a writer holds one row group's identifiers, not all."""

    type = pa.string()

    def __init__(self, scheme: str, n: int, seed: int | None = None) -> None:
        self._fmt, self._pos, self._at = _FORMATS[scheme], positions(n, seed), 0

    def take(self, rows: int) -> pa.Array:
        part = self._pos[self._at : self._at + rows]
        self._at += len(part)
        return pa.chunked_array(list(_formatted(self._fmt, part)), pa.string()).combine_chunks()
