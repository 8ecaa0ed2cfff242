"""filter-urls' vectorised rules against the per-row oracle written from their definitions."""

from __future__ import annotations

import ipaddress

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sources.url_oracle import reference_reason
from vlmdata.filter.urls import url_reason, url_reasons

DENY = {"blocked.example", "ads.other.net"}

ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n)}]")
special_v6 = st.sampled_from(["[::1]", "[fe80::1]", "[fc00::5]", "[::ffff:10.1.1.1]", "[ff02::2]"])
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
numeric = st.sampled_from(
    ["2130706433", "127.1", "0x7f000001", "0177.0.0.1", "0", "0x", "1.2.3", "010.0.0.1"]
    + ["2852039166", "a.b.1", "1.2.3.4.5", "256.1.1.1", "8.8.8.08", "1.0x2"]
)
tricky = st.sampled_from(
    [
        "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # full-width 127.0.0.1
        "\uff18\uff0e\uff18\uff0e\uff18\uff0e\uff18",  # full-width 8.8.8.8, full-width dots
        "8\u30028\u30028\u30028",  # ideographic full stops
        "b\u00fccher.example",
        "\u4f8b\u3048.jp",
        "metadata",
        "intranet",
        "localhost.localdomain",
        "x.onion.link",
        "onion.to",
        "a.b.onion.ws",
        "onions.example",
        "www.tor2web.org",
        "tor2webby.example",
        "127.0.0.1\\",
        "a%2e.example",
    ]
)
domain = st.lists(label, min_size=1, max_size=3).map(".".join) | st.sampled_from(
    [
        "cdn.blocked.example",
        "blocked.example",
        "notblocked.example",
        "x.ads.other.net",
        "other.net",
        "a.onion",
        "b.local",
        "c.internal",
        "localhost",
        "LocalHost.",
        "a..b",
        "x.localhost",
    ]
)
host = domain | ipv4 | ipv6 | special_v6 | numeric | tricky | st.sampled_from(["10.0.0.1"])
scheme = st.sampled_from(["http", "https", "HTTP", "ftp", "file", "mailto"])
sep = st.sampled_from(["://", ":", "://u:p@", "://127.0.0.1\\@", "://a@b@"])
port = st.sampled_from(["", ":80", ":8080", ":65535", ":99999", ":", ":12x"])
path = st.sampled_from(["/", "/a.jpg", "/p/q?x=1#f", "", "\\x.jpg"])
url = st.tuples(scheme, sep, host, port, path).map("".join)


@settings(max_examples=300, deadline=None)
@given(urls=st.lists(url, min_size=1, max_size=30), allow_private=st.booleans())
def test_vectorised_equals_reference(urls, allow_private):
    urls = urls + urls[:3]  # some duplicates
    frame = pl.DataFrame({"url": urls})
    got = url_reasons(frame, denylist=sorted(DENY), allow_private=allow_private)["reason"]
    seen: set[str] = set()
    want = [reference_reason(u, seen, DENY, allow_private) for u in urls]
    assert got.to_list() == want


@pytest.mark.parametrize(
    "target",
    [
        "http://2130706433/",
        "http://127.1/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0/",
        "http://2852039166/",
        "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
        "http://metadata/",
        "http://localhost.localdomain/",
        "http://127.0.0.1\\@x.com/",
        "http://dstormer6em3i4km.onion.link/a.jpg",
    ],
)
def test_single_url_rule_matches_the_oracle(target):
    assert url_reason(target) == reference_reason(target, set()) is not None
