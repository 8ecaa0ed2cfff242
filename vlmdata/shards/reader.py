"""Reading shards back: by index (one `pread` per sample) or streaming through the tars.

`ShardReader` is map-style (`len` + `[i]`), so `torch.utils.data.DistributedSampler` and
DataLoader workers work with it: file descriptors are opened lazily and per process (a forked
or unpickled copy opens its own), never shared.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.storage import Location, is_url
from vlmdata.shards.images import FORMATS
from vlmdata.shards.samples import sha256
from vlmdata.shards.tarfmt import iter_members

Sample = dict[str, Any]  # key, image (bytes), image_ext, meta (dict), txt (str)
_ROLES = ("image", "json", "txt")


def list_shards(
    out_dir: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> list[Path] | list[str]:
    """The shard files in order (wids.json's order when present, else sorted names): paths
    for a local OUT, URLs for one in object storage."""
    root = Location(out_dir, storage_options)
    if root.exists("wids.json"):
        rels = [s["url"] for s in json.loads(root.read_text("wids.json"))["shardlist"]]
    else:
        rels = [f"shards/{n}" for n in root.listdir("shards") if n.endswith(".tar")]  # flat layout
        for folder in root.listdir("shards"):  # one folder per split
            names = root.listdir(f"shards/{folder}")
            rels += [f"shards/{folder}/{n}" for n in names if n.endswith(".tar")]
    return [root.local(r) for r in rels] if root.is_local else [root.join(r) for r in rels]


def shard_streams(
    out_dir: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """{"url", "stream"} for each shard in order, opened through fsspec (no shell commands):
    the input webdataset's tar iterators take, for shards in object storage.

        from webdataset.tariterators import group_by_keys, tar_file_expander
        samples = group_by_keys(tar_file_expander(shard_streams("s3://bucket/out")))
    """
    for url in list_shards(out_dir, storage_options):
        with open_shard(url, storage_options) as stream:
            yield {"url": str(url), "stream": stream}


def _make_sample(key: str, image: bytes, ext: str, js: bytes, txt: bytes) -> Sample:
    return {
        "key": key,
        "image": image,
        "image_ext": ext,
        "meta": json.loads(js) if js else {},
        "txt": txt.decode("utf-8"),
    }


class KeyedAccess:
    """`row_of`, `get(key)` and iteration for a map-style reader over `_lookup_keys()`."""

    _row_of: dict[str, int] | None = None

    def _lookup_keys(self) -> Iterable[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, i: int) -> Sample:
        raise NotImplementedError

    def row_of(self, key: str) -> int:
        """The row (position in this reader) of a key; KeyError when absent."""
        if self._row_of is None:
            self._row_of = {k: i for i, k in enumerate(self._lookup_keys())}
        return self._row_of[key]

    def get(self, key: str) -> Sample:
        return self[self.row_of(key)]

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]


class ShardReader(KeyedAccess):
    """Random access to samples through OUT/index/index.parquet.

    `filter` is a polars expression over index columns, e.g. `pl.col("split") == "test"`;
    `verify=True` checks each member's sha256 against the index on every read. OUT may be an
    fsspec URL (`s3://bucket/prefix`, credentials in the environment or `storage_options`):
    each sample is then one ranged GET instead of one pread.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        filter: pl.Expr | None = None,
        *,
        verify: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        self.location = Location(out_dir, storage_options)
        self.root = self.location.local() if self.location.is_local else self.location.url
        index = read_index(self.location)
        self.index: pl.DataFrame = index.filter(filter) if filter is not None else index
        self.verify = verify
        self._shards = sorted(self.index["shard"].unique().to_list())
        ids = {s: i for i, s in enumerate(self._shards)}
        self._shard_id = np.array([ids[s] for s in self.index["shard"].to_list()], dtype=np.int32)
        # one compact row per sample: shard, sample range, then each member's (offset - start, size)
        start = self.index["sample_offset"].to_numpy().astype(np.int64)
        cols = [self._shard_id.astype(np.int64), start, self.index["size"].to_numpy()]
        for role in _ROLES:
            cols += [self.index[f"{role}_offset"].to_numpy() - start, self.index[f"{role}_size"]]
        self._table = np.stack([np.asarray(c, dtype=np.int64) for c in cols], axis=1)
        self._keys: list[str] = self.index["key"].to_list()
        self._formats: list[str] = self.index["format"].to_list()
        self._fds: dict[int, int] = {}
        self._pid = os.getpid()

    def __len__(self) -> int:
        return len(self._keys)

    def _fd(self, shard_id: int) -> int:
        if self._pid != os.getpid():  # forked into a worker: never share the parent's fds
            self._fds, self._pid = {}, os.getpid()
        fd = self._fds.get(shard_id)
        if fd is None:
            fd = os.open(self.location.local(self._shards[shard_id]), os.O_RDONLY)
            self._fds[shard_id] = fd
        return fd

    def __getitem__(self, i: int) -> Sample:
        i = self._row(i)
        parts = self.members(i)
        return _make_sample(
            self._keys[i], parts["image"], self._formats[i], parts["json"], parts["txt"]
        )

    def _row(self, i: int) -> int:
        n = len(self._keys)
        if not -n <= i < n:
            raise IndexError(f"sample {i} out of range ({n} samples)")
        return int(i) % n

    def members(self, i: int) -> dict[str, bytes]:
        """The raw member bytes of row i ("image", "json", "txt") from one read."""
        i = self._row(i)
        shard, start, size, io, isz, jo, jsz, to, tsz = self._table[i].tolist()
        if self.location.is_local:
            buf = os.pread(self._fd(shard), size, start)
        else:
            buf = self.location.read_range(self._shards[shard], start, size)
        if len(buf) != size:
            raise DataError(f"sample {self._keys[i]!r}: shard shorter than the index says")
        parts = {"image": buf[io : io + isz], "json": buf[jo : jo + jsz], "txt": buf[to : to + tsz]}
        if self.verify:
            self._check(i, parts)
        return parts

    def image(self, i: int) -> tuple[bytes, str]:
        """Row i's image bytes and format from one read of the image member alone (what a
        record needs: its fields are in records.parquet, so KEY.json is not read)."""
        i = self._row(i)
        shard, start, _, offset, size = self._table[i, :5].tolist()
        if self.location.is_local:
            data = os.pread(self._fd(shard), size, start + offset)
        else:
            data = self.location.read_range(self._shards[shard], start + offset, size)
        if len(data) != size:
            raise DataError(f"sample {self._keys[i]!r}: shard shorter than the index says")
        if self.verify:
            self._check(i, {"image": data})
        return data, self._formats[i]

    def _check(self, i: int, parts: dict[str, bytes]) -> None:
        for role, data in parts.items():
            if sha256(data) != self.index[f"{role}_sha256"][i]:
                raise DataError(f"sample {self._keys[i]!r}: {role} checksum mismatch")

    def _lookup_keys(self) -> list[str]:
        return self._keys

    def close(self) -> None:
        if self._pid == os.getpid():
            for fd in self._fds.values():
                os.close(fd)
        self._fds = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fds"] = {}  # a copy in another process opens its own
        return state

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _key_ext(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, _, ext = base.partition(".")
    prefix = name[: len(name) - len(base)]
    return prefix + key, ext


def read_index(location: Location) -> pl.DataFrame:
    """OUT/index/index.parquet (one GET on object stores); DataError when OUT has none."""
    try:
        data = location.read_bytes(layout.INDEX)
    except FileNotFoundError:
        raise DataError(f"no {layout.INDEX} here: not a shard folder", file=str(location)) from None
    try:
        df = pl.read_parquet(io.BytesIO(data))
    except Exception as e:  # polars raises several types for bytes that are not Parquet
        where = location.join(layout.INDEX)
        raise DataError(f"not a readable Parquet index ({type(e).__name__})", file=where) from None
    return df


def open_shard(path: str | os.PathLike, storage_options: dict[str, Any] | None = None):
    """A sequential reader of one tar: a local path or an fsspec URL (streamed in blocks)."""
    text = os.fspath(path)
    if not is_url(text):
        return open(text, "rb", buffering=1 << 20)  # noqa: SIM115 - the caller closes it
    parent, _, name = text.rpartition("/")
    return Location(parent, storage_options).open_read(name)


def iter_tar_samples(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> Iterator[Sample]:
    """Samples of one tar, read sequentially (members grouped by key, WebDataset-style).
    `path` may be an fsspec URL (`s3://bucket/prefix/shards/data-000000.tar`)."""
    with open_shard(path, storage_options) as f:
        key, parts = None, {}
        for member, data in iter_members(f):
            k, ext = _key_ext(member.name)
            if k != key and key is not None:
                yield _group(key, parts)
                parts = {}
            key = k
            parts[ext] = data
        if key is not None:
            yield _group(key, parts)


def _group(key: str, parts: dict[str, bytes]) -> Sample:
    ext = next((e for e in FORMATS if e in parts), "")
    return _make_sample(
        key, parts.get(ext, b""), ext, parts.get("json", b""), parts.get("txt", b"")
    )


def iter_samples(
    out_dir: str | os.PathLike,
    shards: Iterable[str | os.PathLike | int] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Iterator[Sample]:
    """Stream every sample (or those of the given shards: paths or positions in list_shards)."""
    all_shards = list_shards(out_dir, storage_options)
    chosen = (
        all_shards
        if shards is None
        else [all_shards[s] if isinstance(s, int) else s for s in shards]
    )
    for path in chosen:
        yield from iter_tar_samples(path, storage_options)
