"""`vlmdata ingest-img2dataset`: a folder img2dataset already wrote -> our indexed shards.

For users who downloaded CC3M / LAION with img2dataset themselves: nothing is fetched. Read
from img2dataset's own files, in any of its output formats (`webdataset`: NNNNN.tar + .parquet,
`parquet`: NNNNN.parquet with the image column, `files`: NNNNN/ + .parquet): each row's key
(img2dataset's), caption, url and status come from the shard's parquet, the image bytes from
its tar, column or file, unchanged. Failed rows go to rejects/rejects.parquet with img2dataset's
message mapped to our reasons (download/img2dataset_run.py `reject_reason`); successes are
repacked like `download`'s (the same planned writer, distributors and resume).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core import layout
from vlmdata.core.choices import FETCH_ENCODE_FORMATS  # img2dataset's encode_format choices
from vlmdata.core.errors import DataError
from vlmdata.core.lifetime import holds_out_lock
from vlmdata.core.manifest import manifest_schema
from vlmdata.core.rejects import RejectWriter
from vlmdata.core.storage import Location
from vlmdata.download.img2dataset_run import finished_shards, reject_reason
from vlmdata.download.pipeline import STAGE, DownloadSummary
from vlmdata.download.repack import RawImages
from vlmdata.download.results import shard_name
from vlmdata.shards.options import ShardOptions

_META = ("key", "url", "caption", "status", "error_message")


def output_format(raw: Path, shard_id: int) -> tuple[str, str]:
    """(img2dataset output_format, encode_format) of a finished shard, from what is on disk."""
    name = shard_name(shard_id)
    parquet = raw / f"{name}.parquet"
    if not parquet.is_file():
        raise DataError("img2dataset shard without its parquet", file=str(parquet))
    if (raw / f"{name}.tar").is_file():
        import tarfile

        with tarfile.open(raw / f"{name}.tar", "r:") as tar:
            exts = {m.name.rsplit(".", 1)[-1] for m in tar if m.isfile()}
        return "webdataset", _one_format(exts, raw / f"{name}.tar")
    if (raw / name).is_dir():
        exts = {p.suffix.lstrip(".") for p in (raw / name).iterdir()}
        return "files", _one_format(exts, raw / name)
    return "parquet", _one_format(set(pq.read_schema(parquet).names), parquet)


def _one_format(names: set[str], where: Path) -> str:
    found = [f for f in FETCH_ENCODE_FORMATS if f in names]
    if len(found) > 1:
        raise DataError(
            f"images in several formats {found}: one encode_format expected", file=str(where)
        )
    return found[0] if found else "jpg"  # no success in this shard: nothing to read


def _shard_rows(raw: Path, shard_id: int, split: str | None, source: str) -> list[dict[str, Any]]:
    """The shard's rows in img2dataset key order (keys are positional: the input order)."""
    path = raw / f"{shard_name(shard_id)}.parquet"
    names = pq.read_schema(path).names
    missing = [c for c in ("key", "status") if c not in names]
    if missing:
        raise DataError(f"not an img2dataset shard parquet: no column {missing}", file=str(path))
    table = pq.read_table(path, columns=[c for c in _META if c in names]).to_pylist()
    rows = []
    for m in sorted(table, key=lambda m: m["key"]):
        caption = m.get("caption")
        rows.append({
            "key": m["key"], "source": source, "split": split, "url": m.get("url"), "path": None,
            "texts": [caption if caption is not None else ""],
            "status": m["status"], "error": m.get("error_message"), "file": str(path),
            "shard_id": shard_id,
        })  # fmt: skip
    return rows


@holds_out_lock
def ingest_img2dataset(
    raw_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: ShardOptions | None = None,
    *,
    split: str | None = None,
    source: str = "img2dataset",
    storage_options: dict[str, Any] | None = None,
    progress: bool = True,
) -> DownloadSummary:
    """Shard the finished shards (`NNNNN_stats.json`) of an img2dataset output folder into OUT.

    Every row of them ends in the shards or in rejects/rejects.parquet; a shard img2dataset did not
    finish is left out (rerun img2dataset, then this). Resumable like `shard`.
    """
    from vlmdata.shards.writer import write_planned

    raw = Path(raw_dir)
    if not raw.is_dir():
        raise DataError("img2dataset output folder not found", file=str(raw))
    done = sorted(finished_shards(raw))
    if not done:
        raise DataError("no finished img2dataset shard (NNNNN_stats.json) here", file=str(raw))
    fmt, enc = output_format(raw, done[0])
    rows = [r for sid in done for r in _shard_rows(raw, sid, split, source)]
    kept = [r for r in rows if r["status"] == "success"]
    with tempfile.TemporaryDirectory(prefix="vlmdata-ingest-") as tmp:
        manifest, rejects = Path(tmp) / layout.MANIFEST, Path(tmp) / layout.REJECTS
        manifest.parent.mkdir()
        _write_manifest(manifest, rows)
        with RejectWriter(rejects) as w:
            for r in rows:
                if r["status"] != "success":
                    reason = reject_reason(r["status"], r["error"])
                    w.add(reason, stage=STAGE, file=r["file"], key=r["key"],
                          detail=r["error"] or r["status"], record=_manifest_row(r))  # fmt: skip
        summary = write_planned(
            [_manifest_row(r) for r in kept],
            [(r["shard_id"], r["key"]) for r in kept],
            RawImages(str(raw), fmt, enc, key_column="key"),
            Location(out_dir, storage_options),
            options or ShardOptions(),
            manifest=manifest,
            prior_rejects=rejects,
            reject_file=str(raw),
            progress=progress,
        )
    return DownloadSummary.of(summary)


def _manifest_row(r: dict[str, Any]) -> dict[str, Any]:
    return {k: r[k] for k in ("key", "source", "split", "url", "path", "texts")}


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> None:
    schema = manifest_schema(())
    table = pa.Table.from_pylist([_manifest_row(r) for r in rows], schema=schema)
    pq.write_table(table, path)
