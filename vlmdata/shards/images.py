"""Image checks and optional resizing for sharding.

The accepted set is deliberately small: JPEG, PNG and WebP, recognised by their magic bytes (not
the file name). Everything else is `not_an_image`: trainers decode with PIL/torchvision, and these
three cover every data set the project reads. The pixel limit is checked from the header BEFORE
decoding (decompression bombs), then the image is fully decoded once to catch truncation.
"""

from __future__ import annotations

import functools
import io
import os
import re
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from vlmdata.core.choices import RESIZE_MODES
from vlmdata.core.errors import Rejected

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own Image.MAX_IMAGE_PIXELS
FORMATS = ("jpg", "png", "webp")
_PIL_FORMAT = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP"}


class ImageReject(Rejected):
    """An image that cannot be sharded (the shard stage's reject)."""


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # "jpg" | "png" | "webp"
    width: int
    height: int


def sniff_format(data: bytes) -> str | None:
    """The format from the magic bytes, or None when it is not one we accept."""
    if data[:3] == b"\xff\xd8\xff":
        return "jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def _open_header(data: bytes, fmt: str, max_pixels: int, quiet: bool = False) -> Image.Image:
    """Open lazily (header only) and apply the pixel limit before any decoding. `quiet`: the
    caller knows every frame is under PIL's bomb limit, so there is no warning to silence
    (catching warnings costs ~6 us, this runs per image)."""
    try:
        if quiet:
            im = Image.open(io.BytesIO(data))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise ImageReject("too_large", str(e)) from None
    except Exception as e:  # PIL raises many types for a bad header
        reason = "not_an_image" if container_complete(data, fmt) else "truncated"
        raise ImageReject(reason, f"unreadable header: {e}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise ImageReject("too_large", f"{w}x{h} = {w * h:,} pixels > {max_pixels:,}")
    return im


def check_image(
    data: bytes,
    *,
    min_side: int = 0,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    decode: bool = True,
) -> ImageInfo:
    """Check one image's bytes; raise ImageReject with the reason, or return its format and size.

    decode=True decodes the whole image (catches truncation and corrupt data); decode=False
    only checks the container is complete (JPEG EOI, PNG IEND, WebP RIFF length): ~20× faster,
    still catches cut-off downloads, not corruption inside the stream.
    """
    if not data:
        raise ImageReject("empty_file", "0 bytes")
    fmt = sniff_format(data)
    if fmt is None:
        raise ImageReject("not_an_image", f"magic bytes {data[:12]!r} are not JPEG, PNG or WebP")
    if fmt == "jpg":  # the segments are walked once: the size and every SOF's pixel count
        frames = jpeg_frames(data)
        size = frames[0] if frames and not decode else None
    else:
        frames = None
        size = None if decode else header_size(data, fmt)
    if size is None:  # decoding anyway, or a header our parser does not follow: ask PIL
        limit = Image.MAX_IMAGE_PIXELS
        quiet = bool(frames) and limit is not None and max(w * h for w, h in frames) <= limit
        im = _open_header(data, fmt, max_pixels, quiet)
        size = im.size
    w, h = size
    for fw, fh in frames if frames is not None else [size]:
        if fw * fh > max_pixels:
            raise ImageReject("too_large", f"{fw}x{fh} = {fw * fh:,} pixels > {max_pixels:,}")
    if min(w, h) < min_side:
        raise ImageReject("too_small", f"{w}x{h}: shorter side < --min-side {min_side}")
    if not decode:
        if not container_complete(data, fmt):
            raise ImageReject("truncated", f"{fmt} data ends before its end marker")
        return ImageInfo(fmt, w, h)
    try:
        if fmt == "jpg":
            im.draft(im.mode, (max(1, w // 8), max(1, h // 8)))  # decodes the whole stream, faster
        im.load()
    except Exception as e:
        raise ImageReject("truncated", f"decoding failed: {e}") from None
    return ImageInfo(fmt, w, h)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read straight from the header bytes, or None when not found.

    ~20× cheaper than PIL's open; used by the structure check (PIL stays the fallback).
    """
    try:
        if fmt == "png":
            return (_be(data, 16, 4), _be(data, 20, 4)) if data[12:16] == b"IHDR" else None
        if fmt == "webp":
            return _webp_size(data)
        return _jpeg_size(data)
    except IndexError:
        return None


def _be(data: bytes, pos: int, n: int) -> int:
    if pos + n > len(data):
        raise IndexError(pos)
    return int.from_bytes(data[pos : pos + n], "big")


def _le(data: bytes, pos: int, n: int) -> int:
    if pos + n > len(data):
        raise IndexError(pos)
    return int.from_bytes(data[pos : pos + n], "little")


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    frames = jpeg_frames(data)
    return frames[0] if frames else None


def jpeg_frames(data: bytes) -> list[tuple[int, int]]:
    """(width, height) of EVERY SOF marker in the file, scan data skipped marker by marker.

    A second SOF (in the header or after a scan) may claim 60000×60000 while the first is
    small; the pixel limit applies to all of them. Stops at EOI or at bytes it cannot follow.
    Reads big-endian fields with one `unpack_from` each: this runs for every image.
    """
    frames, pos, n = [], 2, len(data)  # after SOI
    while pos + 4 <= n:
        if data[pos] != 0xFF:
            return frames
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:  # EOI
            return frames
        if 0xD0 <= marker <= 0xD8 or marker == 0x01:  # no length field
            pos += 2
            continue
        if pos + 9 > n:  # a segment header cut off: nothing more to read
            return frames
        if marker in _JPEG_SOF:  # length, precision, height, width
            length, _, height, width = _SOF_FIELDS.unpack_from(data, pos + 2)
            frames.append((width, height))
        else:
            length = _U16.unpack_from(data, pos + 2)[0]
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            pos = _next_marker(data, pos)
    return frames


_U16 = struct.Struct(">H")
_SOF_FIELDS = struct.Struct(">HBHH")  # in bounds: pos + 9 <= len(data) was checked


# 0xFF then anything but a stuffed 0x00, a restart marker RSTn or another fill 0xFF
_REAL_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


def _next_marker(data: bytes, pos: int) -> int:
    """Position of the next marker after scan data (skipping stuffed 0xFF00 and RSTn).

    One C-level regex search: entropy-coded data holds a stuffed 0xFF00 every few hundred
    bytes, and stepping over them in Python made this the slowest part of a shard run."""
    m = _REAL_MARKER.search(data, pos)
    return m.start() if m else len(data)


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        return _le(data, 26, 2) & 0x3FFF, _le(data, 28, 2) & 0x3FFF
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = _le(data, 21, 4)
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return _le(data, 24, 3) + 1, _le(data, 27, 3) + 1
    return None


def container_complete(data: bytes, fmt: str) -> bool:
    """Whether the file reaches its format's end marker (trailing zero padding allowed)."""
    if fmt == "webp":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    tail = data.rstrip(b"\0")[-16:]
    if fmt == "jpg":
        return tail.endswith(b"\xff\xd9")
    return tail.endswith(b"IEND\xaeB`\x82")  # the IEND chunk and its constant CRC


def resize_image(
    data: bytes,
    *,
    mode: str = "keep_ratio",
    size: int = 256,
    reencode: str | None = None,
    quality: int = 95,
) -> bytes:
    """Resize (and/or re-encode) one checked image deterministically.

    keep_ratio: the longer side becomes at most `size` (never upscaled);
    center_crop: shorter side to `size`, then a centred size×size crop;
    border: fit inside size×size, padded with black borders.
    `mode=None` re-encodes only. Output format: `reencode`, else the input's own format.
    """
    fmt = reencode or sniff_format(data) or "jpg"
    if fmt not in FORMATS:
        raise ValueError(f"reencode format {fmt!r} not in {FORMATS}")
    im = Image.open(io.BytesIO(data))
    im.load()
    im = im.convert("RGB") if fmt == "jpg" or im.mode not in ("RGB", "RGBA", "L") else im
    if mode is not None:
        im = _resize(im, mode, size)
    out = io.BytesIO()
    params = {"quality": quality} if fmt in ("jpg", "webp") else {}
    im.save(out, format=_PIL_FORMAT[fmt], **params)
    return out.getvalue()


def _resize(im: Image.Image, mode: str, size: int) -> Image.Image:
    w, h = im.size
    if mode == "keep_ratio":
        scale = min(1.0, size / max(w, h))
        if scale < 1.0:
            im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BICUBIC)
        return im
    if mode == "center_crop":
        scale = size / min(w, h)
        nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
        im = im.resize((nw, nh), Image.BICUBIC)
        left, top = (nw - size) // 2, (nh - size) // 2
        return im.crop((left, top, left + size, top + size))
    if mode == "border":
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        canvas = Image.new(im.mode, (size, size))
        canvas.paste(im.resize((nw, nh), Image.BICUBIC), ((size - nw) // 2, (size - nh) // 2))
        return canvas
    raise ValueError(f"resize mode {mode!r} not in {RESIZE_MODES}")


def resolve_image_path(images_dir: Path, rel: str, real_dirs: set[str] | None = None) -> str:
    """The file a manifest `path` names, refusing paths that leave `images_dir` (a str: this
    runs for every image, and a Path per call cost more than the checks).

    Raises ImageReject("path_escape") for absolute paths, `..` and symlinks pointing outside.
    `real_dirs`: folders already seen not to be symlinks, filled in here; a caller checking a
    run of rows passes one set, so a folder is lstat-ed once per run, not once per image.
    """
    if not rel or rel.startswith(("/", "\\")) or os.path.isabs(rel):
        raise ImageReject("path_escape", f"path {rel!r} is absolute or empty")
    if ".." in rel.split("/"):  # Path(rel).parts, without building a Path per row
        raise ImageReject("path_escape", f"path {rel!r} contains '..'")
    root = _real_root(str(images_dir))
    target = os.path.normpath(os.path.join(root, rel))  # no "..": stays under root
    # only then resolve: realpath lstats every component
    if _symlink_below(root, target, real_dirs):
        target = os.path.realpath(target)
    if not target.startswith(root.rstrip(os.sep) + os.sep):
        raise ImageReject("path_escape", f"path {rel!r} resolves outside {images_dir}")
    return target


def _symlink_below(root: str, path: str, real_dirs: set[str] | None = None) -> bool:
    """Whether any component of `path` below the (real) `root` is a symlink. Without one,
    realpath(path) == path; a missing component is no symlink (the read then fails). Folders
    in `real_dirs` (and so their parents) are known not to be; the ones checked are added."""
    if os.path.islink(path):
        return True
    checked = []
    path = os.path.dirname(path)
    while len(path) > len(root) and (real_dirs is None or path not in real_dirs):
        if os.path.islink(path):
            return True
        checked.append(path)
        path = os.path.dirname(path)
    if real_dirs is not None:
        real_dirs.update(checked)
    return False


@functools.lru_cache(maxsize=64)
def _real_root(images_dir: str) -> str:
    """The image folder's real path, resolved once per process (it is asked for every row)."""
    return os.path.realpath(images_dir)
