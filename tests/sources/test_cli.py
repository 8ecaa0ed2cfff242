"""`vlmdata manifest` and `vlmdata filter-urls` through click's runner: output and exit codes."""

from __future__ import annotations

import json

from click.testing import CliRunner

from cli.vlmdata import main
from tests.sources.conftest import manifest_rows
from vlmdata.core import layout


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
    result = run("filter-urls", out / layout.MANIFEST, "-o", tmp_path / "o2", "--split", "x")
    assert result.exit_code == 2
    assert run("filter-urls", tmp_path / "nope.tsv", "-o", out).exit_code == 2


def test_declared_source_options_match_each_reader():
    """`Source.options` (what read_source and download pass on) is each reader's signature."""
    import inspect

    from vlmdata.sources import SOURCES

    for name, source in SOURCES.items():
        params = set(inspect.signature(source.reader()).parameters) - {"inputs", "sink"}
        assert set(source.options) == params, name


def _examples(text: str, command: str) -> list[list[str]]:
    """`vlmdata COMMAND ...` example lines of a help text or README (continuations joined)."""
    import shlex

    joined = text.replace("\\\n", " ")
    out = []
    for line in joined.splitlines():
        line = line.strip().removeprefix("$ ").split("#")[0]
        if line.startswith(f"vlmdata {command} "):
            out.append(shlex.split(line)[2:])
    return out


def test_documented_manifest_examples_use_options_their_source_takes():
    """README's tour and the --help examples once ran `manifest llava ... --images` and
    `manifest karpathy ... --images`, which read_source refuses."""
    from pathlib import Path

    from vlmdata.sources import SOURCES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    helps = "".join(run(cmd, "--help").output for cmd in ("manifest", "demo", "shard"))
    examples = _examples(readme, "manifest") + _examples(helps, "manifest")
    assert len(examples) >= 10
    for args in examples:
        source = args[0]
        accepted = SOURCES[source].options
        options = [a[2:].replace("-", "_") for a in args if a.startswith("--")]
        for option in options:
            if option != "max_reject_ratio":
                assert option in accepted, f"manifest {source} does not take --{option}"


def test_readme_tour_commands_write_to_different_folders():
    """`manifest cc3m` and `filter-urls` once shared `-o cc3m/`: the second overwrote the
    first's manifest and rejects tables."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    outs = []
    for command in ("manifest", "filter-urls"):
        for args in _examples(readme, command):
            outs.append(args[args.index("-o") + 1].rstrip("/"))
    assert len(outs) == len(set(outs)) >= 7


def test_get_help_names_a_key_the_karpathy_reader_makes(tmp_path):
    images = [{"filename": "1000092795.jpg", "split": "test", "imgid": 0,
               "sentences": [{"raw": "two men"}]}]  # fmt: skip
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": images, "dataset": "flickr30k"}))
    run("manifest", "karpathy", path, "-o", tmp_path / "m")
    key = manifest_rows(tmp_path / "m")[0]["key"]
    assert f"vlmdata get shards/ {key} " in run("get", "--help").output


def test_manifest_counts_rows_as_it_reads_unless_quiet(tmp_path, out):
    tsv = google_tsv(tmp_path / "Train_GCC-training.tsv", good=4, bad=1)
    loud = run("manifest", "cc3m", tsv, "-o", out)
    assert loud.exit_code == 0, loud.output
    assert "manifest:cc3m: 5 rows" in loud.output  # kept and rejected rows alike
    quiet = run("manifest", "cc3m", tsv, "-o", out, "-q")
    assert quiet.exit_code == 0 and "manifest:cc3m:" not in quiet.output


def test_filter_urls_counts_its_rows_unless_quiet(tmp_path, out):
    tsv = tmp_path / "Train_GCC-training.tsv"
    tsv.write_text(
        "a\thttp://example.com/a.jpg\nb\thttp://127.0.0.1/b.jpg\nc\thttp://e.org/c.jpg\n"
    )
    loud = run("filter-urls", tsv, "-o", out)
    assert loud.exit_code == 0, loud.output
    assert "filter-urls: 3 rows" in loud.output  # kept and rejected rows alike (streamed blocks)
    quiet = run("filter-urls", tsv, "-o", out, "-q")
    assert quiet.exit_code == 0 and "filter-urls:" not in quiet.output
