"""Records: the unit of training and evaluation, many per stored image (see docs/DESIGN.md).

A shard folder holds each distinct image once, as a WebDataset sample `IMAGE_KEY.*`, and
`records/records.parquet`: one row per record (manifest order) with its own unique `key`, the
`image_key` of the sample holding its image, and the record's columns (split, texts, question,
answers, conversations, entity_id ...): the one place records are stored. The sample's KEY.json
lists the same records under `records` (written from the same `Record`s), for a peer reading
only the tars.

`RecordReader` is map-style over records: the records from records.parquet, each record's image
from one `pread` of its bytes alone (the index's image offset; KEY.json is not read).
`records_of_sample` expands a streamed tar sample into its records. Both make a record's
Sample with `Record.sample` (core/record.py), so the two training paths see the same dicts.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import CORE_FIELDS, OPTIONAL_COLUMNS
from vlmdata.core.record import Record, records_of_json, records_to_arrow
from vlmdata.core.storage import Location
from vlmdata.shards.reader import KeyedAccess, Sample, ShardReader, iter_tar_samples

RECORDS_FILE = layout.RECORDS


def records_schema(extras: list[str]) -> pa.Schema:
    """key, image_key, the manifest's core columns, then its optional ones (image_key once)."""
    fields = [("key", pa.string()), ("image_key", pa.string())]
    fields += [(n, t) for n, t in CORE_FIELDS if n != "key"]
    fields += [(c, pa.string()) for c in OPTIONAL_COLUMNS if c in extras and c != "image_key"]
    return pa.schema(fields)


def records_table(records: list[Record], extras: list[str]) -> pa.Table:
    """records/records.parquet's table; `records` are placed (image_key: their sample's)."""
    return records_to_arrow(records, records_schema(extras))


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


def _records_on(sample: Sample) -> list[Record]:
    records = records_of_json(sample.get("meta") or {}, sample["key"])
    if not records:
        raise DataError(f"sample {sample['key']!r}: its KEY.json lists no `records`")
    return records


def records_of_sample(sample: Sample) -> Iterator[Sample]:
    """The records of one streamed tar sample (its KEY.json's `records`), each as the Sample
    `RecordReader` gives for it, carrying the image bytes."""
    for record in _records_on(sample):
        yield record.sample(sample["image"], sample["image_ext"])


def iter_records(
    path: str | os.PathLike, storage_options: dict[str, Any] | None = None
) -> Iterator[tuple[Record, bytes, str]]:
    """(record, image bytes, image format) for every record of one tar, in order: the
    streaming twin of `RecordReader` (sequential reads; records from KEY.json)."""
    for sample in iter_tar_samples(path, storage_options):
        for record in _records_on(sample):
            yield record, sample["image"], sample["image_ext"]


def image_rows(records: pl.DataFrame, images: ShardReader, where: str) -> np.ndarray:
    """The index row of each record's image (int64, record order): a join, no dict per key."""
    index = pl.DataFrame({"image_key": images.index["key"]}).with_row_index("_row")
    rows = records.select("image_key").join(
        index, on="image_key", how="left", maintain_order="left"
    )
    missing = rows.filter(pl.col("_row").is_null())
    if missing.height:
        raise DataError(f"a record points at image {missing['image_key'][0]!r}, which is not in "
                        "the index", file=where)  # fmt: skip
    return rows["_row"].to_numpy().astype(np.int64)


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
        self._image_row = image_rows(self.records, self.images, str(self.root))

    def __len__(self) -> int:
        return self.records.height

    def record(self, i: int) -> Record:
        """Record i (placed: its image_key is its image's sample key)."""
        n = self.records.height
        if not -n <= i < n:
            raise IndexError(f"record {i} out of range ({n} records)")
        return Record.from_row(self.records.row(int(i) % n, named=True))

    def __getitem__(self, i: int) -> Sample:
        record = self.record(i)
        image, ext = self.images.image(int(self._image_row[int(i) % len(self)]))
        return record.sample(image, ext)

    def _lookup_keys(self) -> pl.Series:
        return self.records["key"]

    def close(self) -> None:
        self.images.close()
