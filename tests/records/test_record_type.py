"""One typed Record from manifest row to KEY.json, records.parquet and the readers
(vlmdata/core/record.py). The oracles are written from docs/DESIGN.md's definitions ("Records",
"The data path"), not from the code: KEY.json = the first record's manifest columns with
`key` = the image key, plus `records` (each record's manifest columns, no `image_key`);
records.parquet = key, image_key (the image's sample key, never null), the manifest columns;
a reader's item = key, the stored image bytes, image_ext, meta (non-null fields, image_key
included), txt (the first text)."""

from __future__ import annotations

import json

import polars as pl
import pyarrow as pa
import pytest

from tests.shards.conftest import image_bytes, write_manifest
from vlmdata.core import layout
from vlmdata.core.manifest import OPTIONAL_COLUMNS, manifest_schema
from vlmdata.core.record import FIELDS, Record, records_from_arrow, records_to_arrow
from vlmdata.shards import RecordReader, ShardReader, iter_samples, records_of_sample, write_shards

EXTRAS = ("image_id", "question", "answers", "conversations", "image_key")
# LLaVA-shaped records (llava_instruct_150k.json: {id, image, conversations}): two name their
# image by image_key, the third has another file with the same bytes (llava shares those)
ROWS = [
    {"key": "c1", "source": "llava", "split": "train", "url": None, "path": "a.jpg",
     "texts": ["a cat", "a small cat"], "image_id": "7", "question": None, "answers": None,
     "conversations": '[{"from":"human","value":"<image>\\nWhat? é"}]', "image_key": "img7"},
    {"key": "c2", "source": "llava", "split": "train", "url": None, "path": "a.jpg",
     "texts": ["the cat"], "image_id": "7", "question": "which?", "answers": '["left"]',
     "conversations": None, "image_key": "img7"},
    {"key": "c3", "source": "llava", "split": "train", "url": None, "path": "copy.jpg",
     "texts": ["cat again"], "image_id": "8", "question": None, "answers": None,
     "conversations": None, "image_key": None},
    {"key": "solo", "source": "llava", "split": "test", "url": None, "path": "b.jpg",
     "texts": ["a dog"], "image_id": "9", "question": None, "answers": None,
     "conversations": None, "image_key": None},
]  # fmt: skip
COLUMNS = ["key", "source", "split", "url", "path", "texts", *EXTRAS]


@pytest.fixture
def sharded(tmp_path):
    images = tmp_path / "img"
    images.mkdir()
    files = {"a.jpg": image_bytes(1), "copy.jpg": image_bytes(1), "b.jpg": image_bytes(2)}
    for name, data in files.items():
        (images / name).write_bytes(data)
    manifest = write_manifest(tmp_path / "m.parquet", ROWS, EXTRAS)
    out = tmp_path / "out"
    write_shards(manifest, images, out, progress=False)
    return out, files


def _without(row: dict, *names: str) -> dict:
    return {k: v for k, v in row.items() if k not in names}


def test_record_fields_are_the_manifest_columns():
    # derived from core/manifest.py's one declaration: a manifest with every optional column
    assert list(FIELDS) == manifest_schema(OPTIONAL_COLUMNS).names
    record = Record(key="k")
    assert all(getattr(record, f) is None for f in FIELDS[1:])
    with pytest.raises(AttributeError):
        record.key = "other"  # frozen
    with pytest.raises(TypeError):
        Record()  # a record has a key


def test_arrow_round_trip_is_exact():
    table = pa.Table.from_pylist(ROWS, manifest_schema(EXTRAS[:-1] + ("image_key",)))
    records = records_from_arrow(table)
    assert [r.key for r in records] == ["c1", "c2", "c3", "solo"]
    assert records_to_arrow(records, table.schema).equals(table)
    assert [r.stored_under for r in records] == ["img7", "img7", "c3", "solo"]


def test_manifest_row_to_key_json_to_records_to_reader(sharded):
    out, files = sharded
    # KEY.json, oracle from DESIGN: the first record's manifest columns, key = image key
    index = pl.read_parquet(out / layout.INDEX)
    assert index["key"].to_list() == ["img7", "solo"]
    metas = {s["key"]: s["meta"] for s in iter_samples(out)}
    want_img7 = {**{c: ROWS[0][c] for c in COLUMNS}, "key": "img7"}
    want_img7["records"] = [{c: r[c] for c in COLUMNS if c != "image_key"} for r in ROWS[:3]]
    assert metas["img7"] == want_img7
    want_solo = {**{c: ROWS[3][c] for c in COLUMNS}}
    want_solo["records"] = [{c: ROWS[3][c] for c in COLUMNS if c != "image_key"}]
    assert metas["solo"] == want_solo
    raw = ShardReader(out).members(0)["json"]
    assert raw == json.dumps(want_img7, ensure_ascii=False, sort_keys=True,
                             separators=(",", ":")).encode()  # fmt: skip

    # records.parquet: key, image_key (the sample's key, never null), the manifest columns
    stored = {"c1": "img7", "c2": "img7", "c3": "img7", "solo": "solo"}
    want_rows = [{**r, "image_key": stored[r["key"]]} for r in ROWS]
    got = pl.read_parquet(out / layout.RECORDS)
    assert got.columns == ["key", "image_key", "source", "split", "url", "path", "texts",
                           "image_id", "question", "answers", "conversations"]  # fmt: skip
    assert got.to_dicts() == [{c: r[c] for c in got.columns} for r in want_rows]

    # the reader's item: key, the stored bytes, format, non-null fields, first text
    image_of = {"img7": files["a.jpg"], "solo": files["b.jpg"]}
    want_items = [
        {
            "key": r["key"],
            "image": image_of[r["image_key"]],
            "image_ext": "jpg",
            "meta": {k: v for k, v in r.items() if v is not None},
            "txt": r["texts"][0],
        }
        for r in want_rows
    ]
    reader = RecordReader(out)
    assert [reader[i] for i in range(len(reader))] == want_items
    assert [reader.record(i) for i in range(4)] == [Record(**r) for r in want_rows]
    # the streaming path expands the tars into the very same items
    streamed = [item for s in iter_samples(out) for item in records_of_sample(s)]
    assert streamed == want_items
    # a filter over record columns
    test_only = RecordReader(out, filter=pl.col("split") == "test")
    assert [test_only[0]] == want_items[3:]


def test_reader_reads_no_key_json(sharded, monkeypatch):
    """RecordReader takes fields from records.parquet and the image alone from the shard."""
    out, files = sharded
    reader = RecordReader(out)

    def refuse(*_a, **_k):
        raise AssertionError("KEY.json parsed")

    monkeypatch.setattr(json, "loads", refuse)
    assert reader[2]["image"] == files["a.jpg"] and reader[2]["meta"]["image_key"] == "img7"
    assert _without(reader[3]["meta"], "image_key") == {
        k: v for k, v in ROWS[3].items() if v is not None
    }


def test_eval_references_are_the_records_first_per_image(tmp_path):
    """Eval reads records.parquet: one row per stored image, its first record's fields under
    the image key; --every-text's copies (index rows KEY_tJ) are not images to score."""
    from vlmtrain.eval.data import load_index, references_by_key

    images = tmp_path / "img"
    images.mkdir()
    for name, seed in (("a.jpg", 1), ("b.jpg", 2)):
        (images / name).write_bytes(image_bytes(seed))
    rows = [  # Karpathy-shaped: one record (five captions in COCO; two here) per image
        {"key": "a", "source": "coco", "split": "test", "path": "a.jpg", "texts": ["a1", "a2"]},
        {"key": "b", "source": "coco", "split": "test", "path": "b.jpg", "texts": ["b1"]},
    ]
    out = tmp_path / "out"
    write_shards(write_manifest(tmp_path / "m.parquet", rows), images, out, every_text=True,
                 progress=False)  # fmt: skip
    assert pl.read_parquet(out / layout.INDEX)["key"].to_list() == ["a", "a_t1", "b"]
    assert references_by_key(out) == {"a": ["a1", "a2"], "b": ["b1"]}
    assert load_index(out, None, columns=["key", "split"]).to_dicts() == [
        {"key": "a", "split": "test"},
        {"key": "b", "split": "test"},
    ]
