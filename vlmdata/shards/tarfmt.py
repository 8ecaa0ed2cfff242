"""The tar format, written and read by hand.

Writing headers ourselves is faster than `tarfile` and tells us every member's exact offset, which
the index needs. Output is POSIX ustar (pax records only for names over 100 bytes) with fixed
mode 0644, uid/gid 0, empty user/group names and mtime 0, so equal inputs give equal bytes; GNU
tar, Python's tarfile, webdataset and wids all read it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

BLOCK = 512
RECORD = 20 * BLOCK  # GNU tar and tarfile pad archives to whole 10 KiB records
END_OF_ARCHIVE = b"\0" * (2 * BLOCK)


_MODE_IDS = b"0000644\0" + b"0000000\0" + b"0000000\0"  # mode, uid, gid
_MTIME = b"%011o\0" % 0


def _rest(typeflag: bytes) -> bytes:
    """Everything after the checksum field: typeflag, linkname, ustar magic, empty names."""
    rest = typeflag + b"\0" * 100 + b"ustar\x0000" + b"\0" * 64 + b"0000000\0" * 2
    return rest.ljust(BLOCK - 156, b"\0")  # then the empty 155-byte prefix and padding


_REST = {t: _rest(t) for t in (b"0", b"x")}
_CONST_SUM = {t: sum(_MODE_IDS) + sum(_MTIME) + 8 * ord(" ") + sum(r) for t, r in _REST.items()}


def _header(name: bytes, size: int, typeflag: bytes) -> bytes:
    """One 512-byte ustar header; only name and size vary, so the checksum is mostly constant."""
    size_field = b"%011o\0" % size
    chksum = sum(name) + sum(size_field) + _CONST_SUM[typeflag]
    return (
        name.ljust(100, b"\0")
        + _MODE_IDS
        + size_field
        + _MTIME
        + b"%06o\0 " % chksum
        + _REST[typeflag]
    )


def padding(size: int) -> int:
    return -size % BLOCK


def _pax_record(key: str, value: str) -> bytes:
    payload = f" {key}={value}\n".encode()
    n = len(payload)
    while len(str(n).encode()) + len(payload) != n:
        n = len(str(n).encode()) + len(payload)
    return str(n).encode() + payload


def member_header(name: str, size: int) -> bytes:
    """The header block(s) that precede a regular file's data (pax record when name > 100 B)."""
    raw = name.encode("utf-8")
    if len(raw) <= 100:
        return _header(raw, size, b"0")
    pax = _pax_record("path", name)
    short = b"PaxHeaders/" + raw[-80:]
    return (
        _header(short, len(pax), b"x")
        + pax
        + b"\0" * padding(len(pax))
        + _header(raw[:100], size, b"0")
    )


def header_size(name: str) -> int:
    """len(member_header(name, size)) without building it (the size field is fixed-width)."""
    raw = name.encode("utf-8")
    if len(raw) <= 100:
        return BLOCK
    pax = len(_pax_record("path", name))
    return 2 * BLOCK + pax + padding(pax)


def archive_end(size_so_far: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record (like GNU tar)."""
    total = size_so_far + len(END_OF_ARCHIVE)
    return END_OF_ARCHIVE + b"\0" * (-total % RECORD)


@dataclass(frozen=True)
class Member:
    name: str
    header_offset: int  # first header block of this member (pax header included)
    offset: int  # first byte of its data
    size: int


def header_checksum_ok(block: bytes) -> bool:
    try:
        stored = int(block[148:156].split(b"\0", 1)[0].strip() or b"0", 8)
    except ValueError:
        return False
    return stored == sum(block[:148]) + 256 + sum(block[156:])


def parse_header(block: bytes) -> tuple[str, int, bytes]:
    """(name, size, typeflag) of a ustar header block; ValueError when it is not one."""
    if not header_checksum_ok(block):
        raise ValueError("bad tar header checksum")
    name = block[:100].split(b"\0", 1)[0]
    prefix = block[345:500].split(b"\0", 1)[0] if block[257:262] == b"ustar" else b""
    if prefix:
        name = prefix + b"/" + name
    size = int(block[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
    return name.decode("utf-8"), size, block[156:157]


def _pax_path(data: bytes) -> str | None:
    pos = 0
    while pos < len(data):
        length = int(data[pos : data.index(b" ", pos)])
        record = data[pos : pos + length]
        key, _, value = record[record.index(b" ") + 1 : -1].partition(b"=")
        if key == b"path":
            return value.decode("utf-8")
        pos += length
    return None


def iter_members(f: BinaryIO) -> Iterator[tuple[Member, bytes]]:
    """(member, data) for each regular file in a tar stream, reading sequentially."""
    pos = 0
    long_name: str | None = None
    header_start: int | None = None
    while True:
        block = f.read(BLOCK)
        if len(block) < BLOCK or block == b"\0" * BLOCK:
            return
        name, size, typeflag = parse_header(block)
        start = pos if header_start is None else header_start
        pos += BLOCK
        data = f.read(size)
        if len(data) != size:
            raise ValueError(f"tar member {name!r} truncated at byte {pos + len(data)}")
        f.read(padding(size))
        if typeflag in (b"x", b"L"):
            long_name = _pax_path(data) if typeflag == b"x" else data.rstrip(b"\0").decode()
            header_start = start
        elif typeflag in (b"0", b"\0"):
            yield Member(long_name or name, start, pos, size), data
            long_name, header_start = None, None
        else:
            long_name, header_start = None, None
        pos += size + padding(size)
