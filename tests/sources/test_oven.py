"""oven: query/entity JSONL splits and the Wiki6M knowledge base."""

from __future__ import annotations

import json

import polars as pl

from tests.sources.conftest import manifest_rows, reject_counts
from vlmdata.core import layout
from vlmdata.sources import read_source


def jsonl(path, records):
    lines = [r if isinstance(r, bytes) else json.dumps(r).encode() for r in records]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def query(i, split, entity=True, **over):
    record = {
        "data_id": f"oven_{split}_{i:08d}",
        "image_id": f"oven_{i:08d}",
        "question": "what is the name of this building?",
        "data_split": split,
    }
    if entity:
        record.update(entity_id=f"Q{100 + i}", entity_text=f"Entity {i}")
    record.update(over)
    return record


def test_entity_val_and_test_splits(tmp_path, out):
    images = tmp_path / "images"
    (images / "01").mkdir(parents=True)
    (images / "01" / "oven_01000002.JPEG").write_bytes(b"x")  # only the upper-case one exists
    val = jsonl(
        tmp_path / "oven_entity_val.jsonl",
        [
            query(5, "entity_val_seen"),
            query(1_000_002, "entity_val_unseen"),
            b"{not json",  # bad_json
            b'{"data_id": "oven_x", "question": "caf\xe9?"}',  # bad_utf8
            query(7, "entity_val_seen", question=["a list"]),  # wrong_type
            {k: v for k, v in query(8, "entity_val_seen").items() if k != "image_id"},
            query(9, "entity_val_seen", question="  "),  # empty_text
            query(10, "entity_val_seen", image_id="oven"),  # bad_image_id
            b"[1, 2]",  # wrong_type: not an object
            b"",  # blank line: not a record
        ],
    )
    test = jsonl(tmp_path / "oven_query_test.jsonl", [query(3, "query_test", entity=False)])
    result = read_source("oven", [val, test], out, images=str(images))
    rows = manifest_rows(out)
    assert [(r["key"], r["split"], r["path"], r["entity_id"], r["entity_name"]) for r in rows] == [
        (
            "oven_entity_val_seen_00000005",
            "entity_val_seen",
            "00/oven_00000005.jpg",
            "Q105",
            "Entity 5",
        ),
        (
            "oven_entity_val_unseen_01000002",
            "entity_val_unseen",
            "01/oven_01000002.JPEG",
            "Q1000102",
            "Entity 1000002",
        ),
        ("oven_query_test_00000003", "query_test", "00/oven_00000003.jpg", None, None),
    ]
    assert rows[0]["texts"] == ["what is the name of this building?"] == [rows[0]["question"]]
    assert (rows[0]["image_id"], rows[0]["data_id"]) == ("oven_00000005", rows[0]["key"])
    assert reject_counts(out) == {
        "bad_json": 1,
        "bad_utf8": 1,
        "wrong_type": 2,
        "missing_field": 1,
        "empty_text": 1,
        "bad_image_id": 1,
    }
    lines = pl.read_parquet(out / layout.REJECTS).sort("line")["line"].to_list()
    assert lines == [3, 4, 5, 6, 7, 8, 9]
    assert result.kept == 3


def test_wiki6m_entities_and_image_manifest(tmp_path, out):
    def entity(qid, title, url="", content="text"):
        return {
            "wikidata_id": qid,
            "wikipedia_title": title,
            "wikipedia_content": content,
            "wikipedia_image_url": url,
        }

    kb = jsonl(
        tmp_path / "Wiki6M_ver_1_0.jsonl",
        [
            entity("Q1", "Universe", "https://upload.wikimedia.org/u.jpg"),
            entity("Q2", "Earth"),  # no image: an entity, not a manifest row
            entity("Q1", "Universe again", "https://upload.wikimedia.org/v.jpg"),  # duplicate
            {"wikipedia_title": "no id"},  # missing_field
            entity("Q3", "Moon", "https://upload.wikimedia.org/m.jpg", content=None),
        ],
    )
    result = read_source("oven-kb", [kb], out)
    entities = pl.read_parquet(out / "entities.parquet")
    assert entities.rows() == [
        ("Q1", "Universe", "https://upload.wikimedia.org/u.jpg", "text"),
        ("Q2", "Earth", None, "text"),
        ("Q3", "Moon", "https://upload.wikimedia.org/m.jpg", None),
    ]
    rows = manifest_rows(out)
    assert [(r["key"], r["url"], r["texts"], r["split"], r["source"]) for r in rows] == [
        ("wiki_Q1", "https://upload.wikimedia.org/u.jpg", ["Universe"], "kb", "oven-kb"),
        ("wiki_Q3", "https://upload.wikimedia.org/m.jpg", ["Moon"], "kb", "oven-kb"),
    ]
    assert reject_counts(out) == {"duplicate_key": 1, "missing_field": 1}
    assert result.extra == {"entities": 3, "no_image": 1}
    assert "no_image" in result.summary()
