"""One column chunk of a Parquet row group written in pieces, byte-identical to pyarrow's.

`parquet_splice` writes a row group a column at a time; this module bounds one column too.
pyarrow (Arrow 26, parquet/column_writer.cc) cuts a column chunk into pages only after a
mini-batch of `write_batch_size` levels (for lists: ending at a record boundary) counted from
the start of the page, when the page holds `data_page_size` bytes or `max_rows_per_page` rows;
once a dictionary outgrows `dictionary_pagesize_limit` it writes the dictionary and its pages
and goes on in PLAIN. So at the start of a PLAIN page the writer is exactly a fresh writer with
the dictionary off: page state, batch counter and encoder are all new, and only chunk totals
carry over. A column is therefore written as PIECES, each a one-column scratch write of a row
range: the first with the file's own properties, the rest with the dictionary off. A piece's
last page is cut by the piece's end, not by pyarrow's rules: it is dropped, and the next piece
starts at its first row. The pages kept are those of the whole write; the chunk's
ColumnMetaData is composed from them (sizes, counts, offsets from their headers; statistics
and size statistics from the rows, as pyarrow computes them). A column that never leaves its
dictionary in the first piece is written whole. Strings and binaries, flat or in one list
level, only; anything else is written whole by the caller.

Thrift ids (apache/parquet-format parquet.thrift): PageHeader 1 type, 2 uncompressed size,
3 compressed size, 5 data_page_header (1 num_values, 2 encoding, 5 statistics), 7
dictionary_page_header; ColumnMetaData 2 encodings, 5 num_values, 6 / 7 uncompressed /
compressed sizes, 9 / 11 data / dictionary page offsets, 12 statistics (3 null_count, 5 / 6
max / min value, 7 / 8 exact), 13 encoding_stats (1 page type, 2 encoding, 3 count), 16
size_statistics (1 unencoded byte-array bytes, 2 / 3 repetition / definition histograms).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
import pyarrow as pa

from vlmdata.core.thrift_compact import (
    BINARY,
    I32,
    I64,
    LIST,
    STRUCT,
    TRUE,
    Struct,
    ThriftError,
    ThriftList,
    decode_struct_at,
)

DATA_PAGE, DICTIONARY_PAGE = 0, 2  # PageType
PLAIN = 0  # Encoding
MAX_STATISTICS_SIZE = 4096  # Arrow's default max_statistics_size (pyarrow cannot set it)
DICTIONARY_PAGESIZE_LIMIT = 1 << 20  # Arrow's default dictionary_pagesize_limit
WRITE_BATCH_SIZE = 1024  # Arrow's default write_batch_size
# writer options under which the page rules above hold (page index, V2 pages, byte stream
# split, content-defined chunking... change them): any other option means a whole write
PIECE_OPTIONS = frozenset({
    "compression", "compression_level", "use_dictionary", "write_statistics",
    "data_page_size", "dictionary_pagesize_limit", "write_batch_size", "max_rows_per_page",
})  # fmt: skip


@dataclass
class ColumnSlices:
    """A column handed over as row ranges: `read(start, stop)` gives rows [start, stop) as
    one contiguous array, or as a ChunkedArray whose chunk edges are kept (pyarrow restarts
    its mini-batches at each: `parquet_source`). Ranges are asked in order of `start` (they
    may overlap the one before), so a reader may walk its chunks once."""

    type: pa.DataType
    length: int
    nbytes: int  # of the whole column in Arrow, to decide whether it is worth pieces
    read: Callable[[int, int], pa.Array | pa.ChunkedArray]


@dataclass
class Page:
    at: int  # where its header starts in the chunk
    end: int  # where its payload ends
    raw: int  # header + uncompressed payload bytes
    size: int  # uncompressed payload bytes
    kind: int
    encoding: int
    levels: int  # num_values: levels, nulls included (0 for a dictionary page)


def read_pages(f: BinaryIO, begin: int, length: int) -> list[Page]:
    """The pages of the column chunk at bytes [begin, begin + length) of file `f`, from
    their headers (each read alone: the chunk is never held)."""
    pages, at = [], 0
    while at < length:
        header, size = _header(f, begin + at, length - at)
        kind, payload = header.get(1), header.get(3)
        end = at + size + payload
        if end > length:
            raise ValueError(f"page at byte {at} runs past its column chunk")
        data = header.get(5) or header.get(7)
        if kind not in (DATA_PAGE, DICTIONARY_PAGE) or data is None:
            raise ValueError(f"page at byte {at}: type {kind} is not written in pieces")
        levels = data.get(1) if kind == DATA_PAGE else 0
        raw = header.get(2)
        pages.append(Page(at, end, size + raw, raw, kind, data.get(2), levels))
        at = end
    return pages


def _header(f: BinaryIO, at: int, most: int) -> tuple[Struct, int]:
    """The PageHeader at byte `at` of `f` and its length (read 16 KB at a time: a header
    with statistics holds up to two 4,096-byte values)."""
    want = min(16 << 10, most)
    while True:
        f.seek(at)
        head = f.read(want)
        try:
            return decode_struct_at(head, 0)
        except ThriftError:
            if want >= most:
                raise
            want = min(4 * want, most)


def dictionary_state(pages: list[Page], limit: int) -> str:
    """Where the first piece left the writer: "plain" (it wrote PLAIN pages), "full" (its
    dictionary reached `limit` after the last batch: a longer piece will show PLAIN pages)
    or "dictionary" (still in it: the whole write may never leave it)."""
    if any(p.kind == DATA_PAGE and p.encoding == PLAIN for p in pages):
        return "plain"
    if any(p.kind == DICTIONARY_PAGE and p.size >= limit for p in pages):
        return "full"
    return "dictionary"


def kept_pages(pages: list[Page], last: bool, up_to: int) -> int:
    """How many leading pages of a piece are the whole write's and may be restarted after:
    all of the last piece; else those that end by level `up_to` (`trusted_levels`), if some
    data page is among them and the next page is PLAIN (the writer was past its
    dictionary there); else 0."""
    if last:
        return len(pages)
    keep, end = 0, 0
    for page in pages:
        end += page.levels
        if end > up_to:
            break
        keep += 1
    if not any(p.kind == DATA_PAGE for p in pages[:keep]) or keep == len(pages):
        return 0
    nxt = pages[keep]
    return keep if nxt.kind == DATA_PAGE and nxt.encoding == PLAIN else 0


def trusted_levels(field: pa.Field, levels: np.ndarray, batch: int) -> int:
    """Up to which level a piece's page cuts are the whole write's (`levels`: per row). The
    piece's end cuts its last mini-batch short: a flat column's last page ends there, so
    every cut before the end is trusted; a list column's last batch is written as
    [start, last row) and [last row, end), either of which may end a page, and it started
    less than `batch` levels before its last row (pyarrow's DoInBatchesRepeated), so only
    cuts at least `batch` levels before that row are."""
    total = int(levels.sum())
    if not _is_list(field.type):
        return total - 1
    return total - int(levels[-1]) - batch


def levels_per_row(array: pa.Array) -> np.ndarray:
    """Levels each row writes: 1 for a flat value; max(1, length) for a list (a null or
    empty list writes one level). A flat column's ones are a read-only broadcast view, not an
    array: its int64 per row (and `_rows_in`'s cumsum of it) cost more than a piece of short
    strings holds (build-ids' identifiers: 15 bytes a row, measured)."""
    if not _is_list(array.type):
        return np.broadcast_to(np.int64(1), (len(array),))
    return np.maximum(_list_lengths(array), 1)


def _list_lengths(array: pa.Array) -> np.ndarray:
    """Each list's length, 0 for a null list (pyarrow.compute is imported only here: ~9 MB
    of RSS that a process writing no piece does not need)."""
    import pyarrow.compute as pc

    lengths = pc.list_value_length(array).fill_null(0)
    return lengths.to_numpy(zero_copy_only=False).astype(np.int64)


def supported(field: pa.Field) -> bool:
    """Strings / binaries, flat or as the items of one list level."""
    t = field.type
    if _is_list(t):
        t = t.value_type
    return _is_binary(t)


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def _is_binary(t: pa.DataType) -> bool:
    return any(f(t) for f in (pa.types.is_string, pa.types.is_binary,
                              pa.types.is_large_string, pa.types.is_large_binary))  # fmt: skip


@dataclass
class Totals:
    """What pyarrow sums over a chunk's values, for the rows kept so far."""

    rows: int = 0
    levels: int = 0
    nulls: int = 0  # levels without a value
    value_bytes: int = 0  # of the non-null values
    lo: bytes | None = None  # min / max value, unsigned byte order
    hi: bytes | None = None
    definition: np.ndarray | None = None  # level histograms
    repetition: np.ndarray | None = None

    def add(self, field: pa.Field, array: pa.Array | pa.ChunkedArray) -> None:
        """Count the rows of `array` (values of `field`; chunked or not: no copy)."""
        import pyarrow.compute as pc

        values = pc.list_flatten(array) if _is_list(array.type) else array
        levels = int(levels_per_row(array).sum())
        present = len(values) - values.null_count
        self.rows, self.levels = self.rows + len(array), self.levels + levels
        self.nulls += levels - present
        self.value_bytes += int(pc.sum(pc.binary_length(values)).as_py() or 0)
        if present:
            bounds = pc.min_max(values)
            lo, hi = (bytes(bounds[k].as_buffer()) for k in ("min", "max"))
            self.lo = lo if self.lo is None else min(self.lo, lo)
            self.hi = hi if self.hi is None else max(self.hi, hi)
        definition, repetition = _histograms(field, array, values, levels, present)
        self.definition = _plus(self.definition, definition)
        self.repetition = _plus(self.repetition, repetition)


def _plus(a: np.ndarray | None, b: np.ndarray) -> np.ndarray:
    return b if a is None else a + b


def _histograms(
    field: pa.Field, array: pa.Array, values: pa.Array, levels: int, present: int
) -> tuple[np.ndarray, np.ndarray]:
    """Definition and repetition level histograms (empty where the max level is 0)."""
    if not _is_list(field.type):
        if not field.nullable:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.array([len(array) - present, present], np.int64), np.zeros(0, np.int64)
    item = field.type.value_field
    lengths = _list_lengths(array)
    null_lists = array.null_count
    empty = int((lengths == 0).sum()) - null_lists
    hist = ([null_lists] if field.nullable else []) + [empty]
    hist += ([values.null_count] if item.nullable else []) + [present]
    return np.array(hist, np.int64), np.array([len(array), levels - len(array)], np.int64)


def compose_meta(first: Struct, pages: list[Page], totals: Totals) -> None:
    """Set the chunk totals of ColumnMetaData `first` (the first piece's, offsets already
    moved) for the kept `pages` of every piece and the kept rows' `totals`."""
    first.set(5, I64, sum(p.levels for p in pages))
    first.set(6, I64, sum(p.raw for p in pages))
    first.set(7, I64, sum(p.end - p.at for p in pages))
    if first.get(13) is not None:
        first.set(13, LIST, _encoding_stats(first.get(13), pages))
    if first.get(12) is not None:
        first.set(12, STRUCT, _statistics(totals))
    sizes = first.get(16)
    if sizes is not None:
        sizes.set(1, I64, totals.value_bytes)
        for fid, hist in ((2, totals.repetition), (3, totals.definition)):
            if sizes.get(fid) is not None and len(sizes.get(fid).values):
                sizes.set(fid, LIST, ThriftList(I64, [int(v) for v in hist]))


def _encoding_stats(template: ThriftList, pages: list[Page]) -> ThriftList:
    """The first piece's PageEncodingStats (pyarrow's order), counted over the kept pages."""
    counts: dict[tuple[int, int], int] = {}
    for p in pages:
        key = (p.kind, p.encoding)
        counts[key] = counts.get(key, 0) + 1
    out = []
    for stat in template.values:
        key = (stat.get(1), stat.get(2))
        if counts.get(key):
            out.append(Struct([[1, I32, key[0]], [2, I32, key[1]], [3, I32, counts.pop(key)]]))
    if counts:
        raise ValueError(f"pages of encodings {sorted(counts)} not in the first piece")
    return ThriftList(STRUCT, out)


def _statistics(totals: Totals) -> Struct:
    """Chunk Statistics as Arrow writes them for byte arrays: null_count, then min / max
    unless longer than MAX_STATISTICS_SIZE (each dropped on its own), marked exact."""
    hi = totals.hi if totals.hi is not None and len(totals.hi) <= MAX_STATISTICS_SIZE else None
    lo = totals.lo if totals.lo is not None and len(totals.lo) <= MAX_STATISTICS_SIZE else None
    fields: list[list] = [[3, I64, totals.nulls]]
    if hi is not None:
        fields.append([5, BINARY, hi])
    if lo is not None:
        fields.append([6, BINARY, lo])
    if hi is not None:
        fields.append([7, TRUE, True])
    if lo is not None:
        fields.append([8, TRUE, True])
    return Struct(fields)
