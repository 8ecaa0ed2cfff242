"""cc3m: Google's headerless TSV and FROMAGe's TSV, bad lines included."""

from __future__ import annotations

import polars as pl
import pytest

from tests.sources.conftest import manifest_rows, reject_counts
from vlmdata.core import layout
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
    rejects = pl.read_parquet(out / layout.REJECTS).sort("line")
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


def test_header_row_is_skipped_and_counted_on_both_paths(tmp_path):
    """img2dataset's CC3M guide adds a `caption<TAB>url` header to Google's headerless TSV.
    `manifest cc3m` and `filter-urls` both skip it, count it, and give the data rows the keys
    the headerless file gives (the header is not a data row)."""
    from vlmdata.filter.urls import filter_urls

    body = b"\n".join(GOOGLE_LINES) + b"\n"
    plain = tmp_path / "plain" / "Train_GCC-training.tsv"
    headed = tmp_path / "headed" / "Train_GCC-training.tsv"
    plain.parent.mkdir()
    headed.parent.mkdir()
    plain.write_bytes(body)
    headed.write_bytes(b"caption\turl\n" + body)
    res_plain = read_source("cc3m", [plain], tmp_path / "m0")
    res = read_source("cc3m", [headed], tmp_path / "m1")
    assert res.extra == {"header": 1} and "header" in res.summary()
    assert res.kept == res_plain.kept == 4 and res.rejects == res_plain.rejects
    keys = [r["key"] for r in manifest_rows(tmp_path / "m1")]
    assert keys == [r["key"] for r in manifest_rows(tmp_path / "m0")]
    lines = pl.read_parquet(tmp_path / "m1" / layout.REJECTS)["line"].to_list()
    assert lines == [x + 1 for x in pl.read_parquet(tmp_path / "m0" / layout.REJECTS)["line"]]
    filtered = filter_urls(headed, tmp_path / "f1", split=None, allow_private=True)
    assert filtered.header == 1 and "header" in filtered.summary()
    unheaded = filter_urls(plain, tmp_path / "f0", split=None, allow_private=True)
    assert filtered.rejects == unheaded.rejects  # the header is not a row with a bad URL
    kept = pl.read_parquet(tmp_path / "f1" / layout.MANIFEST)["key"].to_list()
    assert kept == keys


@pytest.mark.parametrize("split", ["val 2", "train"])
def test_manifest_and_filter_urls_build_the_same_rows(tmp_path, split):
    """One CC3M row builder: same keys, captions and URLs from `manifest cc3m` (block by
    block) and `filter-urls` (whole file), whatever --split says (`val 2` -> `cc3m_val_2_*`)."""
    from vlmdata.filter.urls import filter_urls
    from vlmdata.sources.cc3m import iter_google_frames

    tsv = tmp_path / "Train_GCC-training.tsv"
    good = [f"caption {i}\thttp://example.com/{i}.jpg".encode() for i in range(40)]
    tsv.write_bytes(b"\n".join(good[:20] + GOOGLE_LINES + good[20:]) + b"\n")
    read_source("cc3m", [tsv], tmp_path / "m", split=split)
    filter_urls(tsv, tmp_path / "f", split=split, allow_private=True)
    cols = ["key", "split", "url", "texts"]
    manifest = pl.read_parquet(tmp_path / "m" / layout.MANIFEST).select(cols)
    filtered = pl.read_parquet(tmp_path / "f" / layout.MANIFEST).select(cols)
    both = manifest.join(filtered, on="key", how="inner", suffix="_f")
    assert both.height == filtered.height >= 40  # every row filter-urls keeps, manifest keeps
    for col in ("split", "url", "texts"):
        assert both[col].to_list() == both[f"{col}_f"].to_list()
    prefix = "cc3m_val_2_" if split == "val 2" else "cc3m_train_"
    assert manifest["key"][0] == prefix + "00000001" and manifest.height == 44
    blocks = list(iter_google_frames(tsv, split, block_bytes=64))  # many tiny blocks
    assert len(blocks) > 5
    assert (
        pl.concat([b.rows for b in blocks])["key"].to_list()
        == (
            pl.concat([b.rows for b in iter_google_frames(tsv, split, block_bytes=None)])["key"]
        ).to_list()
    )
