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
from pathlib import Path
from typing import Any

import numpy as np

from vlmdata.core.atomic import atomic_open

MAGIC = b"VLMTRIE1"
FORMAT_VERSION = 1
ALIGN = 64


def _pad(n: int) -> int:
    return (-n) % ALIGN


def save_arrays(path: str | os.PathLike, header: dict[str, Any], arrays: dict[str, np.ndarray]):
    """Write header + arrays atomically; the header gains a table of dtype, shape, offset."""
    table, offset = {}, 0
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        table[name] = {"dtype": arr.dtype.newbyteorder("<").str, "shape": list(arr.shape)}
        table[name]["offset"] = offset
        offset += arr.nbytes + _pad(arr.nbytes)
    header = dict(header, arrays=table, format="vlm-trie", version=FORMAT_VERSION)
    # The data offset depends on the header length, which depends on nothing else: two passes.
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode("utf-8")
    start = len(MAGIC) + 8 + len(blob)
    start += _pad(start)
    with atomic_open(path, "wb") as f:
        f.write(MAGIC)
        f.write(len(blob).to_bytes(8, "little"))
        f.write(blob)
        f.write(b"\0" * (start - len(MAGIC) - 8 - len(blob)))
        for arr in arrays.values():
            data = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False)
            f.write(data.tobytes())
            f.write(b"\0" * _pad(data.nbytes))


def load_arrays(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Memory-map a trie file: (header, read-only array views)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trie not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(len(MAGIC))
        if magic != MAGIC:
            raise ValueError(f"{path}: not a vlm trie file (magic {magic!r})")
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n).decode("utf-8"))
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path}: trie format version {header.get('version')} not supported")
    start = len(MAGIC) + 8 + n
    start += _pad(start)
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    arrays = {}
    for name, spec in header["arrays"].items():
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        arrays[name] = np.frombuffer(
            mm, dtype=dtype, count=count, offset=start + spec["offset"]
        ).reshape(spec["shape"])
    return header, arrays
