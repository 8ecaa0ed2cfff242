"""The trie file (docs/DESIGN.md, contract 5): a small JSON header, then 64-byte aligned raw
numpy arrays.

Layout: 8-byte magic `VLMTRIE1`, little-endian uint64 header length, the UTF-8 JSON header
(sorted keys, so reruns are byte-identical), then each array at the offset the header gives.
Loading memory-maps the file and takes zero-copy views, so opening a trie of millions of
identifiers costs milliseconds and only the pages a lookup touches become resident. No pickle.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any

import numpy as np

from vlmdata.core.atomic import atomic_open

MAGIC = b"VLMTRIE1"
FORMAT_VERSION = 1
ALIGN = 64


def _pad(n: int) -> int:
    return (-n) % ALIGN


def save_arrays(path: str | os.PathLike, header: dict[str, Any], arrays: dict[str, np.ndarray]):
    """Write header + arrays atomically; the header gains a table of dtype, shape, offset."""
    arrays = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    specs = {name: (arr.dtype, arr.shape) for name, arr in arrays.items()}
    with atomic_open(path, "wb") as f:
        _write_header(f, header, specs)
        for arr in arrays.values():
            data = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
            f.write(memoryview(data.reshape(-1)).cast("B"))  # the array's own bytes: no copy
            f.write(b"\0" * _pad(data.nbytes))


class Spool:
    """A 1-d array appended a chunk at a time to an unnamed temporary file, so a builder can
    hand each piece over as it is made and hold none of them (the file's pages are the
    kernel's cache, not the process's memory). `save_spooled` copies it into place."""

    def __init__(self, dtype: np.dtype, folder: str | os.PathLike | None = None) -> None:
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.max: int | None = None  # the largest value appended (the final dtype may narrow)
        self._file = tempfile.TemporaryFile(dir=folder)  # gone when closed, or if killed

    def append(self, chunk: np.ndarray) -> None:
        chunk = np.ascontiguousarray(chunk, dtype=self.dtype)
        if chunk.size:
            top = int(chunk.max())
            self.max = top if self.max is None else max(self.max, top)
        self._file.write(memoryview(chunk.reshape(-1)).cast("B"))
        self.count += chunk.size

    def copy_to(self, f: IO[bytes], dtype: np.dtype, block: int = 1 << 20) -> None:
        """Write the array to `f` in `dtype` (little-endian), `block` bytes read at a time."""
        out = np.dtype(dtype).newbyteorder("<")
        self._file.seek(0)
        block = max(1, block // self.dtype.itemsize)
        left = self.count
        while left:
            n = min(block, left)
            raw = self._file.read(n * self.dtype.itemsize)
            f.write(memoryview(np.frombuffer(raw, self.dtype).astype(out, copy=False)).cast("B"))
            left -= n

    def close(self) -> None:
        self._file.close()


def save_spooled(
    path: str | os.PathLike,
    header: dict[str, Any],
    spools: dict[str, tuple[Spool, np.dtype]],
) -> None:
    """Like `save_arrays`, byte for byte, for arrays held in spools (each with its dtype in
    the file): the header is written first, so it needs every length, known only at the end."""
    specs = {name: (np.dtype(dt), (sp.count,)) for name, (sp, dt) in spools.items()}
    with atomic_open(path, "wb") as f:
        _write_header(f, header, specs)
        for sp, dt in spools.values():
            sp.copy_to(f, dt)
            f.write(b"\0" * _pad(sp.count * np.dtype(dt).itemsize))


def _write_header(f: IO[bytes], header: dict[str, Any], specs: dict[str, tuple]) -> None:
    """Magic, header length, the JSON header with the array table (each array's dtype, shape
    and offset from `specs`: name -> (dtype, shape)), padding to the first array."""
    table, offset = {}, 0
    for name, (dtype, shape) in specs.items():
        nbytes = dtype.itemsize * int(np.prod(shape, dtype=np.int64))
        entry = {"dtype": dtype.newbyteorder("<").str, "shape": [int(d) for d in shape]}
        table[name] = entry | {"offset": offset}
        offset += nbytes + _pad(nbytes)
    header = dict(header, arrays=table, format="vlm-trie", version=FORMAT_VERSION)
    # The data offset depends on the header length, which depends on nothing else: two passes.
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    start = len(MAGIC) + 8 + len(blob)
    start += _pad(start)
    f.write(MAGIC)
    f.write(len(blob).to_bytes(8, "little"))
    f.write(blob)
    f.write(b"\0" * (start - len(MAGIC) - 8 - len(blob)))


_DTYPES = {"<u2", "<i4", "<i8", "<u4", "<u8", "|u1", "|i1", "<i2"}


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Memory-map a trie file: (header, read-only array views).

    The header is data: every length, offset, shape and dtype in it is checked against the file
    before anything is read or mapped (a header claiming 2^62 bytes is a ValueError, not an
    allocation)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trie not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise ValueError(f"{path}: not a vlm trie file (magic {magic!r})")
        n = int.from_bytes(f.read(8), "little")
        if n > size - len(MAGIC) - 8:
            raise ValueError(f"{path}: header length {n:,} is past the end of the file ({size:,})")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except ValueError as e:
            raise ValueError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(header, dict) or header.get("version") != FORMAT_VERSION:
        version = header.get("version") if isinstance(header, dict) else None
        raise ValueError(f"{path}: trie format version {version} not supported")
    start = len(MAGIC) + 8 + n
    start += _pad(start)
    specs = _array_specs(path, header.get("arrays"), size - start)
    mm = np.memmap(path, dtype=np.uint8, mode="r") if size else None
    arrays = {}
    for name, (dtype, shape, offset, count) in specs.items():
        arrays[name] = np.frombuffer(mm, dtype=dtype, count=count, offset=start + offset).reshape(
            shape
        )
    return header, arrays


def _array_specs(path: Path, table: Any, room: int) -> dict[str, tuple]:
    """(dtype, shape, offset, count) per array, each checked to lie within `room` bytes."""
    if not isinstance(table, dict):
        raise ValueError(f"{path}: header has no array table")
    specs = {}
    for name, spec in table.items():
        try:
            dtype = np.dtype(spec["dtype"])
            shape = [int(d) for d in spec["shape"]]
            offset = int(spec["offset"])
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{path}: array {name!r}: bad spec ({e})") from None
        if dtype.str not in _DTYPES or min(shape, default=0) < 0 or offset < 0:
            raise ValueError(f"{path}: array {name!r}: bad dtype, shape or offset {spec}")
        count = 1
        for d in shape:  # Python ints: a product past 2^63 cannot wrap around
            count *= d
        if offset + count * dtype.itemsize > room:
            raise ValueError(
                f"{path}: array {name!r} claims {count * dtype.itemsize:,} bytes at offset "
                f"{offset:,}, past the end of the file"
            )
        specs[name] = (dtype, shape, offset, count)
    return specs
