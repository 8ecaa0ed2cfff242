"""Pass 3 of the plan: every sample's KEY.json / KEY.txt made once placement is over, WINDOW
samples at a time, and moved to the spill file; then the samples as the layout and the
writing tasks read them back (`SampleViews`), a window at a time (issue 23).

A sample's records are the rows that joined it, in row order: an int64 per row (placement.py)
sorted by sample gives them, and the rows are read back from the manifest in one `take` per
window. So no sample stays open with its Records while the rows are placed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from vlmdata.core.errors import DataError
from vlmdata.core.record import Record
from vlmdata.shards.compact import DiskRows, value_hashes
from vlmdata.shards.placement import Facts, Images, Placer, Rows, Samples
from vlmdata.shards.planrows import image_ref
from vlmdata.shards.prepare import Prepared
from vlmdata.shards.samples import json_bytes, txt_bytes
from vlmdata.shards.spill import Slot, Spill, unpack_slot

KEPT = np.dtype(
    [
        ("sample", "<i8"),  # the image sample (Samples row)
        ("copy", "<i4"),  # 0, or J of an --every-text copy KEY_tJ
        ("slot", "u1", (16,)),  # where KEY.json + KEY.txt are in the spill file
        ("digests", "u1", (64,)),  # their sha256
        ("n_records", "<i4"),
    ]
)

WINDOW = 4096  # samples sealed, laid out or given to a writing task per read of their rows


def seal_samples(placer: Placer, spill: Spill, every_text: bool) -> DiskRows:
    """The kept samples in order (each image sample, then its --every-text copies), with their
    KEY.json / KEY.txt in the spill file."""
    n = len(placer.samples)
    rows_sorted, bounds = rows_by_sample(placer.sample_of_row, n)
    kept = DiskRows(KEPT)
    for a in range(0, n, WINDOW):
        b = min(n, a + WINDOW)
        taken = placer.rows.take(rows_sorted[bounds[a] : bounds[b]])
        cuts = (bounds[a : b + 1] - bounds[a]).tolist()
        groups = [taken[cuts[i] : cuts[i + 1]] for i in range(b - a)]
        clashes = _copy_clashes(groups, placer) if every_text else set()
        for s, group in zip(range(a, b), groups, strict=True):
            _seal_one(kept, spill, s, group, every_text, clashes)
    return kept


def rows_by_sample(owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The placed rows sorted by their sample (row order within one), and where each of the
    n samples' rows start (n + 1 bounds): the stable sort of `owner`, in row numbers of
    owner's width (4 bytes unless the rows need 8)."""
    placed = np.flatnonzero(owner >= 0).astype(owner.dtype)
    order = np.argsort(owner[placed], kind="stable")
    rows_sorted = placed[order]
    del placed, order
    bounds = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(owner[owner >= 0], minlength=n), out=bounds[1:])
    return rows_sorted, bounds


def _copy_keys(first: Record) -> list[str]:
    return [f"{first.stored_under}_t{j}" for j in range(1, len(first.texts or ()))]


def _copy_clashes(groups: list[list], placer: Placer) -> set[str]:
    """The window's --every-text copy keys that are also a record key or an image key."""
    keys = [k for group in groups for k in _copy_keys(group[0][0])]
    if not keys:
        return set()
    hi, lo = value_hashes(keys)
    clash = placer.keys.contains(hi, lo)
    if placer.images.keys is not None:
        clash |= placer.images.keys.contains(hi, lo)
    return {k for k, c in zip(keys, clash.tolist(), strict=True) if c}


def _seal_one(kept: DiskRows, spill: Spill, s: int, group: list, every_text: bool, clashes) -> None:
    first, columns = group[0]
    records = [r for r, _ in group]
    key = first.stored_under
    _put(kept, spill, s, 0, json_bytes(key, records, columns), txt_bytes(first), len(records))
    if not every_text:
        return
    for j, (copy, text) in enumerate(zip(_copy_keys(first), first.texts[1:], strict=True), 1):
        if copy in clashes:
            raise DataError(f"--every-text: sample key {copy!r} is also a record key")
        js = json_bytes(copy, records, columns)
        _put(kept, spill, s, j, js, text.encode("utf-8"), len(records))


def _put(kept: DiskRows, spill: Spill, s: int, j: int, js: bytes, txt: bytes, n: int) -> None:
    digests = hashlib.sha256(js).digest() + hashlib.sha256(txt).digest()
    slot = np.frombuffer(spill.put(js, txt), dtype=np.uint8)
    kept.append((s, j, slot, np.frombuffer(digests, dtype=np.uint8), n))


@dataclass(slots=True)
class SampleView:
    """One kept sample as the layout and a writing task read it (made per window, dropped
    after): what plan.index_row, shard_digest and a ShardJob entry take."""

    key: str
    record: Record
    prepared: Prepared | Facts  # Facts unless made for writing
    slot: Slot
    digests: bytes
    n_records: int
    ref: Any = None

    @property
    def sizes(self) -> dict[str, int]:
        _, nj, nt = unpack_slot(self.slot)
        return {"image": self.prepared.size, "json": nj, "txt": nt}

    def member_sha256(self) -> tuple[str, str]:
        return self.digests[:32].hex(), self.digests[32:].hex()


@dataclass
class SampleViews:
    """What the layout and the writing tasks need of a finished placement: the kept samples
    (KEPT rows on disk; their image samples in memory), the samples, the rows."""

    kept: DiskRows
    kept_samples: np.ndarray  # the image sample of each kept sample
    samples: Samples
    images: Images
    rows: Rows
    refs: Any  # a sequence, an object with `of_record(row, record)`, or None (planrows.image_ref)

    def __len__(self) -> int:
        return len(self.kept_samples)

    def split_codes(self) -> np.ndarray:
        """Each kept sample's split code (its image sample's), HOT read 65,536 at a time."""
        codes = np.empty(len(self.kept_samples), dtype=np.int32)
        for a in range(0, len(codes), 1 << 16):
            which = self.kept_samples[a : a + (1 << 16)].astype(np.int64)
            codes[a : a + len(which)] = self.samples.hot.read(which)["split"]
        return codes

    def views(self, which: np.ndarray, for_writing: bool = False) -> list[SampleView]:
        """The kept samples numbered `which` (their image's file and ref when writing)."""
        k = self.kept.read(which)
        hot, cold = self.samples.hot.read(k["sample"]), self.samples.cold.read(k["sample"])
        firsts = [r for r, _ in self.rows.take(hot["row"])]
        refs: list[Any] = [None] * len(k)
        if for_writing:
            refs = self._refs(hot["row"], cold["image"], firsts)
        prepared = self.samples.prepared(cold, with_file=for_writing)
        slots, digests = k["slot"].tobytes(), k["digests"].tobytes()
        copies, counts = k["copy"].tolist(), k["n_records"].tolist()
        out = []
        for i, record in enumerate(firsts):
            key = record.stored_under if not copies[i] else f"{record.stored_under}_t{copies[i]}"
            slot, dig = slots[16 * i : 16 * i + 16], digests[64 * i : 64 * i + 64]
            out.append(SampleView(key, record, prepared[i], slot, dig, counts[i], refs[i]))
        return out

    def _refs(self, rows: np.ndarray, images: np.ndarray, firsts: list[Record]) -> list[Any]:
        """Each sample's image ref: its image's first row's (the row that was checked)."""
        image_rows = self.images.first_rows(images)
        records = list(firsts)  # the image's first row is most often the sample's
        other = np.flatnonzero(image_rows != rows)
        for i, (record, _) in zip(other.tolist(), self.rows.take(image_rows[other]), strict=True):
            records[i] = record
        return [image_ref(self.refs, r, record)
                for r, record in zip(image_rows.tolist(), records, strict=True)]  # fmt: skip
