"""A loopback HTTP server for download tests: generated images plus the ways the web fails.

Routes (N is any integer; every response is a pure function of the path, so reruns match):
  /img/N.jpg, /img/N.png   a generated image (distinct content per N and format)
  /dup/N.jpg               the same bytes as /img/N.jpg (a duplicate under another URL)
  /redirect/N.jpg          302 to /img/N.jpg
  /missing/N.jpg           404
  /error/N.jpg             500
  /slow/N.jpg              an image, but only after `slow_seconds` (beyond the client timeout)
  /corrupt/N.jpg           200 with bytes that are not an image
  /truncated/N.jpg         200 with the first half of /img/N.jpg
  /hop-FORM/N.jpg          302 to http://HOST:PORT/img/N.jpg, HOST being 127.0.0.1 written as
                           HOP_FORMS[FORM] (2130706433, 127.1, 0x7f000001, 0177.0.0.1, 0 ...)
  /big/N.jpg               200 with BIG_BYTES bytes and no Content-Length (read to the close)
  /drip/N.jpg              /img/N.jpg sent DRIP_BYTES at a time every `drip_seconds`: each read
                           is well under any socket timeout, the whole response is not

The server runs in a daemon thread on 127.0.0.1, port 0 (the OS picks a free port).
"""

from __future__ import annotations

import contextlib
import io
import re
import threading
import time
from collections.abc import Iterator
from functools import lru_cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image

_ROUTE = re.compile(
    r"^/(img|dup|redirect|missing|error|slow|corrupt|truncated|big|drip|hop-[a-z0-9]+)/"
    r"(\d+)\.(jpg|png)$"
)
# 127.0.0.1 as resolvers also read it (inet_aton forms, 0.0.0.0, Unicode, percent-encoding)
HOP_FORMS = {
    "decimal": "2130706433",
    "short": "127.1",
    "hex": "0x7f000001",
    "octal": "0177.0.0.1",
    "zero": "0",
    # urllib percent-decodes hosts and IDNA-maps full-width digits: both reach 127.0.0.1
    "fullwidth": "%EF%BC%91%EF%BC%92%EF%BC%97.%EF%BC%90.%EF%BC%90.%EF%BC%91",
    "percent": "%31%32%37.0.0.1",
    "dotted": "127.0.0.1",
    "localdomain": "localhost.localdomain",
}
BIG_BYTES = 3_000_000
DRIP_BYTES = 64


@lru_cache(maxsize=4096)
def image_bytes(n: int, fmt: str = "jpg", size: tuple[int, int] = (48, 32)) -> bytes:
    """Deterministic image number `n`: seeded noise over a colour, so every n hashes apart."""
    rng = np.random.default_rng(n)
    base = np.array([(n * 37) % 256, (n * 91) % 256, (n * 53) % 256], dtype=np.int16)
    noise = rng.integers(-40, 40, size=(size[1], size[0], 3), dtype=np.int16)
    pixels = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(pixels).save(buf, format="PNG")
    else:
        Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def corrupt_bytes(n: int) -> bytes:
    return b"this is not an image, number %d\n" % n * 8


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.hits.append(self.path)
        m = _ROUTE.match(self.path)
        if m is None:
            self.send_error(404)
            return
        route, n, fmt = m.group(1), int(m.group(2)), m.group(3)
        size = self.server.image_size
        if route in ("img", "dup"):
            self._send(image_bytes(n, fmt, size), fmt)
        elif route == "redirect":
            self.send_response(302)
            self.send_header("Location", f"/img/{n}.{fmt}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif route == "missing":
            self.send_error(404)
        elif route == "error":
            self.send_error(500)
        elif route == "slow":
            time.sleep(self.server.slow_seconds)
            self._send(image_bytes(n, fmt, size), fmt)
        elif route == "corrupt":
            self._send(corrupt_bytes(n), fmt)
        elif route == "truncated":
            data = image_bytes(n, fmt, size)
            self._send(data[: len(data) // 2], fmt)
        elif route.startswith("hop-"):
            host = HOP_FORMS[route[4:]]
            self.send_response(302)
            self.send_header(
                "Location", f"http://{host}:{self.server.server_address[1]}/img/{n}.{fmt}"
            )
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._stream(route, image_bytes(n, fmt, size))

    def _stream(self, route: str, data: bytes) -> None:
        """`big`: many bytes, no length; `drip`: a real image, slowly."""
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            if route == "drip":
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if route == "big":
                for _ in range(BIG_BYTES // 65536 + 1):
                    self.wfile.write(b"\0" * 65536)
                return
            for i in range(0, len(data), DRIP_BYTES):
                self.wfile.write(data[i : i + DRIP_BYTES])
                self.wfile.flush()
                time.sleep(self.server.drip_seconds)

    def _send(self, data: bytes, fmt: str) -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.send_response(200)
            self.send_header("Content-Type", "image/png" if fmt == "png" else "image/jpeg")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass  # keep test output quiet


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, slow_seconds: float, image_size: tuple[int, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.slow_seconds = slow_seconds
        self.drip_seconds = 0.25
        self.image_size = image_size
        self.hits: list[str] = []


class ImageServer:
    """Handle on a running server: `url(route, n, fmt)` builds URLs, `hits` lists paths served."""

    def __init__(self, server: _Server) -> None:
        self._server = server
        self.base = f"http://127.0.0.1:{server.server_address[1]}"

    def url(self, route: str, n: int, fmt: str = "jpg") -> str:
        return f"{self.base}/{route}/{n}.{fmt}"

    @property
    def hits(self) -> list[str]:
        return self._server.hits


@contextlib.contextmanager
def serve_images(
    slow_seconds: float = 4.0, image_size: tuple[int, int] = (48, 32)
) -> Iterator[ImageServer]:
    """Run the server for the duration of the block."""
    server = _Server(slow_seconds, image_size)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield ImageServer(server)
    finally:
        server.shutdown()
        server.server_close()
