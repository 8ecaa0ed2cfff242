"""One Parquet row group's column, buffered on disk and rebuilt as ONE contiguous Arrow array.

pyarrow writes a row group's column chunk from the array it is given, and cuts pages where its
chunks end: the same rows in several chunks give other file bytes. So each column of a row
group must reach the writer as one contiguous array, and `pa.concat_arrays` over chunks held in
memory needs it twice (chunks + result). Here chunks wait in an Arrow IPC file beside the
output once they pass SPILL_BYTES, and `contiguous` copies them, a chunk at a time, into
buffers sized in a first pass: the column is held once, when `parquet_splice` writes it.
`slices()` hands the column over as row ranges instead (`read`, from the chunks that hold
them), so that a big column is held a piece at a time (`parquet_pages`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa

from vlmdata.core.parquet_pages import ColumnSlices

# a column's chunks beyond this wait on disk, not in memory. 1 MB: filter-urls / manifest llava
# at 10^6 rows peaked 325 / 387 MB at 4 MB, 359 / 396 MB at 16 MB and 310 / 390 MB at 1 MB
# (RESULTS.md, "one column at a time"); inside `download`, after the source reader, its
# filter-urls peaks 284 MB at 1 MB against 323-334 at 4 MB (RESULTS.md, "download with
# 60-byte captions")
SPILL_BYTES = 1 << 20

Chunks = Callable[[], Iterator[pa.Array]]  # a fresh pass over the chunks, in order


class SpilledColumn:
    """Chunks of one column in order: in memory up to `spill_bytes` (None: SPILL_BYTES), then
    in an IPC stream file whose batch offsets are kept (random access: an IPC *file* reader
    left ~14 MB more resident in `manifest llava` at 10^5 rows). `chunks()` reads them back
    (a fresh pass each call, once appending is over); `read(start, stop)` rebuilds any row
    range from the chunks it needs, read one at a time."""

    def __init__(self, field: pa.Field, path: Path, spill_bytes: int | None = None) -> None:
        self.field, self.path, self.spill_bytes = field, path, spill_bytes
        self._memory: list[pa.Array] = []
        self._bytes = 0
        self.nbytes = 0  # of every chunk since the last take, in memory or spilled
        self._lengths: list[int] = []  # rows of every chunk, on disk then in memory
        self._offsets: list[int] = []  # where each chunk on disk starts in the file
        self._sink: pa.OSFile | None = None
        self._writer: pa.ipc.RecordBatchStreamWriter | None = None
        self._reader: pa.OSFile | None = None

    @property
    def rows(self) -> int:
        return sum(self._lengths)

    def append(self, array: pa.Array) -> None:
        self._memory.append(array)
        self._lengths.append(len(array))
        self._bytes += array.nbytes
        self.nbytes += array.nbytes
        if self._bytes >= (SPILL_BYTES if self.spill_bytes is None else self.spill_bytes):
            if self._writer is None:
                self._sink = pa.OSFile(str(self.path), "wb")
                self._writer = pa.ipc.new_stream(self._sink, pa.schema([self.field]))
            for chunk in self._memory:
                self._offsets.append(self._sink.tell())
                self._writer.write_batch(pa.record_batch([chunk], names=[self.field.name]))
            self._memory, self._bytes = [], 0

    def _chunk(self, i: int) -> pa.Array:
        if i >= len(self._offsets):
            return self._memory[i - len(self._offsets)]
        if self._reader is None:
            self._close_writer()
            self._reader = pa.OSFile(str(self.path))
        self._reader.seek(self._offsets[i])
        message = pa.ipc.read_message(self._reader)
        if message.type == "schema":  # the stream's schema goes out with its first batch
            message = pa.ipc.read_message(self._reader)
        return pa.ipc.read_record_batch(message, pa.schema([self.field])).column(0)

    def _close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._sink.close()
        self._writer = self._sink = None

    def chunks(self) -> Iterator[pa.Array]:
        """The chunks in order: those on disk, then those in memory."""
        for i in range(len(self._lengths)):
            yield self._chunk(i)

    def between(self, start: int, stop: int) -> Chunks:
        """Rows [start, stop) as slices of the chunks that hold them, read in a fresh pass
        each call (one chunk at a time from disk)."""
        ends = np.cumsum(self._lengths)
        first = int(np.searchsorted(ends, start, side="right"))

        def sliced() -> Iterator[pa.Array]:
            for i in range(first, len(ends)):
                at = int(ends[i]) - self._lengths[i]
                if at >= stop:
                    return
                lo, hi = max(start - at, 0), min(stop - at, self._lengths[i])
                if lo < hi:
                    yield self._chunk(i).slice(lo, hi - lo)

        return sliced

    def read(self, start: int, stop: int) -> pa.Array:
        """Rows [start, stop) as one contiguous array."""
        if not 0 <= start <= stop <= self.rows:
            raise ValueError(f"rows [{start}, {stop}) of a column of {self.rows}")
        return contiguous(self.field.type, self.between(start, stop))

    def take(self) -> pa.Array:
        """Every chunk as one contiguous array; the column is empty afterwards."""
        try:
            return contiguous(self.field.type, self.chunks)
        finally:
            self.discard()

    def slices(self) -> ColumnSlices:
        """The column as row ranges (`read`), to write it a piece at a time; `discard()`
        once it is written."""
        return ColumnSlices(self.field.type, self.rows, self.nbytes, self.read)

    def discard(self) -> None:
        self._close_writer()
        if self._reader is not None:
            self._reader.close()
        self._reader, self._memory, self._bytes, self.nbytes = None, [], 0, 0
        self._lengths, self._offsets = [], []
        Path(self.path).unlink(missing_ok=True)


def contiguous(type_: pa.DataType, chunks: Chunks) -> pa.Array:
    """The chunks (each of `type_`) as one array whose buffers are filled a chunk at a time.
    Strings, binaries, fixed-width numbers and lists of them; other types: `concat_arrays`."""
    if pa.types.is_list(type_) or pa.types.is_large_list(type_):
        return _lists(type_, chunks)
    if _is_binary_like(type_):
        return _binaries(type_, chunks)
    if _is_fixed_width(type_):
        return _fixed(type_, chunks)
    return pa.concat_arrays(list(chunks()))


def _is_binary_like(t: pa.DataType) -> bool:
    return any(f(t) for f in (pa.types.is_string, pa.types.is_binary,
                              pa.types.is_large_string, pa.types.is_large_binary))  # fmt: skip


def _is_fixed_width(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _alloc(n: int, dtype) -> tuple[np.ndarray, pa.Buffer]:
    """A writable numpy view of a new Arrow-pool buffer (Arrow memory, like the chunks)."""
    buf = pa.allocate_buffer(max(n, 1) * np.dtype(dtype).itemsize)
    return np.frombuffer(buf, dtype=dtype, count=n), buf


def _validity(chunks: Chunks, length: int, nulls: int) -> pa.Buffer | None:
    if not nulls:
        return None
    bits, buf = _alloc((length + 7) // 8, np.uint8)
    bits[:] = 0
    at = 0
    for c in chunks():  # a chunk's bits at any bit position: unpacked, placed, repacked
        valid = c.is_valid().to_numpy(zero_copy_only=False)
        lo, hi = at // 8, (at + len(c) + 7) // 8
        window = np.unpackbits(bits[lo:hi], bitorder="little")
        window[at - 8 * lo : at - 8 * lo + len(c)] = valid
        bits[lo:hi] = np.packbits(window, bitorder="little")
        at += len(c)
    return buf


def _totals(chunks: Chunks) -> tuple[int, int]:
    length = nulls = 0
    for c in chunks():
        length, nulls = length + len(c), nulls + c.null_count
    return length, nulls


def _offsets_of(c: pa.Array, dtype) -> np.ndarray:
    """The chunk's own offsets (length + 1), as they are in its buffer (slices included)."""
    raw = np.frombuffer(c.buffers()[1], dtype=dtype)
    return raw[c.offset : c.offset + len(c) + 1]


def _binaries(type_: pa.DataType, chunks: Chunks) -> pa.Array:
    large = pa.types.is_large_string(type_) or pa.types.is_large_binary(type_)
    dtype = np.int64 if large else np.int32
    length, nulls, size = 0, 0, 0
    for c in chunks():
        off = _offsets_of(c, dtype) if len(c) else np.zeros(1, dtype)
        length, nulls, size = length + len(c), nulls + c.null_count, size + int(off[-1] - off[0])
    offsets, offsets_buf = _alloc(length + 1, dtype)
    data, data_buf = _alloc(size, np.uint8)
    offsets[0], row, at = 0, 0, 0
    for c in chunks():
        if not len(c):
            continue
        off = _offsets_of(c, dtype)
        n, span = len(c), int(off[-1] - off[0])
        offsets[row + 1 : row + n + 1] = off[1:] - off[0] + at
        if span:
            data[at : at + span] = np.frombuffer(c.buffers()[2], np.uint8, span, int(off[0]))
        row, at = row + n, at + span
    buffers = [_validity(chunks, length, nulls), offsets_buf, data_buf]
    return pa.Array.from_buffers(type_, length, buffers, null_count=nulls)


def _fixed(type_: pa.DataType, chunks: Chunks) -> pa.Array:
    length, nulls = _totals(chunks)
    width = type_.bit_width // 8
    values, values_buf = _alloc(length * width, np.uint8)
    at = 0
    for c in chunks():
        n = len(c) * width
        if n:
            values[at : at + n] = np.frombuffer(c.buffers()[1], np.uint8, n, c.offset * width)
        at += n
    buffers = [_validity(chunks, length, nulls), values_buf]
    return pa.Array.from_buffers(type_, length, buffers, null_count=nulls)


def _lists(type_: pa.DataType, chunks: Chunks) -> pa.Array:
    """List offsets from the value lengths (a null list: 0), values from `flatten()` (which
    drops what a null list hides and honours slices), rebuilt recursively."""
    import pyarrow.compute as pc

    dtype = np.int64 if pa.types.is_large_list(type_) else np.int32
    length, nulls = _totals(chunks)
    offsets, offsets_buf = _alloc(length + 1, dtype)
    offsets[0], row = 0, 0
    for c in chunks():
        lengths = pc.list_value_length(c).fill_null(0).to_numpy(zero_copy_only=False)
        np.cumsum(lengths, out=offsets[row + 1 : row + len(c) + 1])
        offsets[row + 1 : row + len(c) + 1] += offsets[row]
        row += len(c)
    child = contiguous(type_.value_type, lambda: (c.flatten() for c in chunks()))
    buffers = [_validity(chunks, length, nulls), offsets_buf]
    return pa.Array.from_buffers(type_, length, buffers, null_count=nulls, children=[child])


def spill_path(base: Path, column: int) -> Path:
    """Where column `column` of the file being written at `base` waits (removed after use)."""
    return base.with_name(f"{base.name}.col{column}.arrows")
