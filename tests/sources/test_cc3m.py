"""cc3m: Google's headerless TSV and FROMAGe's TSV, bad lines included."""

from __future__ import annotations

import polars as pl
import pytest

from tests.sources.conftest import manifest_rows, reject_counts
from vlmdata.core.errors import DataError
from vlmdata.sources import read_source

GOOGLE_LINES = [
    b"a dog runs on the beach\thttp://example.com/1.jpg",
    b"a tab\tinside\thttp://example.com/2.jpg",  # wrong_field_count
    b"a caption broken by a",  # newline inside a caption: this half has no URL
    b"newline\thttp://example.com/3.jpg",  # ... and this half reads as a row
    b"caf\xe9 latin-1 bytes\thttp://example.com/4.jpg",  # bad_utf8
    b"   \thttp://example.com/5.jpg",  # empty_text
    b"no url here\t  ",  # missing_field
    b"windows line end\thttp://example.com/6.jpg\r",
    b"\xc3\xa9t\xc3\xa9 sunset \thttp://example.com/7.jpg ",
]


def test_google_tsv_rows_and_rejects(tmp_path, out):
    tsv = tmp_path / "Train_GCC-training.tsv"
    tsv.write_bytes(b"\n".join(GOOGLE_LINES) + b"\n")
    result = read_source("cc3m", [tsv], out)
    rows = manifest_rows(out)
    assert [(r["key"], r["texts"], r["url"]) for r in rows] == [
        ("cc3m_train_00000001", ["a dog runs on the beach"], "http://example.com/1.jpg"),
        ("cc3m_train_00000004", ["newline"], "http://example.com/3.jpg"),
        ("cc3m_train_00000008", ["windows line end"], "http://example.com/6.jpg"),
        ("cc3m_train_00000009", ["été sunset"], "http://example.com/7.jpg"),
    ]
    assert {r["split"] for r in rows} == {"train"} and {r["source"] for r in rows} == {"cc3m"}
    assert all(r["path"] is None for r in rows)
    assert reject_counts(out) == {
        "wrong_field_count": 2,
        "bad_utf8": 1,
        "empty_text": 1,
        "missing_field": 1,
    }
    rejects = pl.read_parquet(out / "rejects.parquet").sort("line")
    assert rejects["line"].to_list() == [2, 3, 5, 6, 7]
    assert (
        rejects.row(2, named=True)["record"]
        == '"caf\\\\xe9 latin-1 bytes\\thttp://example.com/4.jpg"'
    )
    assert result.kept == 4 and sum(result.rejects.values()) == 5


def test_validation_split_from_file_name_and_override(tmp_path, out):
    tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    tsv.write_bytes(b"a cat\thttp://example.com/c.jpg\n")
    read_source("cc3m", [tsv], out)
    assert manifest_rows(out)[0]["key"] == "cc3m_val_00000001"
    read_source("cc3m", [tsv], out, split="dev")
    assert manifest_rows(out)[0]["split"] == "dev"
    odd = tmp_path / "captions.tsv"
    odd.write_bytes(b"a cat\thttp://example.com/c.jpg\n")
    with pytest.raises(DataError, match="--split"):
        read_source("cc3m", [odd], out)


def test_fromage_tsv_paths_and_quoting(tmp_path, out):
    tsv = tmp_path / "cc3m_val.tsv"
    tsv.write_text(
        "caption\timage\n"
        "a red car\t0000001.jpg\n"
        '"he said ""hi"" to me"\tsub/0000002.jpg\n'
        "escape attempt\t../../etc/passwd\n"
        "absolute\t/tmp/x.jpg\n"
        "no image\t\n"
        "\t0000003.jpg\n",
        encoding="utf-8",
    )
    read_source("cc3m", [tsv], out)
    rows = manifest_rows(out)
    assert [(r["key"], r["path"], r["texts"], r["url"]) for r in rows] == [
        ("cc3m_val_0000001", "0000001.jpg", ["a red car"], None),
        ("cc3m_val_sub_0000002", "sub/0000002.jpg", ['he said "hi" to me'], None),
    ]
    assert reject_counts(out) == {"unsafe_path": 2, "missing_field": 1, "empty_text": 1}
