"""Where shards live: a local folder or any fsspec URL (`s3://`, `gs://`, `memory://`, ...).

The writer, the readers and the CLI need only a few operations on "OUT", and the same
guarantee on every backend: a file appears under its final name complete, or not at all.

- local folders: write to a temporary name beside the target, fsync, `os.replace` (as before);
- object stores (S3, GCS, Azure, memory): the file is written to a local staging file, then
  uploaded in one PUT or multipart upload. The store makes an object visible only when its
  upload completes, so a killed run leaves nothing under the final key;
- any other fsspec file system: upload to a `.NAME.tmp-*` name, then `mv` onto the final one.

Reads of one sample are one ranged GET (`cat_file(path, start=, end=)`); a whole-file read is
one GET. Credentials and endpoints come the usual fsspec ways: the environment
(`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT_URL`, `FSSPEC_S3_ENDPOINT_URL`, ...) and `storage_options`
(the CLI's `--storage-options '{"endpoint_url": ...}'`).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from vlmdata.core.atomic import temp_path_for

# Stores where an upload becomes visible whole, on completion (no rename needed).
WHOLE_OBJECT_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "memory"})


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs other than file:// (those are plain local paths)."""
    text = os.fspath(path)
    return "://" in text and not text.startswith("file://")


def parse_storage_options(text: str | None) -> dict[str, Any]:
    """The CLI's `--storage-options` JSON object (credentials, endpoint_url, ...)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--storage-options is not JSON: {e}") from None
    if not isinstance(value, dict):
        raise ValueError("--storage-options must be a JSON object")
    return value


class Location:
    """A folder, local or behind an fsspec URL; paths below it are '/'-separated relative names.

    Picklable (file systems are re-created in each process), so workers can take it.
    """

    def __init__(self, url: str | os.PathLike, storage_options: dict[str, Any] | None = None):
        text = os.fspath(url)
        if text.startswith("file://"):
            text = text[len("file://") :]
        self.is_local = not is_url(text)
        self.url = text if self.is_local else text.rstrip("/")
        self.options = dict(storage_options or {})
        self._fs: Any = None
        self._root = ""
        self._pid = -1

    # -- naming ------------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"Location({self.url!r})"

    def __str__(self) -> str:
        return self.url

    def child(self, rel: str) -> Location:
        return Location(self.join(rel), self.options)

    def join(self, rel: str) -> str:
        """The full path or URL of `rel` (what error messages and readers of URLs use)."""
        if self.is_local:
            return str(Path(self.url) / rel)
        return f"{self.url}/{rel}"

    def local(self, rel: str = "") -> Path:
        """The local path of `rel`; only for local locations."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.url) / rel if rel else Path(self.url)

    @property
    def fs(self):
        """The fsspec file system (remote locations only), one per process."""
        if self._fs is None or self._pid != os.getpid():
            import fsspec

            self._fs, self._root = fsspec.core.url_to_fs(self.url, **self.options)
            self._root = self._root.rstrip("/")
            self._pid = os.getpid()
        return self._fs

    def _path(self, rel: str) -> str:
        self.fs  # noqa: B018 - sets _root
        return f"{self._root}/{rel}" if rel else self._root

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_fs": None, "_pid": -1}

    # -- reading -----------------------------------------------------------------------------
    def exists(self, rel: str) -> bool:
        if self.is_local:
            return self.local(rel).exists()
        return self.fs.exists(self._path(rel))

    def size(self, rel: str) -> int:
        """Size in bytes; FileNotFoundError when absent."""
        if self.is_local:
            return self.local(rel).stat().st_size
        return int(self.fs.size(self._path(rel)))

    def read_bytes(self, rel: str) -> bytes:
        if self.is_local:
            return self.local(rel).read_bytes()
        return self.fs.cat_file(self._path(rel))

    def read_text(self, rel: str) -> str:
        return self.read_bytes(rel).decode("utf-8")

    def read_range(self, rel: str, start: int, size: int) -> bytes:
        """Bytes [start, start + size) of `rel`: one ranged GET on object stores."""
        if self.is_local:
            with open(self.local(rel), "rb") as f:
                return os.pread(f.fileno(), size, start)
        return self.fs.cat_file(self._path(rel), start=start, end=start + size)

    def open_read(self, rel: str, block_size: int = 8 << 20) -> IO[bytes]:
        """A sequential reader (streamed in `block_size` requests on object stores)."""
        if self.is_local:
            return open(self.local(rel), "rb", buffering=1 << 20)  # noqa: SIM115
        return self.fs.open(self._path(rel), "rb", block_size=block_size)

    def listdir(self, rel: str = "") -> list[str]:
        """Names (not paths) directly under `rel`; [] when it does not exist."""
        if self.is_local:
            folder = self.local(rel)
            return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        try:
            entries = self.fs.ls(self._path(rel), detail=False, refresh=True)
        except FileNotFoundError:
            return []
        return sorted(e.rstrip("/").rsplit("/", 1)[-1] for e in entries)

    # -- writing -----------------------------------------------------------------------------
    def remove(self, rel: str) -> None:
        """Delete `rel` if present."""
        if self.is_local:
            self.local(rel).unlink(missing_ok=True)
            return
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self._path(rel))

    def makedirs(self) -> None:
        if self.is_local:
            Path(self.url).mkdir(parents=True, exist_ok=True)

    def temp_for(self, rel: str) -> Path:
        """A local temporary file that `commit(tmp, rel)` will publish as `rel`."""
        if self.is_local:
            return temp_path_for(self.local(rel))
        fd, tmp = tempfile.mkstemp(prefix=f".{rel.rsplit('/', 1)[-1]}.tmp-")
        os.close(fd)
        return Path(tmp)

    def commit(self, tmp: Path, rel: str) -> None:
        """Publish a finished temporary file as `rel`, whole (see the module doc)."""
        if self.is_local:
            os.replace(tmp, self.local(rel))
            return
        target = self._path(rel)
        try:
            if self.fs.protocol and set(_protocols(self.fs)) & WHOLE_OBJECT_PROTOCOLS:
                self.fs.put_file(str(tmp), target)
            else:
                parent, _, name = target.rpartition("/")
                staged = f"{parent}/.{name}.tmp-{uuid.uuid4().hex}"
                self.fs.put_file(str(tmp), staged)
                self.fs.mv(staged, target)
        finally:
            tmp.unlink(missing_ok=True)

    @contextlib.contextmanager
    def staged(self, rel: str) -> Iterator[Path]:
        """Yield a local temp path to write `rel` to; published only if the block succeeds."""
        tmp = self.temp_for(rel)
        try:
            yield tmp
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self.commit(tmp, rel)

    def write_bytes(self, rel: str, data: bytes, fsync: bool = True) -> None:
        with self.staged(rel) as tmp, open(tmp, "wb") as f:
            f.write(data)
            if fsync and self.is_local:
                f.flush()
                os.fsync(f.fileno())

    def write_json(self, rel: str, obj: object) -> None:
        """Stable JSON (sorted keys, so reruns are byte-identical), atomically."""
        text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        self.write_bytes(rel, text.encode("utf-8"))

    def put_file(self, src: str | os.PathLike, rel: str) -> None:
        """Copy a local file to `rel`, atomically."""
        import shutil

        with self.staged(rel) as tmp:
            shutil.copyfile(src, tmp)


def _protocols(fs) -> tuple[str, ...]:
    p = fs.protocol
    return (p,) if isinstance(p, str) else tuple(p)
