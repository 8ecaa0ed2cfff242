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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vlmdata.core.manifest import duplicate_image_rule, key_problem, texts_problem
from vlmdata.core.record import Record
from vlmdata.core.rejects import RejectWriter
from vlmdata.shards.output import split_problem
from vlmdata.shards.prepare import ImageProblem, Prepared
from vlmdata.shards.samples import json_bytes, txt_bytes
from vlmdata.shards.spill import Slot, Spill, unpack_slot
from vlmdata.shards.tables import ArrowRows

Columns = tuple[str, ...]  # the manifest columns a record was read with (KEY.json's fields)
Problem = tuple[str, str]  # (reject reason, detail)


@dataclass(slots=True)
class Planned:
    """An image sample: its first `record` (its fields are the sample's, but its key is `key`,
    the image key), the manifest `columns` it was read with, the checked image and the records
    after the first (as read: no copy per record). `seal()` fixes the KEY.json / KEY.txt bytes
    once all its records are known (and their sha256 digests); the planned writer then moves
    the bytes to its spill file (`spill`), the streamed writer writes them at once. Image bytes
    are read again when writing. One is held per image, so it is compact: slots, one slotted
    Record, a columns tuple shared by every sample, no list until a second record joins."""

    record: Record
    columns: Columns
    prepared: Prepared
    records: list[Record] | None = None  # the 2nd record onwards
    json: bytes = b""
    txt: bytes = b""
    ref: Any = None  # where the image source finds the image (see image_sources.py)
    n_records: int = 0  # records on it, set by seal() (the list is dropped once json is made)
    image_key: str | None = None  # the sample's key when it is not record.key
    digests: bytes = b""  # sha256 of json, then of txt (set by seal)
    slot: Slot | None = None  # where spill() put json + txt

    @property
    def key(self) -> str:
        return self.record.key if self.image_key is None else self.image_key

    @property
    def split(self) -> Any:
        """The sample's split (its first record's): the shard folder it goes to."""
        return self.record.split

    @property
    def all_records(self) -> list[Record]:
        return [self.record, *(self.records or ())]

    def join(self, record: Record) -> None:
        """Add a later record on this image."""
        if self.records is None:
            self.records = [record]
        else:
            self.records.append(record)

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
        self.json = json_bytes(self.key, self.all_records, self.columns)
        self.txt = txt_bytes(self.record)
        self.n_records = 1 + len(self.records or ())
        return self._digest()

    def _digest(self) -> Planned:
        self.digests = hashlib.sha256(self.json).digest() + hashlib.sha256(self.txt).digest()
        return self

    def spill(self, spill: Spill) -> None:
        """Move the json / txt bytes to the spill file (the plan keeps their slot)."""
        self.slot = spill.put(self.json, self.txt)
        self.json = self.txt = b""


class RecordSink(Protocol):
    """Where placed records go, each with its sample's key: PlacedRecords, or RecordRows."""

    def place(self, record: Record, image_key: str) -> None: ...

    def __len__(self) -> int: ...


class PlacedRecords(list):
    """Placed Records in a list (the streamed writer's records.parquet rows)."""

    def place(self, record: Record, image_key: str) -> None:
        self.append(record.placed_on(image_key))


class RecordRows(ArrowRows):
    """Placed records held as Arrow: the planned writer's records.parquet rows (issue 23); no
    Record is made per placed record, only its row."""

    def place(self, record: Record, image_key: str) -> None:
        row = record.row()
        row["image_key"] = image_key
        self.append(row)


def image_key_of(record: Record, grouped: bool = True) -> str:
    """The key of the image sample a record's image is stored under (streamed writing stores
    every record's image on its own: its key)."""
    return record.stored_under if grouped else record.key


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
        self.records: RecordSink = PlacedRecords() if records is None else records

    def close(self) -> list[Planned]:
        """The samples, once every row is placed; drops the lookup state (keys, image keys,
        hashes) the rules needed."""
        samples, self.samples = self.samples, []
        self.keys, self.images, self.by_hash = set(), {}, {}
        return samples

    def reject(self, record: Record, columns: Columns, line: int, reason: str, detail: str) -> None:
        key = record.key if isinstance(record.key, str) else None
        self.rejects.add(
            reason,
            stage=self.stage,
            file=self.file,
            line=line,
            key=key,
            detail=detail,
            record=record.row(columns),
        )

    def _problem(self, record: Record, ik: Any) -> Problem | None:
        """The record's own problem (key, texts, image key), checked before its image's."""
        return record_problem(record, ik, lambda key: key in self.keys)

    def _place(self, record: Record, ik: Any, result: Prepared | ImageProblem) -> Planned | Problem:
        """The stored sample the record joins (rules 2 and 4), or why it cannot be placed;
        a new sample is the caller's (rule 5): None."""
        sample = self.images.get(ik)
        if sample is not None:
            if (theirs := source_of(sample.record)) == source_of(record):
                return sample
            return ("image_key_conflict", f"image_key {ik!r} is already "
                    f"{theirs!r}, not {source_of(record)!r}")  # fmt: skip
        if isinstance(result, ImageProblem):
            return result.reason, result.detail
        other = self.by_hash.get(result.source_sha256)
        if other is None:
            return None
        if self.grouped and duplicate_image_rule(record.source, self.rule) == "share":
            return self.images[other]
        return "duplicate_image", f"same bytes as key {other!r}"

    def admit(
        self, record: Record, columns: Columns, line: int, result: Prepared | ImageProblem
    ) -> Planned | None:
        """Place one record (read with the manifest `columns`); the NEW sample it opened, else
        None (joined one, or rejected)."""
        if not isinstance(record, Record):
            raise TypeError(f"line {line}: the gate places Records, not {type(record).__name__}")
        ik = image_key_of(record, self.grouped)
        placed = self._problem(record, ik) or self._place(record, ik, result)
        if isinstance(placed, tuple):
            self.reject(record, columns, line, *placed)
            return None
        self.keys.add(record.key)
        if placed is not None:
            placed.join(record)
            self.records.place(record, placed.key)
            return None
        assert isinstance(result, Prepared)
        sample = Planned(record, columns, result, image_key=None if ik == record.key else ik)
        self.images[ik] = sample
        self.by_hash[result.source_sha256] = ik
        self.samples.append(sample)
        self.opened += 1
        self.records.place(record, sample.key)
        return sample


def record_problem(record: Record, ik: Any, taken: Callable[[str], bool]) -> Problem | None:
    """Rule 1: the record's own problem (key, image key, split, texts), checked before its
    image's; `taken(key)`: a record with that key was placed already."""
    key = record.key
    if (problem := key_problem(key)) is not None:
        return "bad_key", problem
    if taken(key):
        return "duplicate_key", f"key {key!r} seen before"
    if ik != key and (problem := key_problem(ik)) is not None:
        return "bad_key", f"image_key: {problem}"
    if (problem := split_problem(record.split)) is not None:
        return "bad_split", problem
    return texts_problem(record.texts)


def source_of(record: Record) -> str | None:
    """The file or URL a record's image comes from."""
    return record.path or record.url
