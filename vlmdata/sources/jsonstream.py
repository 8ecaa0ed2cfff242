"""Streaming reader for one big JSON document (LLaVA lists, Karpathy and COCO objects).

`ijson` is not a dependency, and `json.load` on LLaVA's 665k-record file (~1 GB) needs several
GB of Python objects. This reader decodes one array element at a time with the C-accelerated
`json.JSONDecoder.raw_decode` over a sliding text buffer, so memory is bounded by the largest
element, not the file. The file is decoded with `surrogateescape`: invalid UTF-8 bytes become
lone surrogates inside strings, so a reader can reject that one element as `bad_utf8`
(`fields.check_utf8`) instead of failing the whole file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

from vlmdata.core.errors import DataError

_WS = " \t\n\r"
_SCALAR_END = re.compile(r"[,\]}\s]")
_DECODER = json.JSONDecoder()
MAX_ELEMENT_CHARS = 256 * 1024 * 1024


class JsonStream:
    """A cursor over a JSON text: structural tokens are read by hand, values by `raw_decode`."""

    def __init__(self, path: str | os.PathLike, chunk_chars: int = 1 << 20) -> None:
        self.path = str(path)
        self._f = open(path, encoding="utf-8", errors="surrogateescape", newline="")
        self._chunk = chunk_chars
        self._buf = ""
        self._pos = 0
        self._eof = False

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> JsonStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self) -> bool:
        """Append a chunk (dropping what was consumed); False at end of file."""
        if self._eof:
            return False
        data = self._f.read(self._chunk)
        if not data:
            self._eof = True
            return False
        self._buf = self._buf[self._pos :] + data
        self._pos = 0
        return True

    def _peek(self) -> str:
        """The next non-whitespace character ('' at end of file), not consumed."""
        while True:
            while self._pos < len(self._buf) and self._buf[self._pos] in _WS:
                self._pos += 1
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _expect(self, chars: str) -> str:
        ch = self._peek()
        if not ch or ch not in chars:
            raise self._error(f"expected one of {chars!r}, found {ch or 'end of file'!r}")
        self._pos += 1
        return ch

    def _error(self, msg: str) -> DataError:
        return DataError(f"invalid JSON: {msg}", file=self.path)

    def value(self) -> Any:
        """Decode the next complete JSON value, reading more text until it is whole."""
        if self._peek() not in '{["':
            # A number or literal: make sure it is whole ("0" may go on as "0.5" in the next
            # chunk) by reading until a character that ends it is in the buffer.
            while not _SCALAR_END.search(self._buf, self._pos) and self._fill():
                pass
        while True:
            try:
                obj, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError as e:
                if len(self._buf) - self._pos > MAX_ELEMENT_CHARS or not self._fill():
                    raise self._error(e.msg) from None
                continue
            self._pos = end
            return obj

    def iter_array(self) -> Iterator[Any]:
        """The elements of the array at the cursor, one at a time."""
        self._expect("[")
        if self._peek() == "]":
            self._pos += 1
            return
        while True:
            yield self.value()
            if self._expect(",]") == "]":
                return

    def iter_object(self) -> Iterator[str]:
        """The keys of the object at the cursor; the caller must consume each value (with
        `value()` or `iter_array()`) before asking for the next key."""
        self._expect("{")
        if self._peek() == "}":
            self._pos += 1
            return
        while True:
            if self._peek() != '"':
                raise self._error("expected an object key")
            key = self.value()
            self._expect(":")
            yield key
            if self._expect(",}") == "}":
                return

    def peek_kind(self) -> str:
        return self._peek()

    def end(self) -> None:
        """Require that nothing but whitespace follows the document."""
        ch = self._peek()
        if ch:
            raise self._error(f"unexpected {ch!r} after the document")


def iter_json_list(path: str | os.PathLike) -> Iterator[tuple[int, Any]]:
    """(index, element) of a file holding one JSON array."""
    with JsonStream(path) as js:
        if js.peek_kind() != "[":
            raise DataError("expected a JSON list of records", file=str(path))
        yield from enumerate(js.iter_array())
        js.end()


def iter_object_arrays(
    path: str | os.PathLike, stream: tuple[str, ...]
) -> Iterator[tuple[str, int | None, Any]]:
    """Walk a top-level JSON object: members named in `stream` must be arrays and come out as
    (key, index, element); every other member comes out whole as (key, None, value)."""
    with JsonStream(path) as js:
        if js.peek_kind() != "{":
            raise DataError("expected a JSON object", file=str(path))
        for key in js.iter_object():
            if key in stream:
                if js.peek_kind() != "[":
                    raise DataError(f"{key!r} must be a list", file=str(path))
                for i, element in enumerate(js.iter_array()):
                    yield key, i, element
            else:
                yield key, None, js.value()
        js.end()
