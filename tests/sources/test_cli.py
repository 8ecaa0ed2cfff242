"""`vlmdata manifest` and `vlmdata filter-urls` through click's runner: output and exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.vlmdata import main
from tests.sources.conftest import manifest_rows


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def google_tsv(path, good, bad):
    lines = [f"caption {i}\thttp://example.com/{i}.jpg" for i in range(good)]
    lines += [f"caption\twith tab {i}\thttp://example.com/b{i}.jpg" for i in range(bad)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_manifest_prints_summary_and_exit_codes(tmp_path, out):
    tsv = google_tsv(tmp_path / "Train_GCC-training.tsv", good=2, bad=3)
    result = run("manifest", "cc3m", tsv, "-o", out)
    assert result.exit_code == 1  # 3 of 5 rejected > 0.5
    assert "wrong_field_count" in result.output and "--max-reject-ratio" in result.output
    assert len(manifest_rows(out)) == 2  # outputs are written before the ratio check
    result = run("manifest", "cc3m", tsv, "-o", out, "--max-reject-ratio", "0.6")
    assert result.exit_code == 0, result.output
    assert "kept" in result.output and "2 rows" in result.output


def test_manifest_usage_errors_exit_2(tmp_path, out):
    tsv = google_tsv(tmp_path / "Train_GCC-training.tsv", good=1, bad=0)
    assert run("manifest", "cc3m", tmp_path / "missing.tsv", "-o", out).exit_code == 2
    result = run("manifest", "cc3m", tsv, "--restval", "skip", "-o", out)
    assert result.exit_code == 2 and "does not take --restval" in result.output
    assert run("manifest", "nope", tsv, "-o", out).exit_code == 2
    broken = tmp_path / "llava.json"
    broken.write_text("[{")
    result = run("manifest", "llava", broken, "-o", out)
    assert result.exit_code == 2 and "llava.json" in result.output


def test_manifest_karpathy_restval_option(tmp_path, out):
    doc = {
        "images": [
            {"filename": "a.jpg", "imgid": 0, "split": "restval", "sentences": [{"raw": "x"}]},
            {"filename": "b.jpg", "imgid": 1, "split": "test", "sentences": [{"raw": "y"}]},
        ],
        "dataset": "flickr30k",
    }
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps(doc))
    result = run("manifest", "karpathy", path, "--restval", "skip", "-o", out)
    assert result.exit_code == 0, result.output  # skipped rows are not errors
    assert "skipped_restval" in result.output
    assert [r["key"] for r in manifest_rows(out)] == ["flickr30k_1"]


def test_filter_urls_cli(tmp_path, out):
    tsv = tmp_path / "Train_GCC-training.tsv"
    tsv.write_text("a\thttp://127.0.0.1:9/a.jpg\nb\thttp://example.com/b.jpg\n")
    deny = tmp_path / "deny.txt"
    deny.write_text("example.com\n")
    result = run("filter-urls", tsv, "-o", out)
    assert result.exit_code == 0 and "private_address" in result.output
    assert run("filter-urls", tsv, "-o", out, "--allow-private").exit_code == 0
    assert len(manifest_rows(out)) == 2
    result = run("filter-urls", tsv, "-o", out, "--denylist", deny)
    assert result.exit_code == 1 and "denylisted_domain" in result.output
    result = run("filter-urls", out / "manifest.parquet", "-o", tmp_path / "o2", "--split", "x")
    assert result.exit_code == 2
    assert run("filter-urls", tmp_path / "nope.tsv", "-o", out).exit_code == 2


def test_declared_source_options_match_each_reader():
    """`Source.options` (what read_source and download pass on) is each reader's signature."""
    import inspect

    from vlmdata.sources import SOURCES

    for name, source in SOURCES.items():
        params = set(inspect.signature(source.reader()).parameters) - {"inputs", "sink"}
        assert set(source.options) == params, name
