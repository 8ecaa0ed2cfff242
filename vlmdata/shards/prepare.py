"""Turning one input image into the bytes that go into a shard (or a reject reason).

Used twice by `write_shards`: in the planning pass (to learn sizes and hashes, so shards can be
assigned before anything is written) and again by each shard writer, which checks that it gets
the same bytes. `write_samples` uses it once per streamed image.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
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


@dataclass(frozen=True, slots=True)
class Prepared:
    """A checked image: the final bytes' facts (and the original's hash, for duplicates)."""

    info: ImageInfo
    size: int
    sha256: str
    source_sha256: str
    file: str | None = None  # resolved source file and its stat, so the writer can check
    file_stamp: tuple[int, int] | None = None  # (size, mtime_ns) without hashing it again


@dataclass(frozen=True, slots=True)
class ImageProblem:
    """Why an image is rejected (an ImageReject made small enough to send between processes)."""

    reason: str
    detail: str

    @classmethod
    def of(cls, e: ImageReject) -> ImageProblem:
        return cls(e.reason, e.detail)


@dataclass(frozen=True)
class PreparedBytes:
    """A streamed image that passed: the bytes that go into the shard, and their facts."""

    data: bytes
    prepared: Prepared


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


_JPEG_SUFFIXES = (".jpg", ".JPEG", ".jpeg", ".JPG")


def candidate_paths(images_dir: Path, rel: str) -> Iterator[str]:
    """Where the file a manifest path names may be, in the order tried.

    1. `rel` itself; then its other JPEG spellings (OVEN ships both `.jpg` and `.JPEG`, and a
       manifest written without the image folder cannot know which; AutoVER tries both);
    2. when `rel`'s folder does not exist at all, the same name at the top of the folder
       (GRACE keeps Karpathy COCO flat in `coco_images/`, while the Karpathy JSON names
       `val2014/COCO_val2014_...jpg`). An existing folder is never second-guessed.
    """

    def spellings(path: str) -> list[str]:
        stem, dot, ext = path.rpartition(".")
        if not dot or f".{ext}" not in _JPEG_SUFFIXES:
            return [path]
        return [path] + [stem + s for s in _JPEG_SUFFIXES if s != f".{ext}"]

    yield from spellings(rel)  # lazily: the folder is only looked at after a miss
    folder, _, name = rel.rpartition("/")
    if folder and name and not (images_dir / folder).is_dir():
        yield from spellings(name)


def read_image_file(
    images_dir: Path, rel: str | None, real_dirs: set[str] | None = None
) -> tuple[str, bytes, tuple[int, int]]:
    """Read the file a manifest path names (see `candidate_paths`): (resolved path, bytes,
    (size, mtime_ns)).

    ImageReject for a path that is not a string, leaves the folder, is missing, is not a
    regular file (a FIFO would block for ever, a device never end) or cannot be opened
    (a symlink loop, a name too long): one bad row never stops the run. `real_dirs`: see
    `resolve_image_path`.
    """
    if not rel:
        raise ImageReject("missing_file", "row has no path (URL data sets: use `vlmdata download`)")
    if not isinstance(rel, str):
        raise ImageReject("bad_path", f"path {rel!r} is a {type(rel).__name__}, not a string")
    if "\0" in rel:
        raise ImageReject("bad_path", f"path {rel!r} holds a NUL character")
    for candidate in candidate_paths(images_dir, rel):  # the first is `rel` as written, so
        # path_escape is judged on it before any other spelling is tried
        path = resolve_image_path(images_dir, candidate, real_dirs)
        try:
            data, stamp = read_stamped(path)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            continue
        except NotARegularFile as e:
            raise ImageReject(
                "not_a_file", f"{rel} is {e} in {images_dir}, not a regular file"
            ) from None
        except OSError as e:
            name = errno.errorcode.get(e.errno or 0, "OSError")
            raise ImageReject("unreadable_file", f"{rel}: {name} {e.strerror or e}") from None
        return path, data, stamp
    raise ImageReject("missing_file", f"{rel} not found in {images_dir}")


class NotARegularFile(OSError):
    """Opened something that is not a regular file (its kind is the message)."""


def read_stamped(path: str | Path) -> tuple[bytes, tuple[int, int]]:
    """A file's bytes and the (size, mtime_ns) of the very file read.

    Opened non-blocking, so a FIFO is refused at once instead of waiting for a writer. Read
    with plain `os.read` calls sized by fstat (no file object: this runs twice per image)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(_file_kind(st.st_mode))
        data = os.read(fd, st.st_size + 1)  # +1: a file that grew is read on to its end
        if len(data) != st.st_size:  # grew, or a short read (files over 2 GiB): to EOF
            chunks = [data]
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            data = b"".join(chunks)
        return data, (st.st_size, st.st_mtime_ns)
    finally:
        os.close(fd)


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISFIFO: "a FIFO", stat.S_ISCHR: "a character device", stat.S_ISSOCK: "a socket"}
    kinds[stat.S_ISBLK] = "a block device"
    return next((name for test, name in kinds.items() if test(mode)), "not a file")


def prepare_file(
    images_dir: Path, rel: str | None, opts: ImageOptions, real_dirs: set[str] | None = None
) -> Prepared | ImageProblem:
    """Planning pass for one manifest row: facts about the final bytes, or the reject."""
    try:
        path, data, stamp = read_image_file(images_dir, rel, real_dirs)
        p = prepare_bytes(data, opts)[1]
    except ImageReject as e:
        return ImageProblem.of(e)
    return Prepared(p.info, p.size, p.sha256, p.source_sha256, path, stamp)  # runs per image


def prepare_chunk(
    images_dir: str, rels: list[str | None], opts: ImageOptions
) -> list[Prepared | ImageProblem]:
    """A worker's share of the planning pass (its folders checked for symlinks once)."""
    folder, real_dirs = Path(images_dir), set()
    return [prepare_file(folder, rel, opts, real_dirs) for rel in rels]
