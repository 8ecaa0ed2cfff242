"""A Parquet file written one column at a time, byte-identical to pyarrow's whole-table write.

pyarrow writes a row group from arrays of every column at once, so the whole group is in
memory. A column chunk's bytes depend only on that column's values and the writer properties:
here each column of a group is written alone (same properties) to a scratch file, its chunk
bytes are copied into the output, and the footer (FileMetaData, Thrift compact) is composed at
close from pyarrow's own pieces: the schema, key-value metadata (ARROW:schema), created_by and
column orders of a zero-row write of the full schema, and each group's ColumnChunks from the
one-column footers with their page offsets moved. Only one column of a group is held at once
(a small group may go to one scratch write whole: `together`); a big string column handed
over as `ColumnSlices` is itself written in pieces (`parquet_pages`). Page indexes and bloom filters
(off by default) are not supported. Field ids below are parquet.thrift's (apache/parquet-format:
FileMetaData 3 num_rows, 4 row_groups; RowGroup 1 columns, 2 total_byte_size, 3 num_rows,
5 file_offset, 6 total_compressed_size, 7 ordinal; ColumnChunk 2 file_offset, 3 meta_data,
4 / 6 offset / column index offsets; ColumnMetaData 6 / 7 uncompressed / compressed sizes,
9 data, 10 index, 11 dictionary page offsets, 14 bloom filter offset).
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.parquet_pages import (
    DICTIONARY_PAGESIZE_LIMIT,
    PIECE_OPTIONS,
    WRITE_BATCH_SIZE,
    ColumnSlices,
    Page,
    Totals,
    compose_meta,
    dictionary_state,
    kept_pages,
    levels_per_row,
    read_pages,
    supported,
    trusted_levels,
)
from vlmdata.core.parquet_source import ParquetSource
from vlmdata.core.thrift_compact import (
    I16,
    I64,
    LIST,
    STRUCT,
    Struct,
    ThriftList,
    decode_struct,
    encode_struct,
)

MAGIC = b"PAR1"
DEFAULT_GROUP_ROWS = 1024 * 1024  # pyarrow's row group when write_table is given none
_UNSUPPORTED = {4: "offset index", 6: "column index"}  # ColumnChunk fields (page index)
_PAGE_OFFSETS = (9, 10, 11)  # ColumnMetaData: data, index and dictionary page offsets
# a column handed over as ColumnSlices goes in pieces of about this many Arrow bytes
PIECE_BYTES = 8 << 20


def read_footer(f: BinaryIO) -> tuple[Struct, int]:
    """(FileMetaData, where the footer starts) of the Parquet file open in `f`."""
    f.seek(-8, os.SEEK_END)
    end = f.tell()
    length, magic = struct.unpack("<I4s", f.read(8))
    if magic != MAGIC:
        raise ValueError("not a Parquet file (no PAR1 at the end)")
    f.seek(end - length)
    return decode_struct(f.read(length)), end - length


class SplicedParquetWriter:
    """`pq.ParquetWriter(path, schema, **options)`'s bytes, holding one column at a time.

    `write_group(rows, columns)` writes one row group from `columns` (arrays, chunked arrays
    or `ColumnSlices` in schema order, consumed one by one: pass a generator to build each
    only when needed; a string column of more than `piece_bytes` given as ColumnSlices is
    read and written a piece at a time);
    `write_table` cuts row groups as `ParquetWriter.write_table` does. `close()` writes the
    footer; `abort()` closes without one (the caller removes the file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        schema: pa.Schema,
        piece_bytes: int = PIECE_BYTES,
        **options: Any,
    ) -> None:
        self.path, self.schema, self._options = Path(path), schema, options
        self.piece_bytes = piece_bytes
        self._scratch = self.path.with_name(self.path.name + ".column")
        self._meta = self._template()
        self._groups: list[Struct] = []
        self._rows = 0
        self._out: BinaryIO | None = open(self.path, "wb")  # noqa: SIM115 (closed in close/abort)
        self._out.write(MAGIC)

    def _template(self) -> Struct:
        """The footer pyarrow writes for this schema and these options, with no row group."""
        sink = io.BytesIO()
        pq.ParquetWriter(sink, self.schema, **self._options).close()
        sink.seek(0)
        return read_footer(sink)[0]

    def write_table(self, table: pa.Table, row_group_size: int | None = None) -> None:
        """Like `ParquetWriter.write_table`: groups of `row_group_size` rows (default: the
        table, at most 1,048,576 rows); an empty table gives one empty group."""
        if not table.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"{self.path}: table schema {table.schema} is not the file's "
                             f"{self.schema}")  # fmt: skip
        size = min(row_group_size or DEFAULT_GROUP_ROWS, 64 * DEFAULT_GROUP_ROWS)
        if size <= 0:
            raise ValueError(f"row_group_size must be positive, not {row_group_size}")
        if table.num_rows == 0:
            self.write_group(0, table.columns, together=True)
        for start in range(0, table.num_rows, size):
            part = table.slice(start, size)
            self.write_group(part.num_rows, part.columns, together=True)

    def write_file(self, source: ParquetSource) -> None:
        """What `write_table(pq.read_table(path))` writes for the file `source` reads (its
        columns of this schema), read and written a piece of a column at a time."""
        if not source.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"{self.path}: {source.path} is read as {source.schema}, not as "
                             f"the file's {self.schema}")  # fmt: skip
        if source.rows == 0:
            self.write_group(0, [pa.array([], f.type) for f in self.schema], together=True)
        for start in range(0, source.rows, DEFAULT_GROUP_ROWS):
            stop = min(source.rows, start + DEFAULT_GROUP_ROWS)
            self.write_group(stop - start, source.columns(start, stop))

    def write_group(
        self, rows: int, columns: Iterable[pa.Array | pa.ChunkedArray], together: bool = False
    ) -> None:
        """One row group of `rows` rows, written a column at a time; `together`: all columns
        in one scratch write (for a group already in memory: one writer, not one a column)."""
        if self._out is None:
            raise ValueError(f"{self.path}: writer is closed")
        fields = list(self.schema)
        chunks: list[Struct] = []
        group: Struct | None = None
        written = 0
        for names, arrays in _parts(fields, columns, together, self.path):
            if len(arrays) == 1 and isinstance(arrays[0], ColumnSlices):
                one, moved = self._write_slices(names[0], arrays.pop(), rows)
            else:
                one, moved = self._write_part(names, arrays, rows)
            del arrays  # the caller's generator builds the next column only now
            written += len(names)
            chunks.extend(moved)
            group = group or one
        if written != len(fields) or group is None:
            raise ValueError(f"{self.path}: a row group needs all {len(fields)} columns")
        self._groups.append(self._group(group, chunks, rows))
        self._rows += rows

    def _write_part(
        self, fields: list[pa.Field], columns: list[pa.Array | pa.ChunkedArray], rows: int
    ) -> tuple[Struct, list[Struct]]:
        """Write these columns of the group alone, copy their chunk bytes to the output: (the
        scratch file's RowGroup struct, its ColumnChunks moved to where the bytes now are)."""
        if len(columns) != len(fields):
            raise ValueError(f"{self.path}: a row group needs all {len(self.schema)} columns")
        for field, column in zip(fields, columns, strict=True):
            if column.type != field.type:
                raise ValueError(f"column {field.name} is {column.type}, not {field.type}")
            if len(column) != rows:
                raise ValueError(f"column {field.name} has {len(column)} rows, not {rows}")
        table = pa.Table.from_arrays(columns, schema=pa.schema(fields))
        try:
            with pq.ParquetWriter(self._scratch, table.schema, **self._options) as writer:
                writer.write_table(table, row_group_size=rows or None)
            del table
            with open(self._scratch, "rb") as f:
                meta, footer_at = read_footer(f)
                (group,) = meta.get(4).values
                at = self._out.tell()
                f.seek(len(MAGIC))
                _copy(f, self._out, footer_at - len(MAGIC))
        finally:
            self._scratch.unlink(missing_ok=True)
        shift = at - len(MAGIC)
        chunks = group.get(1).values
        for chunk in chunks:
            _move(chunk, shift)
        if group.get(5):  # the group's file_offset, as pyarrow set it for these columns
            group.set(5, I64, group.get(5) + shift)
        return group, chunks

    def _write_slices(
        self, field: pa.Field, column: ColumnSlices, rows: int
    ) -> tuple[Struct, list[Struct]]:
        """A column handed over as row ranges: in pieces if it is big and of a kind the page
        rules are known for, else read whole and written as `_write_part` does."""
        if column.length != rows:
            raise ValueError(f"column {field.name} has {column.length} rows, not {rows}")
        if column.type != field.type:
            raise ValueError(f"column {field.name} is {column.type}, not {field.type}")
        if column.nbytes > self.piece_bytes and supported(field) and self._pieceable():
            done = self._write_pieces(field, column, rows)
            if done is not None:
                return done
        return self._write_part([field], [column.read(0, rows)], rows)

    def _pieceable(self) -> bool:
        return set(self._options) <= PIECE_OPTIONS

    def _batch_size(self) -> int:
        return self._options.get("write_batch_size") or WRITE_BATCH_SIZE

    def _dictionary_limit(self) -> int:
        return self._options.get("dictionary_pagesize_limit") or DICTIONARY_PAGESIZE_LIMIT

    def _write_pieces(
        self, field: pa.Field, column: ColumnSlices, rows: int
    ) -> tuple[Struct, list[Struct]] | None:
        """The column written a piece at a time (parquet_pages): each piece's pages up to its
        last one copied to the output, the next piece starting at that page's first row with
        the dictionary off. None (nothing written) if the first piece keeps its dictionary; a
        piece that shows no page to restart from is tried again twice as long."""
        step = max(1, rows * self.piece_bytes // column.nbytes)
        start, at, first, kept, totals = 0, self._out.tell(), None, [], Totals()
        while start < rows:
            stop = min(rows, start + step)
            array = column.read(start, stop)
            if len(array) != stop - start:
                raise ValueError(f"column {field.name}: rows [{start}, {stop}) read as "
                                 f"{len(array)} rows")  # fmt: skip
            piece = self._piece(field, array, start, stop == rows, totals)
            del array
            if piece is None:
                return None  # still in its dictionary: the pieces would not be its pages
            pages, chunk, group, took = piece
            if not pages:  # no page cut to restart from (a page or the first batch is
                step *= 2  # longer than the piece): a longer piece
                continue
            kept.extend(pages)
            first = first or (chunk, group)
            start += took
        if totals.rows != rows or totals.levels != sum(p.levels for p in kept):
            raise RuntimeError(f"column {field.name}: pieces kept {totals.rows} of {rows} rows, "
                               f"{totals.levels} levels in pages of "
                               f"{sum(p.levels for p in kept)}")  # fmt: skip
        chunk, group = first
        _move(chunk, at - len(MAGIC))
        if group.get(5):
            group.set(5, I64, group.get(5) + at - len(MAGIC))
        compose_meta(chunk.get(3), kept, totals)
        return group, [chunk]

    def _piece(
        self,
        field: pa.Field,
        array: pa.Array | pa.ChunkedArray,
        start: int,
        last: bool,
        totals: Totals,
    ) -> tuple[list[Page], Struct, Struct, int] | None:
        """Write rows [start, start + len(array)) alone and copy the pages to keep to the
        output: (those pages, the scratch ColumnChunk and RowGroup, the rows kept), their
        rows added to `totals`; no pages if none can be kept; None if the first piece never
        left its dictionary. The chunk is read from the scratch file, never held whole."""
        if array.type != field.type:
            raise ValueError(f"column {field.name} read as {array.type}, not {field.type}")
        self._scratch_write(field, array, plain=start > 0)
        try:
            with open(self._scratch, "rb") as f:
                (group,) = read_footer(f)[0].get(4).values
                (chunk,) = group.get(1).values
                begin = chunk.get(3).get(11) or chunk.get(3).get(9)
                pages = read_pages(f, begin, chunk.get(3).get(7))
                state = "plain" if start else dictionary_state(pages, self._dictionary_limit())
                if state == "dictionary" and not last:
                    return None
                levels = levels_per_row(array)
                up_to = trusted_levels(field, levels, self._batch_size())
                keep = kept_pages(pages, last, up_to) if state == "plain" or last else 0
                if not keep:
                    return [], chunk, group, 0
                took = _rows_in(levels, pages[:keep], field.name, start)
                f.seek(begin)
                _copy(f, self._out, pages[keep - 1].end)
        finally:
            self._scratch.unlink(missing_ok=True)
        totals.add(field, array.slice(0, took))
        return pages[:keep], chunk, group, took

    def _scratch_write(
        self, field: pa.Field, array: pa.Array | pa.ChunkedArray, plain: bool
    ) -> None:
        """`array` alone as one row group in the scratch file (the dictionary off if
        `plain`)."""
        options = dict(self._options, use_dictionary=False) if plain else self._options
        table = pa.Table.from_arrays([array], schema=pa.schema([field]))
        with pq.ParquetWriter(self._scratch, table.schema, **options) as writer:
            writer.write_table(table, row_group_size=len(array))

    def _group(self, first: Struct, chunks: list[Struct], rows: int) -> Struct:
        """The RowGroup pyarrow writes: the first column's (its file_offset already moved),
        with every column's chunks, summed sizes and the group's ordinal."""
        singles = [c.get(3) for c in chunks]
        first.set(1, LIST, ThriftList(STRUCT, chunks))
        first.set(2, I64, sum(m.get(6) for m in singles))  # total_byte_size (uncompressed)
        first.set(3, I64, rows)
        if first.get(6) is not None:
            first.set(6, I64, sum(m.get(7) for m in singles))  # total_compressed_size
        if first.get(7) is not None:
            first.set(7, I16, len(self._groups))  # ordinal
        return first

    def close(self) -> None:
        """Write the footer and close the file."""
        if self._out is None:
            return
        meta = self._meta
        meta.set(3, I64, self._rows)
        meta.set(4, LIST, ThriftList(STRUCT, self._groups))
        footer = encode_struct(meta)
        out, self._out = self._out, None
        with out:
            out.write(footer)
            out.write(struct.pack("<I", len(footer)) + MAGIC)

    def abort(self) -> None:
        """Close without a footer (the file is not valid Parquet; the caller removes it)."""
        out, self._out = self._out, None
        self._scratch.unlink(missing_ok=True)
        if out is not None:
            out.close()

    def __enter__(self) -> SplicedParquetWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()


def _parts(fields: list[pa.Field], columns: Iterable, together: bool, path: Path) -> Iterator:
    """(fields, arrays) written by one scratch writer each: all, or one column at a time
    (taken from `columns` only when the previous one is written)."""
    if together:
        yield fields, [_whole(c) for c in columns]
        return
    i = 0  # not enumerate: its reused result tuple would keep the last column alive
    for column in columns:
        if i >= len(fields):
            raise ValueError(f"{path}: a row group needs all {len(fields)} columns, no more")
        yield [fields[i]], [column]
        del column
        i += 1


def _whole(column: pa.Array | pa.ChunkedArray | ColumnSlices) -> pa.Array | pa.ChunkedArray:
    return column.read(0, column.length) if isinstance(column, ColumnSlices) else column


def _rows_in(per_row: np.ndarray, pages: list[Page], name: str, start: int) -> int:
    """How many leading rows (`per_row`: their levels) the data `pages` hold (their levels
    must end a row)."""
    levels = sum(p.levels for p in pages)
    if per_row.strides == (0,):  # `levels_per_row`'s ones of a flat column: a level a row
        if levels <= 0 or levels > len(per_row):
            raise ValueError(f"column {name}: pages hold {levels} of {len(per_row)} rows")
        return levels
    ends = np.cumsum(per_row)
    took = int(np.searchsorted(ends, levels)) + 1
    if levels <= 0 or took > len(ends) or ends[took - 1] != levels:
        raise ValueError(f"column {name}: a page ends inside row {start + took - 1}")
    return took


def _move(chunk: Struct, shift: int) -> None:
    """Move a ColumnChunk's page offsets by `shift` bytes. An offset of 0 means none (byte 0
    is the magic): pyarrow writes data_page_offset 0 for a chunk of a zero-row group."""
    for fid, what in _UNSUPPORTED.items():
        if chunk.get(fid) is not None:
            raise ValueError(f"{what} is not supported by the spliced writer")
    meta = chunk.get(3)
    if meta.get(14) is not None:
        raise ValueError("bloom filters are not supported by the spliced writer")
    if chunk.get(2):  # file_offset (pyarrow 26 writes 0)
        chunk.set(2, I64, chunk.get(2) + shift)
    for fid in _PAGE_OFFSETS:
        if meta.get(fid):
            meta.set(fid, I64, meta.get(fid) + shift)


def _copy(src: BinaryIO, dst: BinaryIO, n: int) -> None:
    """`n` bytes from src to dst, 1 MB at a time."""
    while n > 0:
        block = src.read(min(n, 1 << 20))
        if not block:
            raise OSError("scratch column file ended early")
        dst.write(block)
        n -= len(block)
