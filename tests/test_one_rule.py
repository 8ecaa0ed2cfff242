"""One home per rule: the texts rule, the manifest schema check and the CLI's choice lists are
each declared once (vlmdata/core/manifest.py, vlmdata/core/choices.py) and used everywhere."""

import click
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core import choices, layout
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import texts_ok, texts_problem

# (texts, can caption a sample): the contract 1 rule in docs/DESIGN.md
TEXTS = [
    (None, False),
    ([], False),
    (["a"], True),
    (["a", "b c"], True),
    (["a", "  "], False),
    (["a", None], False),
    (["\u3000"], False),  # an ideographic space is blank too
    (["\t\n"], False),
]


def test_texts_rule_over_a_column_equals_the_row_rule():
    df = pl.DataFrame({"texts": [t for t, _ in TEXTS]}, schema={"texts": pl.List(pl.String)})
    got = df.select(texts_ok().fill_null(False)).to_series().to_list()
    assert got == [ok for _, ok in TEXTS]
    assert [texts_problem(t) is None for t, _ in TEXTS] == [ok for _, ok in TEXTS]


def test_blank_ok_checks_the_type_only():
    assert texts_problem([], blank_ok=True) is None
    assert texts_problem(["a", "  "], blank_ok=True) is None
    assert texts_problem(None, blank_ok=True) == ("wrong_type", "texts is null")
    assert texts_problem(["a", 3], blank_ok=True)[0] == "wrong_type"
    assert texts_problem("abc", blank_ok=True)[0] == "wrong_type"


TEXT_LIST = pa.list_(pa.string())


def _manifest(path, texts, texts_type=TEXT_LIST):
    n = len(texts)
    table = pa.table(
        {
            "key": [f"k{i}" for i in range(n)],
            "url": [f"http://example.com/{i}.jpg" for i in range(n)],
            "texts": pa.array(texts, texts_type),
        }
    )
    pq.write_table(table, path)
    return path


def test_filter_urls_rejects_what_the_shard_writer_would(tmp_path):
    from vlmdata.filter.urls import filter_urls

    path = _manifest(tmp_path / "m.parquet", [t for t, _ in TEXTS])
    filter_urls(path, tmp_path / "out", allow_private=True)
    kept = pl.read_parquet(tmp_path / "out" / layout.MANIFEST)["key"].to_list()
    assert kept == [f"k{i}" for i, (_, ok) in enumerate(TEXTS) if ok]
    rejects = pl.read_parquet(tmp_path / "out" / layout.REJECTS)
    assert set(rejects["reason"]) == {"empty_text"}


def test_filter_urls_and_shard_share_the_schema_check(tmp_path):
    from vlmdata.filter.urls import filter_urls
    from vlmdata.shards import write_shards

    path = _manifest(tmp_path / "m.parquet", ["a", "b"], pa.string())  # texts not a list
    with pytest.raises(DataError, match=r"manifest column types: texts is string, not list"):
        filter_urls(path, tmp_path / "f", allow_private=True)
    with pytest.raises(DataError, match=r"manifest lacks columns \['path'\]"):
        write_shards(path, tmp_path, tmp_path / "s")


def _choices(command, name):
    param = next(p for p in command.params if p.name == name)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


def test_cli_choices_are_the_library_declarations():
    from cli.data_download import download
    from cli.data_ids import build_ids
    from cli.data_shards import shard
    from cli.data_sources import manifest
    from vlmdata.ids.build import SCHEMES
    from vlmdata.sources import SOURCES

    assert tuple(SOURCES) == choices.SOURCE_NAMES == _choices(manifest, "source")
    assert SCHEMES == choices.ID_SCHEMES == _choices(build_ids, "scheme")
    assert _choices(shard, "resize") == choices.RESIZE_MODES
    assert _choices(shard, "reencode") == choices.REENCODE_FORMATS
    assert _choices(shard, "distributor") == choices.DISTRIBUTORS
    assert _choices(shard, "duplicate_images") == choices.DUPLICATE_IMAGE_RULES
    assert _choices(download, "resize_mode") == choices.FETCH_RESIZE_MODES
    assert _choices(download, "encode_format") == choices.FETCH_ENCODE_FORMATS
    assert _choices(download, "distributor") == choices.DISTRIBUTORS


def test_duplicate_images_is_validated_by_the_one_rule():
    from vlmdata.shards.options import ShardOptions

    with pytest.raises(ValueError, match="duplicate image rule must be one of"):
        ShardOptions(duplicate_images="keep")
    assert ShardOptions(duplicate_images="share").duplicate_images == "share"
