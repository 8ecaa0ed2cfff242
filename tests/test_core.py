"""The shared core: CLI start-up, manifest/rejects contracts, tokenizer training."""

from __future__ import annotations

import subprocess
import sys

import polars as pl
import pytest

from vlmdata.core import layout
from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.core.rejects import RejectRatioExceeded


@pytest.mark.parametrize("cli", ["vlmdata", "vlmtrain"])
def test_help_imports_nothing_heavy(cli):
    code = (
        f"import sys; from cli.{cli} import main\n"
        "try:\n    main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'transformers', 'webdataset', 'polars', 'deepspeed',"
        " 'matplotlib', 'PIL')"
        " if m in sys.modules]\nprint(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_vlmdata_help_lists_design_card_commands():
    from click.testing import CliRunner

    from cli.vlmdata import main

    out = CliRunner().invoke(main, ["--help"]).output
    for cmd in ("download", "filter-urls", "shard", "build-ids", "build-trie", "inspect"):
        assert cmd in out
    for cmd in ("verify", "get", "demo", "view"):
        assert cmd in out


def test_make_key_is_webdataset_safe():
    assert make_key("coco", "val2014", "COCO_val2014_000000000042.jpg") == (
        "coco_val2014_COCO_val2014_000000000042_jpg"
    )


def test_manifest_sink_rejects_contract_violations(tmp_path):
    with ManifestSink(tmp_path) as sink:
        sink.keep({"key": "a", "source": "s", "split": "train", "path": "a.jpg", "texts": ["x"]})
        sink.keep({"key": "b.c", "source": "s", "split": "train", "path": "c.jpg", "texts": []})
        sink.keep({"key": "a\n", "source": "s", "split": "train", "path": "e.jpg", "texts": []})
        sink.keep({"key": "d", "source": "s", "split": "train", "texts": ["z"]}, file="f", line=4)
    kept = pl.read_parquet(tmp_path / layout.MANIFEST)
    rej = pl.read_parquet(tmp_path / layout.REJECTS)
    assert kept["key"].to_list() == ["a"]
    assert sorted(rej["reason"].to_list()) == ["bad_key", "bad_key", "missing_field"]
    assert rej.filter(pl.col("reason") == "missing_field")["line"].to_list() == [4]
    with pytest.raises(RejectRatioExceeded):
        sink.check(0.5)


def test_repeated_keys_get_the_first_free_suffix(tmp_path):
    """A record is the unit: a repeated id is another record, kept under `key_N` (input order);
    a later genuine `a_1` does not collide with the suffixed one."""
    with ManifestSink(tmp_path) as sink:
        for key, path in [("a", "1.jpg"), ("a", "2.jpg"), ("a", "3.jpg"), ("a_1", "4.jpg")]:
            sink.keep({"key": key, "source": "s", "split": "t", "path": path, "texts": ["x"]})
    kept = pl.read_parquet(tmp_path / layout.MANIFEST)
    assert kept.select("key", "path").rows() == [
        ("a", "1.jpg"),
        ("a_1", "2.jpg"),
        ("a_2", "3.jpg"),
        ("a_1_1", "4.jpg"),
    ]
    assert sink.renamed == 3
    assert (
        not (tmp_path / layout.REJECTS).exists()
        or pl.read_parquet(tmp_path / layout.REJECTS).is_empty()
    )


def test_aborted_sink_leaves_no_files(tmp_path):
    with pytest.raises(RuntimeError), ManifestSink(tmp_path) as sink:
        sink.keep({"key": "a", "source": "s", "split": "t", "path": "a.jpg", "texts": []})
        raise RuntimeError("killed")
    assert [p for p in tmp_path.rglob("*") if not p.is_dir()] == []  # table folders may stay


def test_trained_tokenizer_round_trips(tmp_path):
    from vlmdata.core.tokenizer import load_tokenizer, train_tokenizer

    texts = ["a red circle on a blue background", "a green square"] * 50
    train_tokenizer(texts, tmp_path / "tok", vocab_size=300, extra_special_tokens=["[RET]"])
    tok = load_tokenizer(tmp_path / "tok")
    ids = tok("a red square [RET]")["input_ids"]
    assert tok.decode(ids) == "a red square [RET]"
    assert tok.convert_tokens_to_ids("[RET]") in ids
    assert tok.eos_token == "</s>" and tok.pad_token == "<pad>"
