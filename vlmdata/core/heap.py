"""glibc's heap made to give freed memory back (issue 23): a no-op under another C library.

A long run that makes and frees large numpy arrays keeps their pages resident in two ways.
glibc's mmap threshold is dynamic: freeing a mapped block raises it to that block's size (up
to 32 MiB), so later arrays below it come from the heap, and freed heap pages stay resident
unless they are at its top. And Python's short-lived lists and dicts leave free heap between
live blocks. Measured on `shard` at 10^6 images: ~160 MB of free heap resident from the plan's
layout to the end. `fix_mmap_threshold` keeps each array above 128 KiB its own mapping,
unmapped when freed; `release_free_heap` (`malloc_trim`) hands free heap pages back;
`system_arrow_pool` keeps Arrow's buffers on that heap too, inside a block;
`system_arrow_pool_for_process` chooses it for a whole command and the processes it starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter (malloc.h)
MMAP_THRESHOLD = 128 * 1024  # glibc's default, fixed (setting it turns the dynamic rule off)


@cache
def _libc() -> ctypes.CDLL | None:
    """glibc through ctypes, or None (another C library: the calls are skipped)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def fix_mmap_threshold() -> None:
    """Keep glibc's mmap threshold at 128 KiB for the rest of the process: every larger
    block is its own mapping, returned to the system when freed (costs page faults on each
    new mapping: system CPU)."""
    libc = _libc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)


def release_free_heap() -> None:
    """Hand the heap's free pages back to the system (`malloc_trim(0)`): between phases
    that free much more than they keep."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


def system_arrow_pool_for_process() -> None:
    """Arrow's default pool is glibc's for this process and its children (img2dataset's),
    unless the user set ARROW_DEFAULT_MEMORY_POOL; call it before pyarrow is first used.
    `system_arrow_pool` covers only its block: a 10^6-row `download` read its source on
    mimalloc before its block began, and those pages stayed resident to the end (~60 MB more
    than at 10^5 while placing the records; RESULTS.md, "Arrow's pool")."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")


@contextmanager
def system_arrow_pool() -> Iterator[None]:
    """Arrow's allocations inside the block come from the C library's malloc, not Arrow's
    default pool (mimalloc), which keeps pages it freed resident for the rest of a long run:
    `shard` at 10^5 images peaked at 278 MB with mimalloc, 236 MB with this (measured, same
    bytes out). Buffers made inside are freed through the pool that made them, so restoring
    the previous default afterwards is safe."""
    import pyarrow as pa

    previous = pa.default_memory_pool()
    pa.set_memory_pool(pa.system_memory_pool())
    try:
        yield
    finally:
        pa.set_memory_pool(previous)


@contextmanager
def lean_allocators() -> Iterator[None]:
    """`fix_mmap_threshold` (for the rest of the process) and `system_arrow_pool` (for the
    block): what `shard`, `download` and `build-ids` run under. Measured at 10^5 / 10^6 rows,
    build-ids numeric: 208 / 254 -> 161 / 193 MB peak RSS (RESULTS.md); outputs unchanged."""
    fix_mmap_threshold()
    with system_arrow_pool():
        yield
