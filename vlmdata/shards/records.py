"""Records: the unit of training and evaluation, many per stored image (see docs/DESIGN.md).

A shard folder holds each distinct image once, as a WebDataset sample `IMAGE_KEY.*`, and
`records/records.parquet`: one row per record (manifest order) with its own unique `key`, the
`image_key` of the sample holding its image, and the record's columns (split, texts, question,
answers, conversations, entity_id ...). The sample's KEY.json lists the same records under
`records`, so a peer reading only the tars sees them too.

`RecordReader` is map-style over records (one `pread` of the image per record through the
index); `records_of_sample` expands a streamed tar sample into its records.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import CORE_FIELDS, OPTIONAL_COLUMNS
from vlmdata.core.storage import Location
from vlmdata.shards.reader import KeyedAccess, Sample, ShardReader

RECORDS_FILE = layout.RECORDS


def records_schema(extras: list[str]) -> pa.Schema:
    """key, image_key, the manifest's core columns, then its optional ones (image_key once)."""
    fields = [("key", pa.string()), ("image_key", pa.string())]
    fields += [(n, t) for n, t in CORE_FIELDS if n != "key"]
    fields += [(c, pa.string()) for c in OPTIONAL_COLUMNS if c in extras and c != "image_key"]
    return pa.schema(fields)


def records_table(rows: list[dict[str, Any]], extras: list[str]) -> pa.Table:
    """records/records.parquet's table; `rows` are manifest rows with their final image_key."""
    schema = records_schema(extras)
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)


def _location(out_dir, storage_options: dict[str, Any] | None) -> Location:
    return out_dir if isinstance(out_dir, Location) else Location(out_dir, storage_options)


def load_records(
    out_dir: str | os.PathLike | Location,
    columns: list[str] | None = None,
    storage_options: dict[str, Any] | None = None,
) -> pl.DataFrame:
    """The records table (OUT may be an fsspec URL)."""
    root = _location(out_dir, storage_options)
    try:
        data = root.read_bytes(RECORDS_FILE)
    except FileNotFoundError:
        raise DataError(f"no {RECORDS_FILE} here: not a shard folder", file=str(root)) from None
    return pl.read_parquet(io.BytesIO(data), columns=columns)


def record_meta(row: dict[str, Any]) -> dict[str, Any]:
    """A record's non-null fields: what a recipe reads as `sample["meta"]`."""
    return {k: v for k, v in row.items() if v is not None}


def records_of_sample(sample: Sample) -> Iterator[Sample]:
    """The records of one streamed tar sample, each as a Sample carrying the image bytes."""
    meta = sample.get("meta") or {}
    listed = meta.get("records")
    if not listed:
        raise DataError(f"sample {sample['key']!r}: its KEY.json lists no `records`")
    if len(listed) == 1 and listed[0].get("key") == sample["key"]:
        own = {k: v for k, v in meta.items() if k != "records" and v is not None}
        yield {**sample, "meta": own}
        return
    for rec in listed:
        texts = rec.get("texts") or []
        yield {
            "key": rec["key"],
            "image": sample["image"],
            "image_ext": sample["image_ext"],
            "meta": {**record_meta(rec), "image_key": sample["key"]},
            "txt": texts[0] if texts else "",
        }


class RecordReader(KeyedAccess):
    """Random access to records: `reader[i]` is record i as a Sample (key = record key, image =
    its image's bytes from one `pread`, meta = its fields). `filter` is a polars expression over
    record columns, e.g. `pl.col("split") == "entity_train"`. Map-style, like ShardReader.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike | Location,
        filter: pl.Expr | None = None,
        *,
        verify: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        location = _location(out_dir, storage_options)
        self.root = location.local() if location.is_local else location.url
        records = load_records(location)
        try:
            self.records = records.filter(filter) if filter is not None else records
        except pl.exceptions.PolarsError as e:
            raise DataError(f"record filter: {e}", file=str(self.root)) from e
        self.images = ShardReader(location.url, verify=verify, storage_options=location.options)
        try:
            self._image_row = [self.images.row_of(k) for k in self.records["image_key"]]
        except KeyError as e:
            raise DataError(f"a record points at image {e}, which is not in the index",
                            file=str(self.root)) from None  # fmt: skip

    def __len__(self) -> int:
        return self.records.height

    def __getitem__(self, i: int) -> Sample:
        n = self.records.height
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range ({n} records)")
        i = int(i) % n
        row = self.records.row(i, named=True)
        image = self.images[self._image_row[i]]
        texts = row.get("texts") or []
        return {
            "key": row["key"],
            "image": image["image"],
            "image_ext": image["image_ext"],
            "meta": record_meta(row),
            "txt": texts[0] if texts else "",
        }

    def _lookup_keys(self) -> pl.Series:
        return self.records["key"]

    def close(self) -> None:
        self.images.close()
