"""filter-urls: one URL per reason, the order reasons are checked in, both input formats."""

from __future__ import annotations

import ipaddress
import json

import polars as pl
import pytest

from tests.sources.conftest import manifest_rows, reject_counts
from vlmdata.core import layout
from vlmdata.filter.urls import filter_urls, ip_is_private, load_denylist, url_reasons
from vlmdata.sources import read_source

# (caption, url, expected reason or None)
CASES = [
    ("kept", "http://example.com/a.jpg", None),
    ("kept https, port, path", " https://Img.Example.org:8443/x/y.png?s=1#f ", None),
    ("kept global IPv6", "http://[2001:4860:4860::8888]/x.jpg", None),
    ("kept global IPv4", "http://8.8.8.8/x.jpg", None),
    ("  ", "http://example.com/empty-caption.jpg", "empty_text"),
    ("long", "http://example.com/" + "a" * 2040, "too_long"),
    ("ftp", "ftp://example.com/a.jpg", "bad_scheme"),
    ("data", "data:image/png;base64,AAAA", "bad_scheme"),
    ("no scheme", "example.com/a.jpg", "malformed"),
    ("no host", "http:///a.jpg", "malformed"),
    ("bad port", "http://example.com:99999/a.jpg", "malformed"),
    ("space in host", "http://exa mple.com/a.jpg", "malformed"),
    ("decimal ip", "http://2130706433/a.jpg", "malformed"),
    ("percent host", "http://%31%32%37.0.0.1/a.jpg", "malformed"),
    ("bad v6", "http://[::zz]/a.jpg", "malformed"),
    ("loopback", "http://127.0.0.1:8000/a.jpg", "private_address"),
    ("private", "http://user:pw@192.168.1.20/a.jpg", "private_address"),
    ("link-local", "http://169.254.169.254/latest/meta-data", "private_address"),
    ("multicast", "http://224.0.0.1/a.jpg", "private_address"),
    ("v6 loopback", "http://[::1]:8080/a.jpg", "private_address"),
    ("v4-mapped", "http://[::ffff:10.0.0.1]/a.jpg", "private_address"),
    ("localhost", "http://LOCALHOST./a.jpg", "private_address"),
    ("onion", "http://abcdefghij.onion/a.jpg", "non_public_tld"),
    ("mdns", "http://printer.local/a.jpg", "non_public_tld"),
    ("denied", "http://cdn.Blocked.example/a.jpg", "denylisted_domain"),
    ("dup", "http://example.com/a.jpg", "duplicate_url"),
    ("not denied", "http://notblocked.example/a.jpg", None),
    # first applicable reason wins: too long AND private -> too_long; ftp AND onion -> bad_scheme
    ("long private", "http://127.0.0.1/" + "b" * 2040, "too_long"),
    ("ftp onion", "ftp://abc.onion/x", "bad_scheme"),
    # numeric forms resolvers read as 127.0.0.1 / 0.0.0.0 / 169.254.169.254 (issue 14)
    ("short ip", "http://127.1/a.jpg", "malformed"),
    ("hex ip", "http://0x7f000001/a.jpg", "malformed"),
    ("octal ip", "http://0177.0.0.1/a.jpg", "malformed"),
    ("zero", "http://0/a.jpg", "malformed"),
    ("metadata decimal", "http://2852039166/latest/meta-data/", "malformed"),
    ("numeric last label", "http://example.1/a.jpg", "malformed"),
    ("backslash userinfo", "http://127.0.0.1\\@example.com/a.jpg", "malformed"),
    ("full-width", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/a.jpg", "private_address"),
    ("full-width dots", "http://\uff11\uff12\uff17\uff0e0\u30020\uff0e1/", "private_address"),
    ("single label", "http://metadata/computeMetadata/v1/", "private_address"),
    ("localdomain", "http://localhost.localdomain/a.jpg", "private_address"),
    # the two URLs the GenerativeImage2Text README tells users to delete from the CC3M TSV
    (
        "this was the official uniform .",
        "http://dstormer6em3i4km.onion.link/wp-content/uploads/2015/03/US-Forest-Ranger-Nazi-819x1024.jpg",
        "tor_gateway",
    ),
    (
        "i hate to tell you this dear , but whoever told you that was lying to make you feel "
        "better .",
        "http://dstormer6em3i4km.onion.link/wp-content/uploads/2014/05/pretty-for-a-dark-skinned-girl.jpg",
        "tor_gateway",
    ),
    ("gateway to", "https://abc.onion.to/x.jpg", "tor_gateway"),
    ("tor2web", "http://abc.tor2web.org/x.jpg", "tor_gateway"),
    ("onion in a name", "http://onions.example.com/x.jpg", None),
    ("idn kept", "http://b\u00fccher.example/a.jpg", None),
]


@pytest.fixture
def denylist(tmp_path):
    path = tmp_path / "deny.txt"
    path.write_text("# blocked hosts\nblocked.example  # and every subdomain\n*.other.example\n\n")
    return path


def write_tsv(path, cases):
    path.write_text("".join(f"{c}\t{u}\n" for c, u, _ in cases), encoding="utf-8")
    return path


def test_one_url_per_reason_cc3m(tmp_path, out, denylist):
    tsv = write_tsv(tmp_path / "Train_GCC-training.tsv", CASES)
    result = filter_urls(tsv, out, denylist=denylist)
    kept = manifest_rows(out)
    expected_kept = [i + 1 for i, case in enumerate(CASES) if case[2] is None]
    assert [r["key"] for r in kept] == [f"cc3m_train_{n:08d}" for n in expected_kept]
    assert kept[0]["url"] == "http://example.com/a.jpg"  # the first of the duplicates is kept
    assert kept[1]["url"] == "https://Img.Example.org:8443/x/y.png?s=1#f"  # stripped
    rejects = pl.read_parquet(out / layout.REJECTS).sort("line")
    got = dict(zip(rejects["line"].to_list(), rejects["reason"].to_list(), strict=True))
    want = {i + 1: case[2] for i, case in enumerate(CASES) if case[2] is not None}
    assert got == want
    assert json.loads(rejects["record"][0]) == {"caption": "", "url": CASES[4][1]}
    assert set(rejects["stage"]) == {"filter-urls"}
    assert result.kept == len(expected_kept)


def test_allow_private_keeps_loopback_test_servers(tmp_path, out):
    cases = [
        ("a", "http://127.0.0.1:8765/a.jpg", None),
        ("b", "http://[::1]/b.jpg", None),
        ("c", "http://localhost/c.jpg", None),
        ("d", "http://x.onion/d", "non_public_tld"),
    ]
    tsv = write_tsv(tmp_path / "Train_GCC-training.tsv", cases)
    filter_urls(tsv, out, allow_private=True)
    assert [r["url"] for r in manifest_rows(out)] == [c[1] for c in cases[:3]]
    assert reject_counts(out) == {"non_public_tld": 1}


def test_keys_match_the_cc3m_reader(tmp_path, denylist):
    tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    tsv.write_bytes(
        b"a\thttp://e.com/1\nbad\xff\thttp://e.com/2\nt\ta\tb\nc \t http://e.com/3\r\n"
        b"\n\xe2\x80\xa8 sep\thttp://e.com/4\n \thttp://e.com/5\nlast\thttp://e.com/6"
    )
    filter_urls(tsv, tmp_path / "f")
    read_source("cc3m", [tsv], tmp_path / "m")
    assert manifest_rows(tmp_path / "f") == manifest_rows(tmp_path / "m")
    assert reject_counts(tmp_path / "f") == reject_counts(tmp_path / "m")
    assert [r["key"][-1] for r in manifest_rows(tmp_path / "f")] == ["1", "4", "6", "8"]
    lines = [pl.read_parquet(tmp_path / d / layout.REJECTS).sort("line")["line"] for d in "fm"]
    assert lines[0].to_list() == lines[1].to_list() == [2, 3, 5, 7]


def test_manifest_format_keeps_extra_columns_and_path_rows(tmp_path, out):
    src = tmp_path / "src"
    rows = pl.DataFrame(
        {
            "key": ["wiki_Q1", "wiki_Q2", "wiki_Q3", "local", "wiki_Q4"],
            "source": ["oven-kb"] * 5,
            "split": ["kb"] * 5,
            "url": [
                "https://u.org/1.jpg",
                "http://10.1.2.3/2.jpg",
                "https://u.org/1.jpg",
                None,
                "https://u.org/4.jpg",
            ],
            "path": [None, None, None, "a/b.jpg", None],
            "texts": [["One"], ["Two"], ["Three"], ["Local"], [" ", ""]],
            "entity_id": ["Q1", "Q2", "Q3", None, "Q4"],
        }
    )
    (src / layout.MANIFEST).parent.mkdir(parents=True)
    rows.write_parquet(src / layout.MANIFEST)
    filter_urls(src / layout.MANIFEST, out)
    kept = pl.read_parquet(out / layout.MANIFEST)
    assert kept["key"].to_list() == ["wiki_Q1", "local"]
    assert kept.columns == rows.columns
    assert reject_counts(out) == {"private_address": 1, "duplicate_url": 1, "empty_text": 1}
    rejects = pl.read_parquet(out / layout.REJECTS)
    assert rejects.sort("line")["line"].to_list() == [1, 2, 4]
    assert json.loads(rejects.sort("line")["record"][0])["entity_id"] == "Q2"


def test_denylist_file_parsing(denylist):
    assert load_denylist(denylist) == ["blocked.example", "other.example"]


@pytest.mark.parametrize(
    "ip",
    [
        "0.0.0.0",
        "10.0.0.1",
        "100.64.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "172.16.0.1",
        "172.32.0.1",
        "192.0.2.1",
        "192.168.0.1",
        "198.18.0.1",
        "203.0.113.9",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "8.8.8.8",
        "1.1.1.1",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "2001:db8::1",
        "::2",
        "100::1",
        "2606:4700::1111",
        "::ffff:8.8.8.8",
        "::ffff:127.0.0.1",
    ],
)
def test_private_ranges_follow_the_standard_library(ip):
    addr = ipaddress.ip_address(ip)
    base = addr.ipv4_mapped if getattr(addr, "ipv4_mapped", None) else addr
    expected = not base.is_global or base.is_multicast or base.is_reserved
    assert ip_is_private(ip) is expected
    host = f"[{ip}]" if ":" in ip else ip
    frame = pl.DataFrame({"url": [f"http://{host}/x.jpg"]})
    reason = url_reasons(frame)["reason"][0]
    assert reason == ("private_address" if expected else None)


def test_rerun_is_byte_identical_and_schema_is_the_manifest_contract(tmp_path, denylist):
    import pyarrow.parquet as pq

    from vlmdata.core.manifest import manifest_schema

    tsv = write_tsv(tmp_path / "Train_GCC-training.tsv", CASES)
    filter_urls(tsv, tmp_path / "a", denylist=denylist)
    filter_urls(tsv, tmp_path / "b", denylist=denylist)
    for name in (layout.MANIFEST, layout.REJECTS):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert pq.read_schema(tmp_path / "a" / layout.MANIFEST).equals(manifest_schema())


def test_single_url_reason_for_redirect_checks():
    from vlmdata.filter.urls import url_reason

    assert url_reason("https://example.com/a.jpg") is None
    assert url_reason("http://2130706433/") == "malformed"
    assert url_reason("http://[::1]:8000/x") == "private_address"
    assert url_reason("http://[::1]:8000/x", allow_private=True) is None
    assert url_reason("http://a.blocked.example/x", denylist=["blocked.example"]) == (
        "denylisted_domain"
    )
