"""The writer's placement step takes and holds typed Records (issue 22): what the gate places,
what a sample's KEY.json / KEY.txt are made from, what records.parquet and a reject receive.
Oracles follow docs/DESIGN.md ("Records", "The data path"), not the code under test."""

import json

import pytest

from vlmdata.core.record import Record
from vlmdata.shards.group import Gate
from vlmdata.shards.images import ImageInfo
from vlmdata.shards.prepare import ImageProblem, Prepared

COLUMNS = ("key", "source", "split", "path", "texts", "image_key")  # a manifest's columns


class Rejects:
    """Stands in for RejectWriter: the gate only calls `add`."""

    def __init__(self):
        self.rows = []

    def add(self, reason, **fields):
        self.rows.append({"reason": reason, **fields})


def prepared(digest: str) -> Prepared:
    return Prepared(ImageInfo("jpg", 8, 8), 700, "f" * 64, digest * 64)


def test_gate_refuses_a_row_dict():
    gate = Gate(Rejects(), "m.parquet", "shard")
    row = {"key": "a", "path": "a.jpg", "texts": ["x"]}
    with pytest.raises(TypeError, match=r"line 1: the gate places Records, not dict"):
        gate.admit(row, COLUMNS, 1, prepared("a"))


def test_records_sharing_an_image_make_one_sample_of_records():
    rejects = Rejects()
    gate = Gate(rejects, "m.parquet", "shard")
    first = Record(key="q1", source="llava", split="train", path="i.jpg", texts=["A", "B"],
                   image_key="img")  # fmt: skip
    second = Record(key="q2", source="llava", split="train", path="i.jpg", texts=["C"],
                    image_key="img")  # fmt: skip
    other = Record(key="q3", source="llava", split="train", path="j.jpg", texts=["D"],
                   image_key="img")  # fmt: skip
    sample = gate.admit(first, COLUMNS, 1, prepared("a"))
    assert gate.admit(second, COLUMNS, 2, prepared("a")) is None  # joined
    assert gate.admit(other, COLUMNS, 3, ImageProblem("missing", "no file")) is None
    assert gate.close() == [sample]
    assert sample.record is first and sample.records == [second] and sample.key == "img"

    # records.parquet's rows: the placed Records, image_key = the sample's key
    assert [(r.key, r.image_key, r.texts) for r in gate.records] == [
        ("q1", "img", ["A", "B"]),
        ("q2", "img", ["C"]),
    ]
    assert all(type(r) is Record for r in gate.records)

    # KEY.json: the first record's columns with key = the sample key, plus every record's
    # columns (image_key left out) in manifest order; KEY.txt: the first text
    sample.seal()
    top = {"key": "img", "source": "llava", "split": "train", "path": "i.jpg",
           "texts": ["A", "B"], "image_key": "img"}  # fmt: skip
    entries = [
        {"key": "q1", "source": "llava", "split": "train", "path": "i.jpg", "texts": ["A", "B"]},
        {"key": "q2", "source": "llava", "split": "train", "path": "i.jpg", "texts": ["C"]},
    ]
    assert json.loads(sample.json) == {**top, "records": entries}
    assert sample.txt == b"A" and sample.n_records == 2

    # the conflicting record is rejected with its manifest columns as the record
    (reject,) = rejects.rows
    assert (reject["reason"], reject["line"], reject["key"]) == ("image_key_conflict", 3, "q3")
    assert reject["record"] == {"key": "q3", "source": "llava", "split": "train",
                                "path": "j.jpg", "texts": ["D"], "image_key": "img"}  # fmt: skip


@pytest.mark.parametrize("with_image_key", [True, False])
def test_image_key_pass_reads_what_the_records_say(with_image_key):
    """The first pass reads image keys from Arrow columns, the gate's pass from Records: both
    must give each row's image as the one rule says (image_key, else the key)."""
    import pyarrow as pa

    from vlmdata.shards.plan import ManifestRecords

    columns = {"key": ["a", "b", "c"], "path": ["1.jpg", None, "3.jpg"], "texts": [["x"]] * 3}
    if with_image_key:
        columns["image_key"] = [None, "img", None]
    rows = ManifestRecords(pa.table(columns))
    rows.ROWS = 2  # two batches
    want = [("a", "1.jpg"), ("img" if with_image_key else "b", None), ("c", "3.jpg")]
    assert list(rows.image_refs()) == want
    assert [(r.stored_under, r.path) for r, _ in rows] == want
    assert {cols for _, cols in rows} == {tuple(c for c in ("key", "path", "texts", "image_key")
                                               if c in columns)}  # fmt: skip
