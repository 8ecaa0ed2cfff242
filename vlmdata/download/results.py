"""Reading what img2dataset wrote, one raw shard at a time, joined back to manifest keys.

img2dataset shard N holds rows [N*S, (N+1)*S) of the URL list it was given (S = its
number_sample_per_shard), in thread-completion order, under positional keys; our key travels in
the `vlm_key` column. A shard counts as finished only once its `_stats.json` exists (img2dataset
writes that last), so a killed run's half-written shard is never read.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from vlmdata.download.img2dataset_run import KEY_COLUMN


@dataclass(frozen=True)
class Fetched:
    """One URL's outcome: image bytes on success, else img2dataset's status and message."""

    status: str
    error: str | None
    image: bytes | None = None


def shard_name(shard_id: int) -> str:
    return f"{shard_id:05d}"  # img2dataset's oom_shard_count=5 default


def read_status(raw_dir: Path, shard_id: int) -> dict[str, Fetched]:
    """vlm_key -> outcome without image bytes (cheap: three small columns)."""
    table = pq.read_table(
        raw_dir / f"{shard_name(shard_id)}.parquet", columns=[KEY_COLUMN, "status", "error_message"]
    )
    cols = table.to_pydict()
    return {
        k: Fetched(s, e)
        for k, s, e in zip(cols[KEY_COLUMN], cols["status"], cols["error_message"], strict=True)
    }


def read_shard(
    raw_dir: Path, shard_id: int, raw_format: str, encode_format: str, key_column: str = KEY_COLUMN
) -> dict[str, Fetched]:
    """`key_column` value (our vlm_key; img2dataset's own `key` for an ingested folder) ->
    outcome with the image bytes of successes. raw_format: img2dataset's output_format."""
    if raw_format == "parquet":
        return _read_parquet_shard(raw_dir, shard_id, encode_format, key_column)
    return _read_member_shard(raw_dir, shard_id, raw_format, encode_format, key_column)


def _read_parquet_shard(
    raw_dir: Path, shard_id: int, encode_format: str, key_column: str
) -> dict[str, Fetched]:
    path = raw_dir / f"{shard_name(shard_id)}.parquet"
    cols = pq.read_table(path, columns=[key_column, "status", "error_message", encode_format])
    d = cols.to_pydict()
    return {
        k: Fetched(s, e, img)
        for k, s, e, img in zip(
            d[key_column], d["status"], d["error_message"], d[encode_format], strict=True
        )
    }


def _read_member_shard(
    raw_dir: Path, shard_id: int, raw_format: str, encode_format: str, key_column: str
) -> dict[str, Fetched]:
    """Statuses from the shard's parquet, bytes from its tar (`webdataset`) or its folder
    (`files`): members KEY.<encode_format> under img2dataset's own key."""
    name = shard_name(shard_id)
    columns = list(dict.fromkeys(["key", key_column, "status", "error_message"]))
    meta = pq.read_table(raw_dir / f"{name}.parquet", columns=columns).to_pydict()
    suffix = "." + encode_format
    if raw_format == "files":
        images = {
            p.name[: -len(suffix)]: p.read_bytes()
            for p in (raw_dir / name).glob(f"*{suffix}")
            if p.is_file()
        }
    else:
        images = _tar_images(raw_dir / f"{name}.tar", suffix)
    return {
        vk: Fetched(s, e, images.get(ik))
        for ik, vk, s, e in zip(
            meta["key"], meta[key_column], meta["status"], meta["error_message"], strict=True
        )
    }


def _tar_images(path: Path, suffix: str) -> dict[str, bytes]:
    images: dict[str, bytes] = {}
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile() and member.name.endswith(suffix):
                f = tar.extractfile(member)
                if f is not None:
                    images[member.name[: -len(suffix)]] = f.read()
    return images
