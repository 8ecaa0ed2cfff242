"""Turning one input image into the bytes that go into a shard (or a reject reason).

Used twice by `write_shards`: in the planning pass (to learn sizes and hashes, so shards can be
assigned before anything is written) and again by each shard writer, which checks that it gets
the same bytes. `write_samples` uses it once per streamed image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from vlmdata.shards.images import (
    ImageInfo,
    ImageReject,
    check_image,
    resize_image,
    resolve_image_path,
)
from vlmdata.shards.options import ImageOptions
from vlmdata.shards.samples import sha256


@dataclass(frozen=True)
class Prepared:
    """A checked image: the final bytes' facts (and the original's hash, for duplicates)."""

    info: ImageInfo
    size: int
    sha256: str
    source_sha256: str
    file: str | None = None  # resolved source file and its stat, so the writer can check
    file_stamp: tuple[int, int] | None = None  # (size, mtime_ns) without hashing it again


def prepare_bytes(data: bytes, opts: ImageOptions) -> tuple[bytes, Prepared]:
    """Check, then optionally resize/re-encode. Raises ImageReject."""
    info = check_image(data, min_side=opts.min_side, max_pixels=opts.max_pixels, decode=opts.decode)
    source_hash = sha256(data)
    out = data
    if opts.transforms:
        out = resize_image(data, mode=opts.resize, size=opts.resize_side, reencode=opts.reencode)
        info = check_image(out, max_pixels=opts.max_pixels, decode=False)  # we made it
    out_hash = source_hash if out is data else sha256(out)
    return out, Prepared(info, len(out), out_hash, source_hash)


def read_image_file(images_dir: Path, rel: str | None) -> tuple[Path, bytes, tuple[int, int]]:
    """Read the file a manifest path names: (resolved path, bytes, (size, mtime_ns)).

    ImageReject for paths leaving the folder and for missing files.
    """
    if not rel:
        raise ImageReject("missing_file", "row has no path (URL data sets: use `vlmdata download`)")
    path = resolve_image_path(images_dir, rel)
    try:
        data, stamp = read_stamped(path)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise ImageReject("missing_file", f"{rel} not found in {images_dir}") from None
    return path, data, stamp


def read_stamped(path: str | Path) -> tuple[bytes, tuple[int, int]]:
    """A file's bytes and the (size, mtime_ns) of the very file read."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        return f.read(), (st.st_size, st.st_mtime_ns)


def prepare_file(images_dir: Path, rel: str | None, opts: ImageOptions) -> Prepared | ImageReject:
    """Planning pass for one manifest row: facts about the final bytes, or the reject."""
    try:
        path, data, stamp = read_image_file(images_dir, rel)
        prepared = prepare_bytes(data, opts)[1]
    except ImageReject as e:
        return e
    return replace(prepared, file=str(path), file_stamp=stamp)


def prepare_chunk(
    images_dir: str, rels: list[str | None], opts: ImageOptions
) -> list[Prepared | tuple[str, str]]:
    """A worker's share of the planning pass (rejects as plain tuples: cheap to send back)."""
    out: list[Prepared | tuple[str, str]] = []
    for rel in rels:
        r = prepare_file(Path(images_dir), rel, opts)
        out.append((r.reason, r.detail) if isinstance(r, ImageReject) else r)
    return out
