"""THE record type: one `Record` from the manifest through KEY.json and records.parquet to the
readers and the training sample (docs/DESIGN.md, "The data path").

Its fields are the manifest's columns (`core/manifest.py`: CORE_FIELDS, then OPTIONAL_COLUMNS),
derived from that one declaration, so a column added there is a field here. A frozen, slotted
dataclass (144 bytes plus its values; made in about three times the time of a dict of the same
fields, the price of frozen): Records are made a batch or a sample at a time and never held for
a whole data set (issue 23); the data set itself stays Arrow.

`image_key` is the one field whose meaning moves along the path, so it is handled here only:
- in a manifest row it names the image a record shares (null: the record's own key);
- once placed on a stored image it is the key of that image's sample, never null
  (records.parquet, `RecordReader`, the streamed records of a tar sample);
- KEY.json's `records` list leaves it out (the sample's key is the image key), and a record
  read back from that list gets it from the sample (`from_json`);
- KEY.json's top level is the sample's first record as written in the manifest, with `key`
  = the sample key (its `image_key` is the manifest's value, null included).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any

import pyarrow as pa

from vlmdata.core.manifest import CORE_FIELDS, OPTIONAL_COLUMNS, manifest_schema

FIELDS: tuple[str, ...] = (*(name for name, _ in CORE_FIELDS), *OPTIONAL_COLUMNS)
SCHEMA = manifest_schema(OPTIONAL_COLUMNS)  # every field as an Arrow column
LIST_FIELDS = frozenset(n for n, t in CORE_FIELDS if pa.types.is_list(t))  # texts
_SHARED_VALUES = ("source", "split")  # few distinct values: one string object each
_VALUES = attrgetter(*FIELDS)  # a record's values in FIELDS order, in one call


def _fields() -> list[tuple[str, Any, Any]]:
    """(name, annotation, default) per manifest column: `key` required, the rest optional."""
    out: list[tuple[str, Any, Any]] = [("key", str, dataclasses.MISSING)]
    for name in FIELDS[1:]:
        kind = "list[str] | None" if name in LIST_FIELDS else "str | None"
        out.append((name, kind, dataclasses.field(default=None)))
    return out


class _RecordMethods:
    """The conversions along the data path; the fields come from `_fields()`."""

    __slots__ = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Record:
        """A record from a manifest / records row (a dict); columns it does not know are
        ignored, columns it lacks are None."""
        return cls(**{f: row[f] for f in FIELDS if f in row})

    @classmethod
    def from_json(cls, entry: Mapping[str, Any], image_key: str) -> Record:
        """A record from KEY.json's `records` list of the sample keyed `image_key`."""
        return cls(**{f: entry.get(f) for f in FIELDS if f != "image_key"}, image_key=image_key)

    def row(self, columns: Sequence[str] = FIELDS) -> dict[str, Any]:
        """This record as a manifest row of `columns` (a reject's `record`, a table row)."""
        if columns is FIELDS:
            return dict(zip(FIELDS, _VALUES(self), strict=True))
        return {c: getattr(self, c) for c in columns}

    def placed_on(self, image_key: str) -> Record:
        """This record once placed on the image sample `image_key` (records.parquet's row)."""
        values = dict(zip(FIELDS, _VALUES(self), strict=True))
        values["image_key"] = image_key
        return type(self)(**values)

    @property
    def stored_under(self) -> str:
        """The key of the image sample holding this record's image."""
        return stored_under(self.key, self.image_key)

    @property
    def txt(self) -> str:
        """The first text (KEY.txt, a Sample's `txt`): "" when there is none."""
        return self.texts[0] if self.texts else ""

    def json_fields(self, columns: Sequence[str]) -> dict[str, Any]:
        """This record in KEY.json's `records` list: the set's `columns`, null included, so
        every sample has the same fields; never `image_key` (the sample key is the image)."""
        return {c: getattr(self, c) for c in columns if c != "image_key"}

    def meta(self) -> dict[str, Any]:
        """Its non-null fields: what a recipe reads as `sample["meta"]`."""
        return {f: v for f in FIELDS if (v := getattr(self, f)) is not None}

    def sample(self, image: bytes, image_ext: str) -> dict[str, Any]:
        """The training / eval sample of this (placed) record with its image's bytes: the dict a
        recipe takes (key, image, image_ext, meta, txt; docs/DESIGN.md, contract 3)."""
        return {
            "key": self.key,
            "image": image,
            "image_ext": image_ext,
            "meta": self.meta(),
            "txt": self.txt,
        }


Record = dataclasses.make_dataclass(
    "Record", _fields(), bases=(_RecordMethods,), frozen=True, slots=True
)
Record.__module__ = __name__
Record.__doc__ = "One record (a caption set, a conversation, a question): the manifest columns."


def stored_under(key: Any, image_key: Any) -> Any:
    """THE image-key rule: a record's image is stored under its `image_key`, else its key."""
    return key if image_key is None else image_key


def columns_of(row: Mapping[str, Any]) -> list[str]:
    """The manifest columns a row carries (its table's), in FIELDS order."""
    return [f for f in FIELDS if f in row]


def sample_json(key: str, records: Sequence[Record], columns: Sequence[str]) -> dict[str, Any]:
    """KEY.json of the sample `key` (the image key, or an --every-text copy's): its first
    record's `columns` as in the manifest, with `key` = the sample key, plus `records`: every
    record on the image in manifest order, each with the same `columns`."""
    meta = {c: getattr(records[0], c) for c in columns}
    meta["key"] = key
    meta["records"] = [r.json_fields(columns) for r in records]
    return meta


def json_member(meta: dict[str, Any]) -> bytes:
    """KEY.json's bytes: sorted keys, no spaces, UTF-8 (stable: the plan digests them)."""
    return json.dumps(meta, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def records_of_json(meta: Mapping[str, Any], image_key: str) -> list[Record]:
    """The records a KEY.json lists, placed on the sample `image_key`."""
    return [Record.from_json(entry, image_key) for entry in meta.get("records") or ()]


def records_from_arrow(data: pa.Table | pa.RecordBatch) -> list[Record]:
    """One Record per row of a manifest or records.parquet batch (columns it lacks: None).
    Call it a batch at a time: the list holds a Python object per row. `source` and `split`
    strings are interned (a few distinct values: the shard plan holds a record per image)."""
    names, n = data.schema.names, data.num_rows
    columns = [_column_values(data, f) if f in names else repeat(None, n) for f in FIELDS]
    return list(map(Record, *columns))  # positional, in FIELDS order: the fastest build


def _column_values(data: pa.Table | pa.RecordBatch, name: str) -> list[Any]:
    values = data.column(name).to_pylist()
    if name in _SHARED_VALUES:
        return [sys.intern(v) if type(v) is str else v for v in values]
    return values


def records_to_arrow(records: Iterable[Record], schema: pa.Schema = SCHEMA) -> pa.Table:
    """records.parquet's table (or any table of record columns; default: every field) from
    Records."""
    rows = list(records)
    return pa.table({n: [getattr(r, n) for r in rows] for n in schema.names}, schema=schema)
