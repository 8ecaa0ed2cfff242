"""One sample's tar members and where each lands in the shard.

A sample is one stored image: `KEY.<jpg|png|webp>`, `KEY.json`, `KEY.txt`, in that order.
KEY.json holds the fields of the image's first record and `records`: every record on it, in
manifest order, each with its own `key` (docs/DESIGN.md, "Records"); the same fields in every
sample, null where a record has none; core/record.py makes it from Records. Because headers are
fixed-size, offsets follow from the member sizes alone: the index is computed from the plan,
before (or without) writing any bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from vlmdata.core.record import FIELDS, Record, json_member, sample_json
from vlmdata.shards.tarfmt import header_size, member_header, padding

META_FIELDS = FIELDS  # KEY.json's fields: the record's (core/record.py)


def json_bytes(key: str, records: Sequence[Record], columns: Sequence[str]) -> bytes:
    """KEY.json of the image sample `key`: `records` are every record on the image in manifest
    order (the first gives the top-level fields), `columns` the manifest's. Every record
    carries those columns, null included, so every sample of a shard set has the same fields
    (readers that infer columns from the first samples, like HF `datasets`, drop none)."""
    return json_member(sample_json(key, records, columns))


def txt_bytes(record: Record) -> bytes:
    """KEY.txt: the record's first text."""
    return record.txt.encode("utf-8")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Layout:
    """Byte positions of one sample in its shard (data offsets, not header offsets)."""

    offset: int
    size: int
    members: dict[str, tuple[int, int]]  # "image"|"json"|"txt" -> (data offset, size)


def member_names(key: str, image_ext: str) -> dict[str, str]:
    return {"image": f"{key}.{image_ext}", "json": f"{key}.json", "txt": f"{key}.txt"}


def layout(key: str, image_ext: str, sizes: dict[str, int], start: int) -> Layout:
    """Where the sample's members go when the sample starts at byte `start` of the shard."""
    pos = start
    members = {}
    for role, name in member_names(key, image_ext).items():
        pos += header_size(name)
        members[role] = (pos, sizes[role])
        pos += sizes[role] + padding(sizes[role])
    return Layout(start, pos - start, members)


_ZEROS = bytes(512)


def sample_pieces(key: str, image_ext: str, parts: dict[str, bytes]) -> list[bytes]:
    """The sample's tar bytes as three pieces for one writev, matching `layout`: the image's
    header, the image (not copied), then everything after it joined (its padding, the small
    json and txt members): few pieces to hash and write per sample (this runs per image)."""
    names = member_names(key, image_ext)
    image, js, txt = parts["image"], parts["json"], parts["txt"]
    tail = (
        _ZEROS[: padding(len(image))],
        member_header(names["json"], len(js)),
        js,
        _ZEROS[: padding(len(js))],
        member_header(names["txt"], len(txt)),
        txt,
        _ZEROS[: padding(len(txt))],
    )
    return [member_header(names["image"], len(image)), image, b"".join(tail)]
