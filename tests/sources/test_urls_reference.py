"""filter-urls' vectorised rules against a per-row reference built on urllib.parse + ipaddress."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmdata.filter.urls import url_reasons

DENY = {"blocked.example", "ads.other.net"}
_BAD_HOST = re.compile(r"[^A-Za-z0-9\-._~!$&'()*+,;=\x80-\U0010ffff]")
_NUMERIC = re.compile(r"^(?:(?:0x[0-9a-f]*|[0-9]+)\.)*(?:0x[0-9a-f]*|[0-9]+)$")


def reference(url: str, seen: set[str]) -> str | None:
    url = url.strip()
    if len(url) > 2048:
        return "too_long"
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*):", url)
    if scheme and scheme.group(1).lower() not in ("http", "https"):
        return "bad_scheme"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "malformed"
    if not parts.scheme or not parts.netloc:
        return "malformed"
    host = (parts.hostname or "").removesuffix(".")
    bracketed = "[" in parts.netloc
    if not host or (port is None and re.search(r":[0-9]{6,}$", parts.netloc)):
        return "malformed"
    if not bracketed and (_BAD_HOST.search(host) or ".." in host or host.startswith(".")):
        return "malformed"
    if bracketed or _NUMERIC.match(host):
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return "malformed"
        ip = getattr(ip, "ipv4_mapped", None) or ip
        if not ip.is_global or ip.is_multicast or ip.is_reserved:
            return "private_address"
    if host == "localhost" or host.endswith(".localhost"):
        return "private_address"
    if host.rsplit(".", 1)[-1] in ("onion", "i2p", "local", "internal"):
        return "non_public_tld"
    labels = host.split(".")
    if any(".".join(labels[k:]) in DENY for k in range(len(labels))):
        return "denylisted_domain"
    if url in seen:
        return "duplicate_url"
    seen.add(url)
    return None


ipv4 = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
ipv6 = st.integers(0, 2**128 - 1).map(lambda n: f"[{ipaddress.IPv6Address(n)}]")
special_v6 = st.sampled_from(["[::1]", "[fe80::1]", "[fc00::5]", "[::ffff:10.1.1.1]", "[ff02::2]"])
label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
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
    ]
)
host = domain | ipv4 | ipv6 | special_v6 | st.sampled_from(["10.0.0.1", "127.0.0.1"])
scheme = st.sampled_from(["http", "https", "HTTP", "ftp", "file", "mailto"])
port = st.sampled_from(["", ":80", ":8080", ":65535", ":99999"])
path = st.sampled_from(["/", "/a.jpg", "/p/q?x=1#f", ""])
url = st.tuples(scheme, st.sampled_from(["://", ":", "://u:p@"]), host, port, path).map("".join)


@settings(max_examples=150, deadline=None)
@given(urls=st.lists(url, min_size=1, max_size=30))
def test_vectorised_equals_reference(urls):
    urls = urls + urls[:3]  # some duplicates
    got = url_reasons(pl.DataFrame({"url": urls}), denylist=sorted(DENY))["reason"].to_list()
    seen: set[str] = set()
    assert got == [reference(u, seen) for u in urls]
