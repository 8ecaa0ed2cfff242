"""`vlmdata download`: CC3M TSV -> loopback server -> img2dataset -> indexed shards.

One img2dataset run (module fixture) is shared by the count/layout tests; the resume test then
"kills" it by deleting a finished raw shard and reruns. img2dataset is slow to start (it imports
torch through webdataset in each process), so runs are few and use one process.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from tests.shards.http_server import image_bytes, serve_images
from vlmdata.core import layout
from vlmdata.download.img2dataset_run import FetchOptions, reject_reason
from vlmdata.download.pipeline import WORK_DIR, download
from vlmdata.shards import ShardReader
from vlmdata.shards.options import ShardOptions

RAW_SHARD = 5  # img2dataset rows per raw shard: the 20 fetched URLs make 4 raw shards


def cc3m_lines(server) -> list[tuple[str, str, str | None]]:
    """(caption, url, expected outcome) per TSV line; outcome None means kept."""
    u = server.url
    return [
        ("a red photo", u("img", 0), None),
        ("a photo one", u("img", 1), None),
        ("a photo two", u("img", 2), None),
        ("a png picture", u("img", 3, "png"), None),
        ("moved image", u("redirect", 4), None),
        ("not there", u("missing", 5), "http_404"),
        ("same bytes as line 1", u("dup", 0), "duplicate_image"),
        ("server error", u("error", 6), "http_500"),
        ("too slow", u("slow", 7), "timeout"),
        ("garbage bytes", u("corrupt", 8), "not_an_image"),
        ("half a jpeg", u("truncated", 9), "truncated"),
        ("nobody listens", "http://127.0.0.1:9/x.jpg", "connection_failed"),
        ("ftp is refused", "ftp://example.com/a.jpg", "bad_scheme"),
        ("again the first url", u("img", 0), "duplicate_url"),
        ("a photo ten", u("img", 10), None),
        ("also not there", u("missing", 11), "http_404"),
        ("a photo twelve", u("img", 12), None),
        ("a photo thirteen", u("img", 13), None),
        ("a photo fourteen", u("img", 14), None),
        ("a photo fifteen", u("img", 15), None),
        ("a photo sixteen", u("img", 16), None),
        ("a photo seventeen", u("img", 17), None),
    ]


def write_tsv(path: Path, lines) -> Path:
    text = "".join(f"{cap}\t{url}\n" for cap, url, _ in lines)
    path.write_text(text + "only one field\n", encoding="utf-8")  # a source reject
    return path


def key_of(line: int) -> str:
    return f"cc3m_val_{line:08d}"


def file_hashes(out: Path) -> dict[str, str]:
    """sha256 of every output file (`_stats.json` included: it holds no timestamps)."""
    return {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file() and WORK_DIR not in p.parts
    }


FETCH = FetchOptions(processes=1, threads=4, timeout=1, raw_shard_size=RAW_SHARD)
SHARD = ShardOptions(samples_per_shard=4)


@pytest.fixture(scope="module")
def downloaded(tmp_path_factory):
    root = tmp_path_factory.mktemp("download")
    tmp = root / "tmp"  # the TMPDIR this run is given: what it leaves there is checked
    tmp.mkdir()
    with serve_images(slow_seconds=3) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp))
        mp.setattr("tempfile.tempdir", None)  # read TMPDIR again
        lines = cc3m_lines(server)
        tsv = write_tsv(root / "Validation_GCC-1.1.0-Validation.tsv", lines)
        out = root / "out"
        summary = download(
            "cc3m",
            [tsv],
            out,
            fetch=FETCH,
            shard=SHARD,
            allow_private=True,
            keep_raw=True,
            progress=False,
        )
        yield {"server": server, "lines": lines, "tsv": tsv, "out": out, "summary": summary,
               "tmp": tmp}  # fmt: skip


def expected_kept(lines) -> list[str]:
    return [key_of(i) for i, (_, _, outcome) in enumerate(lines, 1) if outcome is None]


def test_exact_kept_and_reject_counts(downloaded):
    lines, out, summary = downloaded["lines"], downloaded["out"], downloaded["summary"]
    expected = Counter(o for _, _, o in lines if o is not None)
    expected["wrong_field_count"] += 1
    rejects = pl.read_parquet(out / layout.REJECTS)
    assert Counter(rejects["reason"].to_list()) == expected
    assert summary.kept == len(expected_kept(lines)) == 12
    assert Counter(summary.rejects) == expected
    # every reject names its key (but the unparsable line) and each row's outcome is its own
    for i, (_, _, outcome) in enumerate(lines, 1):
        if outcome is not None:
            got = rejects.filter(pl.col("key") == key_of(i))["reason"].to_list()
            assert got == [outcome], (i, got)


def test_nothing_is_left_in_tmpdir(downloaded):
    """img2dataset's pool SIGTERMs its workers, whose import of wandb had made two temp folders
    each that only atexit removes: the child runs with a TMPDIR of its own, removed after it."""
    assert sorted(downloaded["tmp"].iterdir()) == []
    assert not (downloaded["out"] / WORK_DIR / "tmp").exists()


def test_failed_urls_keep_img2dataset_message(downloaded):
    rejects = pl.read_parquet(downloaded["out"] / layout.REJECTS)
    fetch = rejects.filter(pl.col("stage") == "download").sort("key")
    assert fetch["reason"].to_list() == [
        "http_404",
        "http_500",
        "timeout",
        "connection_failed",
        "http_404",
    ]
    assert fetch["detail"].to_list()[:2] == [
        "HTTP Error 404: Not Found",
        "HTTP Error 500: Internal Server Error",
    ]
    assert "Connection refused" in fetch["detail"][3]
    record = json.loads(fetch["record"][0])
    assert record["url"].endswith("/missing/5.jpg") and record["texts"] == ["not there"]
    stages = rejects["stage"].unique().sort().to_list()
    assert stages == ["download", "filter-urls", "manifest:cc3m", "shard"]


def test_layout_readable_with_original_bytes(downloaded):
    out, lines = downloaded["out"], downloaded["lines"]
    for name in (layout.INDEX, layout.MANIFEST, "wids.json", layout.REJECTS):
        assert (out / name).is_file()
    tars = sorted(p.name for p in (out / "shards" / "val").glob("*.tar"))  # the file's split
    assert tars == ["data-000000.tar", "data-000001.tar", "data-000002.tar"]
    assert (out / "shards" / "val" / "data-000000_stats.json").is_file()
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["val"]
    n = len(expected_kept(lines))
    printed = downloaded["summary"].format()  # what `vlmdata download` prints last
    assert f"val          {n:>10,} samples  {out}/shards/val/data-{{000000..000002}}.tar" in printed
    sizes = json.loads((out / "shards" / "val" / "sizes.json").read_text())
    assert sorted(sizes) == tars and sum(sizes.values()) == n
    reader = ShardReader(out)
    assert list(reader.index["key"]) == expected_kept(lines)  # manifest order, our keys
    # the redirect was followed: line 5 holds image 4's bytes, untouched
    redirected = reader.get(key_of(5))
    assert redirected["image"] == image_bytes(4) and redirected["image_ext"] == "jpg"
    png = reader.get(key_of(4))
    assert png["image"] == image_bytes(3, "png") and png["image_ext"] == "png"
    assert png["txt"] == "a png picture" and png["meta"]["split"] == "val"
    assert png["meta"]["url"] == lines[3][1]
    assert pl.read_parquet(out / layout.MANIFEST).height == len(lines)


def test_url_rows_read_a_raw_shard_at_a_time(downloaded, tmp_path, monkeypatch):
    """The fetch list is never read whole (issue 23): filter-urls' output is copied to
    WORK/fetch_rows.parquet a batch at a time and read back a raw shard (or ROWS_AT_ONCE
    rows) at a time; the fetched rows are spooled the same way. Same bytes as the module's
    run (rejects compared without their `file`, the work folder's path)."""
    import pyarrow.parquet as pq

    from vlmdata.download import pipeline
    from vlmdata.shards.cluster_plan import ManifestFile

    work = tmp_path / "work"
    read_whole = pq.read_table

    def refuse_url_rows(source, *args, **kwargs):
        path = Path(str(source))
        assert path != work / "urls" / layout.MANIFEST, "the fetch list read whole"
        assert path.name not in ("fetch_rows.parquet", "fetched_rows.parquet")
        return read_whole(source, *args, **kwargs)

    largest = []
    slices, key_urls = ManifestFile.slices, pipeline.key_url_slices

    def counted(self, rows):
        for part in slices(self, rows):
            largest.append(part.num_rows)
            yield part

    def counted_key_urls(rows, n):  # the fingerprint's and the URL list's (key, url) reads
        for part in key_urls(rows, n):
            largest.append(part.num_rows)
            yield part

    monkeypatch.setattr(pq, "read_table", refuse_url_rows)
    monkeypatch.setattr(ManifestFile, "slices", counted)
    monkeypatch.setattr(pipeline, "key_url_slices", counted_key_urls)
    monkeypatch.setattr(pipeline, "ROWS_AT_ONCE", 3)
    out = tmp_path / "out"
    kw = dict(fetch=FETCH, shard=SHARD, allow_private=True, work_dir=work, progress=False)
    summary = download("cc3m", [downloaded["tsv"]], out, **kw)
    assert summary.kept == downloaded["summary"].kept == 12
    assert largest and max(largest) == RAW_SHARD  # 20 rows: 5s for the fetch, 3s elsewhere
    assert sorted(set(largest)) == [2, 3, 5]  # 20 = 6 x 3 + 2
    rejects = layout.REJECTS

    def same(path: Path):
        return {k: v for k, v in file_hashes(path).items() if k != rejects}

    assert same(out) == same(downloaded["out"])
    ours, theirs = (pl.read_parquet(o / rejects).drop("file") for o in (out, downloaded["out"]))
    assert ours.equals(theirs)
    assert not (work / "fetched_rows.parquet").exists()  # spooled for the repack, then gone


@pytest.mark.slow
def test_killed_download_resumes_byte_identical(downloaded):
    out, server, tsv = downloaded["out"], downloaded["server"], downloaded["tsv"]
    before = file_hashes(out)
    raw = out / WORK_DIR / "raw"
    assert sorted(p.name for p in raw.glob("*_stats.json")) == [
        f"{i:05d}_stats.json" for i in range(4)
    ]
    for p in raw.glob("00001*"):  # as if killed while raw shard 1 was being fetched
        p.unlink()
    shutil.rmtree(out / "shards")
    (out / layout.INDEX).unlink()
    hits_before = len(server.hits)
    # the rerun goes through the CLI: its options must map to the same fetch fingerprint
    args = ["download", "cc3m", str(tsv), "-o", str(out), "--allow-private", "--quiet"]
    args += ["--processes", "1", "--threads", "4", "--timeout", "1"]
    args += ["--download-shard-size", str(RAW_SHARD), "--samples-per-shard", "4"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    refetched = sorted(server.hits[hits_before:])
    # only raw shard 1 again: fetch-list rows 5-9 = TSV lines 6-10
    assert refetched == [
        "/corrupt/8.jpg",
        "/dup/0.jpg",
        "/error/6.jpg",
        "/missing/5.jpg",
        "/slow/7.jpg",
    ]
    assert file_hashes(out) == before
    assert not raw.exists()  # complete and keep_raw off: raw output removed
    # a third run has nothing to do and leaves every byte as it was
    hits_before = len(server.hits)
    again = download(
        "cc3m", [tsv], out, fetch=FETCH, shard=SHARD, allow_private=True, progress=False
    )
    assert again.up_to_date and again.kept == 12 and len(server.hits) == hits_before
    assert file_hashes(out) == before


def test_loopback_refused_without_opt_in(tmp_path):
    with serve_images() as server:
        lines = cc3m_lines(server)[:3]
        tsv = write_tsv(tmp_path / "Validation_GCC-1.1.0-Validation.tsv", lines)
        summary = download("cc3m", [tsv], tmp_path / "out", progress=False)
        assert server.hits == []
    assert summary.kept == 0
    assert summary.rejects == Counter({"private_address": 3, "wrong_field_count": 1})
    assert ShardReader(tmp_path / "out").index.height == 0


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        ("failed_to_download", "HTTP Error 403: Forbidden", "http_403"),
        ("failed_to_download", "The read operation timed out", "timeout"),
        ("failed_to_download", "<urlopen error [Errno -2] Name or service not known>", None),
        ("failed_to_download", "Use of image disallowed by X-Robots-Tag directive", None),
        ("failed_to_resize", "image too small", "too_small"),
        ("failed_to_resize", "cannot identify image file", "decode_failed"),
        ("failed_to_download", "something new", "download_failed"),
    ],
)
def test_reject_reason_mapping(status, message, reason):
    expected = {
        "<urlopen error [Errno -2] Name or service not known>": "connection_failed",
        "Use of image disallowed by X-Robots-Tag directive": "robots_disallowed",
    }
    assert reject_reason(status, message) == (reason or expected[message])
