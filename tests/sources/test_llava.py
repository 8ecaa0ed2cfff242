"""llava: instruction JSON lists, text-only records, and the streaming JSON reader."""

from __future__ import annotations

import json

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sources.conftest import manifest_rows, reject_counts, write_json_bytes
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.sources import jsonstream, read_source


def turns(*pairs):
    return [{"from": role, "value": value} for role, value in pairs]


RECORDS = [
    {
        "id": "000000033471",
        "image": "coco/train2017/000000033471.jpg",
        "conversations": turns(
            ("human", "What colour is the bus?\n<image>"),
            ("gpt", "Red."),
            ("human", "Where is it?"),
            ("gpt", "On a street."),
        ),
    },
    {"id": "text-1", "conversations": turns(("human", "Say hi."), ("gpt", "Hi!"))},  # text-only
    {
        "id": 42,
        "image": "ocr_vqa/images/42.jpg",
        "conversations": turns(("human", "<image>\nWho wrote this book?"), ("gpt", "Ann.")),
    },
    {"id": "no-token", "image": "a.jpg", "conversations": turns(("human", "Hi"), ("gpt", "x"))},
    {"id": "role", "image": "b.jpg", "conversations": turns(("human", "<image>"), ("bot", "x"))},
    {"image": "c.jpg", "conversations": turns(("human", "<image>"), ("gpt", "x"))},  # no id
    {"id": "conv", "image": "d.jpg", "conversations": "not a list"},
    {"id": "utf", "image": "e.jpg", "conversations": turns(("human", "<image>"), ("gpt", "BAD@"))},
    {"id": "silent", "image": "f.jpg", "conversations": turns(("human", "<image>"), ("gpt", ""))},
    {
        "id": "up",
        "image": "../../g.jpg",
        "conversations": turns(("human", "<image>"), ("gpt", "x")),
    },
    {"id": "tok", "conversations": turns(("human", "<image> what?"), ("gpt", "x"))},
    "not an object",
]


def test_llava_rows_text_only_and_rejects(tmp_path, out):
    path = write_json_bytes(tmp_path / "llava_v1_5_mix665k.json", RECORDS, {"BAD@": b"\xc3("})
    result = read_source("llava", [path], out)
    rows = manifest_rows(out)
    assert [(r["key"], r["path"], r["texts"], r["data_id"]) for r in rows] == [
        (
            "llava_000000033471",
            "coco/train2017/000000033471.jpg",
            ["Red.", "On a street."],
            "000000033471",
        ),
        ("llava_42", "ocr_vqa/images/42.jpg", ["Ann."], "42"),
    ]
    assert json.loads(rows[0]["conversations"]) == RECORDS[0]["conversations"]
    assert {r["split"] for r in rows} == {"train"}
    text_only = pl.read_parquet(out / layout.TEXT_ONLY).to_dicts()
    assert [(r["key"], r["texts"]) for r in text_only] == [("llava_text-1", ["Hi!"])]
    assert reject_counts(out) == {
        "no_image_token": 1,
        "wrong_type": 3,
        "missing_field": 2,
        "bad_utf8": 1,
        "empty_text": 1,
        "unsafe_path": 1,
    }
    rejects = pl.read_parquet(out / layout.REJECTS)
    assert rejects.filter(pl.col("reason") == "bad_utf8")["line"].to_list() == [7]
    assert "list index" in rejects["detail"][0]
    assert result.extra == {"text_only": 1}


def test_invalid_json_names_the_file(tmp_path, out):
    path = tmp_path / "broken.json"
    path.write_text('[{"id": "a"}, {"id": ')
    with pytest.raises(DataError, match="broken.json"):
        read_source("llava", [path], out)
    assert not (out / layout.MANIFEST).exists()  # aborted: nothing half-written


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    items=st.lists(json_values, max_size=8),
    chunk=st.integers(1, 9),
    indent=st.sampled_from([None, 1]),
)
def test_streaming_reader_equals_json_load(tmp_path_factory, items, chunk, indent):
    path = tmp_path_factory.mktemp("js") / "doc.json"
    doc = {"head": items[:1], "images": items, "dataset": 12345}
    path.write_text(json.dumps(doc, indent=indent))
    with jsonstream.JsonStream(path, chunk_chars=chunk) as js:
        got = {}
        for key in js.iter_object():
            got[key] = list(js.iter_array()) if key == "images" else js.value()
        js.end()
    assert got == json.loads(path.read_text())
