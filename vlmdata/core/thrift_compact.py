"""Thrift compact protocol, schema-free: any struct decoded and encoded back byte for byte.

Parquet's footer (FileMetaData) is a Thrift compact struct, and pyarrow has no API to write a
modified one; `parquet_splice` needs to move a few offsets and join row groups. A generic codec
needs no copy of parquet.thrift: a struct is its fields in order, each (field id, compact
type, value), and re-encoding them with the protocol's canonical rules (short field headers
for deltas 1..15, short list headers below 15 items, zigzag varints) gives the writer's bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

STOP, TRUE, FALSE, I8, I16, I32, I64, DOUBLE, BINARY, LIST, SET, MAP, STRUCT, UUID = range(14)
_INTS = (I16, I32, I64)


@dataclass
class ThriftList:
    """A list (or set): the compact element type and the values."""

    elem: int
    values: list[Any]
    is_set: bool = False


@dataclass
class ThriftMap:
    key: int
    value: int
    items: list[tuple[Any, Any]]


@dataclass
class Struct:
    """Fields in wire order: [field id, compact type, value] (a bool: TRUE and the bool)."""

    fields: list[list[Any]] = field(default_factory=list)

    def get(self, fid: int, default: Any = None) -> Any:
        return next((f[2] for f in self.fields if f[0] == fid), default)

    def set(self, fid: int, ctype: int, value: Any) -> None:
        """Replace field `fid`, or insert it in field-id order (how generated writers emit)."""
        for f in self.fields:
            if f[0] == fid:
                f[1], f[2] = ctype, value
                return
        at = next((i for i, f in enumerate(self.fields) if f[0] > fid), len(self.fields))
        self.fields.insert(at, [fid, ctype, value])


class ThriftError(ValueError):
    """The bytes are not a well-formed compact-protocol struct."""


class _Reader:
    def __init__(self, data: bytes | memoryview, pos: int = 0) -> None:
        self.data, self.pos = memoryview(data), pos

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ThriftError(f"truncated at byte {self.pos}")
        self.pos += 1
        return self.data[self.pos - 1]

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if b < 0x80:
                return result
            shift += 7
            if shift > 70:
                raise ThriftError(f"varint too long at byte {self.pos}")

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ThriftError(f"truncated at byte {self.pos} (want {n})")
        self.pos += n
        return bytes(self.data[self.pos - n : self.pos])

    def value(self, ctype: int) -> Any:
        if ctype in (TRUE, FALSE):  # a bool element of a list: one byte
            return self.byte() == TRUE
        if ctype == I8:
            return struct.unpack("b", self.take(1))[0]
        if ctype in _INTS:
            return self.zigzag()
        if ctype == DOUBLE:
            return struct.unpack("<d", self.take(8))[0]
        if ctype == BINARY:
            return self.take(self.varint())
        if ctype == UUID:
            return self.take(16)
        if ctype in (LIST, SET):
            head = self.byte()
            size = head >> 4 if head >> 4 != 15 else self.varint()
            elem = head & 0x0F
            return ThriftList(elem, [self.value(elem) for _ in range(size)], ctype == SET)
        if ctype == MAP:
            size = self.varint()
            kv = self.byte() if size else 0
            k, v = kv >> 4, kv & 0x0F
            return ThriftMap(k, v, [(self.value(k), self.value(v)) for _ in range(size)])
        if ctype == STRUCT:
            return self.struct()
        raise ThriftError(f"unknown compact type {ctype} at byte {self.pos}")

    def struct(self) -> Struct:
        out, last = Struct(), 0
        while True:
            head = self.byte()
            ctype = head & 0x0F
            if ctype == STOP:
                return out
            delta = head >> 4
            fid = last + delta if delta else self.zigzag()
            if ctype in (TRUE, FALSE):  # the value is the type: kept as (TRUE, bool)
                out.fields.append([fid, TRUE, ctype == TRUE])
            else:
                out.fields.append([fid, ctype, self.value(ctype)])
            last = fid


def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zigzag(n: int, out: bytearray) -> None:
    _varint((n << 1) ^ (n >> 63), out)


def _value(ctype: int, v: Any, out: bytearray) -> None:
    if ctype in (TRUE, FALSE):
        out.append(TRUE if v else FALSE)
    elif ctype == I8:
        out += struct.pack("b", v)
    elif ctype in _INTS:
        _zigzag(v, out)
    elif ctype == DOUBLE:
        out += struct.pack("<d", v)
    elif ctype == BINARY:
        _varint(len(v), out)
        out += v
    elif ctype == UUID:
        out += v
    elif ctype in (LIST, SET):
        n = len(v.values)
        out.append((n << 4 | v.elem) if n < 15 else (0xF0 | v.elem))
        if n >= 15:
            _varint(n, out)
        for item in v.values:
            _value(v.elem, item, out)
    elif ctype == MAP:
        _varint(len(v.items), out)
        if v.items:
            out.append(v.key << 4 | v.value)
        for k, item in v.items:
            _value(v.key, k, out)
            _value(v.value, item, out)
    elif ctype == STRUCT:
        _struct(v, out)
    else:
        raise ThriftError(f"unknown compact type {ctype}")


def _struct(s: Struct, out: bytearray) -> None:
    last = 0
    for fid, ctype, v in s.fields:
        wire = (TRUE if v else FALSE) if ctype in (TRUE, FALSE) else ctype
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | wire)
        else:
            out.append(wire)
            _zigzag(fid, out)
        if ctype not in (TRUE, FALSE):
            _value(ctype, v, out)
        last = fid
    out.append(STOP)


def decode_struct(data: bytes | memoryview) -> Struct:
    """One struct from `data`; every byte must belong to it."""
    reader = _Reader(data)
    out = reader.struct()
    if reader.pos != len(reader.data):
        raise ThriftError(f"{len(reader.data) - reader.pos} bytes after the struct")
    return out


def decode_struct_at(data: bytes | memoryview, pos: int) -> tuple[Struct, int]:
    """One struct starting at byte `pos` of `data` (more may follow): (struct, where it ends).
    For Parquet page headers, each followed by its page."""
    reader = _Reader(data, pos)
    return reader.struct(), reader.pos


def encode_struct(s: Struct) -> bytes:
    out = bytearray()
    _struct(s, out)
    return bytes(out)
