"""Where the planned writer gets image bytes: a local folder (`vlmdata shard`) or img2dataset's
raw shards (`vlmdata download`, see download/repack.py).

Both are used twice: in planning tasks (check and hash every image, so duplicates are found
exactly and shards are cut before anything is written) and by the task writing each output
shard, which re-reads the bytes and checks they are still what the plan measured. A source is
small and plain (a folder path and options), so it travels to processes, Spark and Ray tasks.
Each row has a `ref` in its source: the manifest path here, the raw shard number for download.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmdata.core.errors import DataError
from vlmdata.shards.options import ImageOptions
from vlmdata.shards.prepare import (
    ImageProblem,
    Prepared,
    prepare_bytes,
    prepare_chunk,
    read_stamped,
)
from vlmdata.shards.samples import sha256

CHUNK = 64  # rows per planning task for a folder

PlanResult = Prepared | ImageProblem  # the image's facts, or why it is rejected


@dataclass(frozen=True)
class FolderImages:
    """Images named by each manifest row's `path`, inside `images_dir`."""

    images_dir: str

    def plan_tasks(self, refs: list[Any], opts: ImageOptions) -> list[tuple]:
        """Tasks for `plan_task`, each covering a run of rows in order."""
        return [(self, refs[i : i + CHUNK], opts) for i in range(0, len(refs), CHUNK)]

    def plan(self, refs: list[Any], opts: ImageOptions) -> list[PlanResult]:
        return prepare_chunk(self.images_dir, refs, opts)

    def read(self, key: str, ref: Any, p: Prepared, opts: ImageOptions) -> bytes:
        """The image bytes the plan measured, re-read from its file; DataError if it changed.

        Unchanged (size, mtime_ns) is trusted without re-hashing the original; transformed
        images are re-made (deterministic) and compared by hash.
        """
        try:
            data, stamp = read_stamped(p.file)
        except OSError as e:
            raise DataError(f"{ref}: unreadable during the run ({e})") from None
        if stamp != p.file_stamp:
            raise DataError(
                f"{ref}: image changed during the run (size or mtime differs from plan)"
            )
        return _transformed(data, p, opts, ref)


def _transformed(data: bytes, p: Prepared, opts: ImageOptions, what: str) -> bytes:
    if opts.transforms:
        data = prepare_bytes(data, opts)[0]
        if sha256(data) != p.sha256:
            raise DataError(f"{what}: resized image differs from the plan")
    return data


def check_planned(data: bytes, p: Prepared, opts: ImageOptions, what: str) -> bytes:
    """For sources without file stamps: the final bytes, checked against the plan's hash."""
    data = _transformed(data, p, opts, what)
    if not opts.transforms and (len(data) != p.size or sha256(data) != p.sha256):
        raise DataError(f"{what}: image bytes differ from the plan")
    return data


def plan_task(task: tuple) -> list[PlanResult]:
    """One planning task (module level, so every engine can run it)."""
    source, refs, opts = task
    return source.plan(refs, opts)


def folder_source(images_dir: str | Path) -> FolderImages:
    return FolderImages(str(images_dir))
