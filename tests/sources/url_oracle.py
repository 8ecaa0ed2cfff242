"""filter-urls' rules written again from their definitions, one URL at a time, for comparison.

Independent of vlmdata/filter/rules.py on purpose: no regex or constant is shared with it. The
authority is cut by hand (RFC 3986: after `//`, up to `/ ? #`), hosts are normalised as a
resolver would (Unicode NFKC, ideographic full stops as dots), "ends in a number" is WHATWG's
IPv4 rule, the canonical dotted quad is checked digit by digit, and the address ranges come from
`ipaddress`. Used by tests/sources/test_urls_reference.py and as the per-row peer of
benchmarks/bench_filter_urls.py.
"""

from __future__ import annotations

import ipaddress
import string
import unicodedata

MAX_CHARS = 2048
# RFC 3986 reg-name: unreserved and sub-delims (no "%": hosts are not percent-decoded here)
HOST_ASCII = set(string.ascii_letters + string.digits + "-._~" + "!$&'()*+,;=")
NON_PUBLIC_TLDS = {"onion", "i2p", "local", "internal"}
LOCAL_NAMES = {"localhost.localdomain", "localhost6.localdomain6"}
IDEOGRAPHIC_STOPS = {"\u3002", "\uff0e", "\uff61"}


def _scheme(url: str) -> str | None:
    """The scheme if the URL starts with `ALPHA *( ALPHA / DIGIT / + - . ) :`."""
    head, colon, _ = url.partition(":")
    ok = head[:1] in string.ascii_letters and all(
        c in string.ascii_letters + string.digits + "+-." for c in head
    )
    return head.lower() if colon and head and ok else None


def _authority(url: str) -> str | None:
    scheme = _scheme(url)
    rest = url[len(scheme) + 1 :] if scheme else ""
    if not rest.startswith("//"):
        return None
    rest = rest[2:]
    cut = min([i for i in (rest.find(c) for c in "/?#") if i >= 0], default=len(rest))
    return rest[:cut]


def _split_host_port(hostport: str) -> tuple[str, str, bool] | None:
    """(host, port digits, bracketed) or None when it is not `host[:digits]`."""
    if hostport.startswith("["):
        close = hostport.find("]")
        if close < 0:
            return None
        host, rest = hostport[1:close], hostport[close + 1 :]
        bracketed = True
    else:
        if "[" in hostport or "]" in hostport:
            return None
        host, sep, port = hostport.partition(":")
        rest, bracketed = sep + port, False
    if rest and (not rest.startswith(":") or not all(c in string.digits for c in rest[1:])):
        return None
    return host, rest[1:], bracketed


def normalise_host(host: str) -> str:
    host = unicodedata.normalize("NFKC", host)
    host = "".join("." if c in IDEOGRAPHIC_STOPS else c for c in host).lower()
    return host[:-1] if host.endswith(".") else host


def _is_number(label: str) -> bool:
    if label.startswith("0x"):
        return all(c in string.hexdigits for c in label[2:])
    return label != "" and all(c in string.digits for c in label)


def _dotted_quad(host: str) -> ipaddress.IPv4Address | None:
    parts = host.split(".")
    if len(parts) != 4:
        return None
    for p in parts:
        if not p or not all(c in string.digits for c in p) or (len(p) > 1 and p[0] == "0"):
            return None
        if int(p) > 255:
            return None
    return ipaddress.IPv4Address(host)


def _not_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_private


def host_reason(host: str, bracketed: bool, port: str, deny: set[str], allow_private: bool):
    """The reason from `malformed` on, for a host already cut out of its URL."""
    if len(port) > 5 or (port and int(port) > 65535):
        return "malformed"
    if bracketed:
        try:
            ip = ipaddress.IPv6Address(host)
        except ValueError:
            return "malformed"
        return None if allow_private or not _not_global(ip) else "private_address"
    host = normalise_host(host)
    if not host or host.startswith(".") or ".." in host:
        return "malformed"
    if any(ord(c) < 0x80 and c not in HOST_ASCII for c in host):
        return "malformed"
    labels = host.split(".")
    if _is_number(labels[-1]):  # read as IPv4 by resolvers: only a canonical quad is clear
        quad = _dotted_quad(host)
        if quad is None:
            return "malformed"
        if _not_global(quad) and not allow_private:
            return "private_address"
    elif not allow_private and (
        len(labels) == 1 or labels[-1] == "localhost" or host in LOCAL_NAMES
    ):
        return "private_address"
    if labels[-1] in NON_PUBLIC_TLDS:
        return "non_public_tld"
    if "onion" in labels[:-1] or "tor2web" in labels:
        return "tor_gateway"
    if any(".".join(labels[k:]) in deny for k in range(len(labels))):
        return "denylisted_domain"
    return None


def reference_reason(
    url: str, seen: set[str], deny: set[str] = frozenset(), allow_private: bool = False
) -> str | None:
    """The reason for one stripped URL (its caption already checked); `seen` holds kept URLs."""
    if len(url) > MAX_CHARS:
        return "too_long"
    scheme = _scheme(url)
    if scheme is not None and scheme not in ("http", "https"):
        return "bad_scheme"
    authority = _authority(url)
    if authority is None or "\\" in authority:
        return "malformed"
    parts = _split_host_port(authority.rpartition("@")[2])
    if parts is None:
        return "malformed"
    reason = host_reason(parts[0], parts[2], parts[1], deny, allow_private)
    if reason is None:
        if url in seen:
            return "duplicate_url"
        seen.add(url)
    return reason
