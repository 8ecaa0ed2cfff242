"""Records onto images: which stored image each manifest record lands on, or why it cannot.

A manifest row is a record; its image is named by `image_key` (null: the record's own key).
Records are placed in manifest order, each by the first rule that applies:

1. its key is malformed (`bad_key`) or taken (`duplicate_key`), its texts are unusable
   (`empty_text`, `wrong_type`), its image_key is malformed, or its split cannot name a shard
   folder (`bad_split`);
2. its image_key already names a stored image: it joins it (`image_key_conflict` when it names
   another file or URL for that image key);
3. its image failed a check: that reason (every record of a bad image is counted);
4. its bytes equal a stored image under another image key: it joins that image where the
   source shares images (`SHARED_IMAGE_SOURCES`, or `--duplicate-images share`), else it is a
   `duplicate_image` reject (retrieval sets: one picture under two ids = two right answers);
5. otherwise it opens a new image sample, keyed by its image_key.

So every distinct image's bytes are written once, and no record is lost for sharing one.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from typing import Any, Protocol

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import duplicate_image_rule, key_problem, texts_problem
from vlmdata.core.rejects import RejectWriter
from vlmdata.shards.output import split_problem
from vlmdata.shards.prepare import ImageProblem, Prepared
from vlmdata.shards.samples import json_bytes, txt_bytes
from vlmdata.shards.spill import Slot, Spill, unpack_slot

Row = dict[str, Any]  # a manifest row (one record), as read
Problem = tuple[str, str]  # (reject reason, detail)


# one shared field-name tuple per set of row fields, with where its interned fields are
_NAMES: dict[tuple[str, ...], tuple[tuple[str, ...], tuple[int, ...]]] = {}
_SHARED_VALUES = ("source", "split")  # few distinct values: one string object each


def _names_of(row: Row) -> tuple[tuple[str, ...], tuple[int, ...]]:
    names = tuple(row)
    found = _NAMES.get(names)
    if found is None:
        shared = tuple(i for i, k in enumerate(names) if k in _SHARED_VALUES)
        found = _NAMES[names] = (names, shared)
    return found


@dataclass(slots=True)
class Planned:
    """An image sample: its first record's row (its fields are the sample's, but its key is
    `key`, the image key), the checked image and the records after the first (rows as read: no
    copy per record). `seal()` fixes the KEY.json / KEY.txt bytes once all its records are
    known (and their sha256 digests); the planned writer then moves the bytes to its spill file
    (`spill`), the streamed writer writes them at once. Image bytes are read again when
    writing. One is held per image, so it is compact: slots, and the first row as a tuple of
    values beside a field-name tuple shared by every sample (`row` makes the dict again)."""

    names: tuple[str, ...]
    values: tuple[Any, ...]
    prepared: Prepared
    records: list[Row] = field(default_factory=list)  # the 2nd record onwards, until release()
    json: bytes = b""
    txt: bytes = b""
    ref: Any = None  # where the image source finds the image (see image_sources.py)
    n_records: int = 0  # records on it, set by seal() (the list is dropped once json is made)
    image_key: str | None = None  # the sample's key when it is not row["key"]
    digests: bytes = b""  # sha256 of json, then of txt (set by seal)
    slot: Slot | None = None  # where spill() put json + txt

    @classmethod
    def of(cls, row: Row, prepared: Prepared, **fields: Any) -> Planned:
        names, shared = _names_of(row)
        values = list(row.values())
        for i in shared:
            if type(values[i]) is str:
                values[i] = sys.intern(values[i])
        return cls(names, tuple(values), prepared, **fields)

    @property
    def row(self) -> Row:
        return dict(zip(self.names, self.values, strict=True))

    def get(self, name: str) -> Any:
        """One field of the first record (None when the row has no such field)."""
        try:
            return self.values[self.names.index(name)]
        except ValueError:
            return None

    @property
    def key(self) -> str:
        return self.get("key") if self.image_key is None else self.image_key

    @property
    def sizes(self) -> dict[str, int]:
        if self.slot is not None:
            _, nj, nt = unpack_slot(self.slot)
            return {"image": self.prepared.size, "json": nj, "txt": nt}
        return {"image": self.prepared.size, "json": len(self.json), "txt": len(self.txt)}

    def member_sha256(self) -> tuple[str, str]:
        """Hex sha256 of KEY.json and KEY.txt (index columns, the shard digest)."""
        return self.digests[:32].hex(), self.digests[32:].hex()

    def seal(self) -> Planned:
        row = self.row
        self.json = json_bytes({**row, "key": self.key}, [row, *self.records])
        self.txt = txt_bytes(row)
        self.n_records = 1 + len(self.records)
        return self._digest()

    def _digest(self) -> Planned:
        self.digests = hashlib.sha256(self.json).digest() + hashlib.sha256(self.txt).digest()
        return self

    def spill(self, spill: Spill) -> None:
        """Move the json / txt bytes to the spill file (the plan keeps their slot)."""
        self.slot = spill.put(self.json, self.txt)
        self.json = self.txt = b""

    def release(self) -> None:
        """Drop the record dicts once KEY.json is made: records.parquet has them (as Arrow)."""
        self.records = []


class RecordSink(Protocol):
    """Where placed records go: a list, or tables.ArrowRows (records held as Arrow)."""

    def append(self, row: Row) -> None: ...

    def __len__(self) -> int: ...


def image_key_of(row: Row, grouped: bool = True) -> Any:
    """The key of the image sample a record's image is stored under."""
    ik = row.get("image_key") if grouped else None
    return ik if ik is not None else row.get("key")


class Gate:
    """Places records in input order (rules in the module doc); writes and counts rejects.

    `grouped=False` (streamed writing, where a written sample cannot take more records) stores
    every record's image on its own and rejects byte-identical images as `duplicate_image`.
    """

    def __init__(
        self,
        rejects: RejectWriter,
        file: str,
        stage: str,
        duplicate_images: str | None = None,
        *,
        grouped: bool = True,
        records: RecordSink | None = None,
    ) -> None:
        self.rejects, self.file, self.stage = rejects, file, stage
        self.rule, self.grouped = duplicate_images, grouped
        self.keys: set[str] = set()  # record keys placed
        self.images: dict[str, Planned] = {}  # image key -> its sample
        self.by_hash: dict[str, str] = {}  # source sha256 -> image key
        self.samples: list[Planned] = []  # in the order they were opened
        self.opened = 0  # image samples opened so far
        self.records: RecordSink = [] if records is None else records  # `image_key` filled in

    def close(self) -> list[Planned]:
        """The samples, once every row is placed; drops the lookup state (keys, image keys,
        hashes) the rules needed."""
        samples, self.samples = self.samples, []
        self.keys, self.images, self.by_hash = set(), {}, {}
        return samples

    def reject(self, row: Row, line: int, reason: str, detail: str) -> None:
        key = row.get("key") if isinstance(row.get("key"), str) else None
        self.rejects.add(
            reason, stage=self.stage, file=self.file, line=line, key=key, detail=detail, record=row
        )

    def _problem(self, row: Row, ik: Any) -> Problem | None:
        """The record's own problem (key, texts, image key), checked before its image's."""
        key = row.get("key")
        if (problem := key_problem(key)) is not None:
            return "bad_key", problem
        if key in self.keys:
            return "duplicate_key", f"key {key!r} seen before"
        if ik != key and (problem := key_problem(ik)) is not None:
            return "bad_key", f"image_key: {problem}"
        if (problem := split_problem(row.get("split"))) is not None:
            return "bad_split", problem
        return texts_problem(row.get("texts"))

    def _place(self, row: Row, ik: Any, result: Prepared | ImageProblem) -> Planned | Problem:
        """The stored sample the record joins (rules 2 and 4), or why it cannot be placed;
        a new sample is the caller's (rule 5): None."""
        sample = self.images.get(ik)
        if sample is not None:
            if (theirs := _source_of(sample.row)) == _source_of(row):
                return sample
            return ("image_key_conflict", f"image_key {ik!r} is already "
                    f"{theirs!r}, not {_source_of(row)!r}")  # fmt: skip
        if isinstance(result, ImageProblem):
            return result.reason, result.detail
        other = self.by_hash.get(result.source_sha256)
        if other is None:
            return None
        if self.grouped and duplicate_image_rule(row.get("source"), self.rule) == "share":
            return self.images[other]
        return "duplicate_image", f"same bytes as key {other!r}"

    def admit(self, row: Row, line: int, result: Prepared | ImageProblem) -> Planned | None:
        """Place one record; the NEW sample it opened, else None (joined one, or rejected)."""
        ik = image_key_of(row, self.grouped)
        placed = self._problem(row, ik) or self._place(row, ik, result)
        if isinstance(placed, tuple):
            self.reject(row, line, *placed)
            return None
        self.keys.add(row["key"])
        if placed is not None:
            placed.records.append(row)
            self.records.append({**row, "image_key": placed.key})
            return None
        assert isinstance(result, Prepared)
        sample = Planned.of(row, result, image_key=None if ik == row["key"] else ik)
        self.images[ik] = sample
        self.by_hash[result.source_sha256] = ik
        self.samples.append(sample)
        self.opened += 1
        self.records.append({**row, "image_key": sample.key})
        return sample


def _source_of(row: dict) -> str | None:
    """The file or URL a record's image comes from."""
    return row.get("path") or row.get("url")


def text_copies(p: Planned, taken: set[str]) -> list[Planned]:
    """The every-text layout: a sealed sample's copies, one per further text of its first
    record (key `KEY_tJ`, KEY.txt = text J, the same image and records), so a peer reading one
    txt per sample sees every text. `taken` are the record keys a copy's key must not repeat."""
    out: list[Planned] = []
    first = p.row
    for j, text in enumerate((first.get("texts") or [])[1:], 1):
        key = f"{p.key}_t{j}"
        if key in taken:
            raise DataError(f"--every-text: sample key {key!r} is also a record key")
        row = {**first, "key": key}
        copy = Planned.of(row, p.prepared, ref=p.ref, n_records=p.n_records)
        copy.json = json_bytes(row, [first, *p.records])
        copy.txt = text.encode("utf-8")
        out.append(copy._digest())
    return out
