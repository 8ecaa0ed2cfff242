"""The URL rule of `filter-urls` (and of every redirect a download follows), vectorised with polars.

Each row gets at most one reason, the first that applies in REASON_ORDER:

1. empty_text        the caption / every text is empty or whitespace
2. too_long          the URL (surrounding whitespace stripped) has more than 2048 characters
3. bad_scheme        a scheme other than http / https (ftp:, data:, javascript:, file: …)
4. malformed         no `scheme://`, no host, a bad port, characters a host cannot hold
                     (spaces, `%`, `<>`…: browsers percent-decode hosts, so `%31%32%37.0.0.1`
                     would be 127.0.0.1), a `\\` in the authority (`http://127.0.0.1\\@x.com/`:
                     browsers end the host at the backslash, urllib at the `@`), an invalid
                     `[IPv6]` literal, or a host ending in a number that is not a canonical
                     dotted quad (`2130706433`, `127.1`, `0x7f000001`, `0177.0.0.1`, `0`: resolvers
                     read them as IP addresses, so they could hide a private one)
5. private_address   `localhost`, `*.localhost`, `localhost.localdomain`, a single-label host
                     (`http://metadata/`: an intranet name), or a literal IP that is not
                     globally routable (private, loopback, link-local, multicast, reserved,
                     unspecified, shared; IPv4-mapped IPv6 by its IPv4); skipped with
                     allow_private
6. non_public_tld    .onion .i2p .local .internal
7. tor_gateway       a Tor-to-web gateway host: an `onion` label before the last one
                     (`*.onion.link`, `.onion.to`, `.onion.ws`, `.onion.city`, `.onion.cab`,
                     `.onion.ly`, `.onion.sh` ...) or a `tor2web` label (`*.tor2web.org`)
8. denylisted_domain the host equals a denylisted domain or is a subdomain of one
9. duplicate_url     the same URL string as an earlier row that passed 1-8 (the first is kept)

Hosts are compared after the normalisation a resolver applies (Unicode NFKC, so full-width
`１２７．０．０．１` is 127.0.0.1; ideographic full stops as dots; lower case; no trailing dot).
`url_reason` applies the same rules to one URL: download workers check every redirect target
with it.

String work runs in polars expressions over the whole column; only the rare hosts that look
like IP literals (a handful per million in CC3M) go through Python's `ipaddress`, once per
distinct host, so the rules for ranges are exactly the standard library's.
"""

from __future__ import annotations

import ipaddress
import os
import unicodedata
from typing import TYPE_CHECKING

from vlmdata.core.keyset import HashSet, hash128

if TYPE_CHECKING:
    import polars as pl

REASON_ORDER = (
    "empty_text",
    "too_long",
    "bad_scheme",
    "malformed",
    "private_address",
    "non_public_tld",
    "tor_gateway",
    "denylisted_domain",
    "duplicate_url",
)
MAX_URL_CHARS = 2048
NON_PUBLIC_TLDS = ("onion", "i2p", "local", "internal")

_SCHEME_AUTHORITY = r"^(?<_scheme>[A-Za-z][A-Za-z0-9+.\-]*):(?://(?<_auth>[^/?#]*))?"
_HOSTPORT = r"(?s)^(?<host>\[[^\]]*\]|[^:\[\]]*)(?::(?<port>[0-9]*))?$"
# RFC 3986 reg-name characters (unreserved, sub-delims; not `%`) plus non-ASCII (IDN) ones.
_BAD_HOST_CHAR = r"[^A-Za-z0-9\-._~!$&'()*+,;=\x{80}-\x{10FFFF}]"
_TLD_RE = r"(?:^|\.)(?:" + "|".join(NON_PUBLIC_TLDS) + r")$"
# WHATWG's "ends in a number": such a host is parsed as IPv4 (inet_aton forms included).
_ENDS_IN_NUMBER = r"(?:^|\.)(?:0x[0-9a-f]*|[0-9]+)$"
_LOCAL_NAMES = ("localhost.localdomain", "localhost6.localdomain6")
_TOR_GATEWAY = r"(?:^|\.)onion\.[^.]|(?:^|\.)tor2web(?:\.|$)"
_IDEOGRAPHIC_DOTS = str.maketrans("\u3002\uff0e\uff61", "...")  # IDNA: "."; NFKC keeps U+3002


def ip_is_private(text: str) -> bool | None:
    """Whether an IP literal is not globally routable; None if `text` is not a canonical IP."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(
        not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def load_denylist(path: str | os.PathLike) -> list[str]:
    """Domains, one per line; `#` starts a comment; `*.` / leading dots and case are ignored."""
    domains = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            domain = line.split("#", 1)[0].strip().lower().lstrip("*").strip(".")
            if domain:
                domains.append(domain)
    return sorted(set(domains))


def _parse(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `_scheme`, `_host` (lower case, no trailing dot, no [brackets]), `_port` (digits),
    `_v6` (host was [bracketed]) and `_ip_like` to a frame with `_url`. Host and port are null
    when the authority is not `[userinfo@]host[:digits]`. Each step is materialised, so no
    regex runs twice over 3M URLs."""
    import polars as pl

    frame = frame.with_columns(
        pl.col("_url").str.extract_groups(_SCHEME_AUTHORITY).alias("_sa")
    ).unnest("_sa")
    frame = frame.with_columns(_scheme=pl.col("_scheme").str.to_lowercase())
    frame = frame.with_columns(
        pl.col("_auth").str.replace(r"^.*@", "").str.extract_groups(_HOSTPORT).alias("_hp")
    ).unnest("_hp")
    raw = pl.col("host")
    frame = frame.with_columns(
        _v6=raw.str.starts_with("[").fill_null(False),
        _host=raw.str.strip_prefix("[").str.strip_suffix("]"),
        _port=pl.col("port"),
        _backslash=pl.col("_auth").str.contains("\\", literal=True),
    ).drop("host", "port", "_auth")
    unicode_hosts = frame.filter(pl.col("_host").str.contains(r"[^\x00-\x7f]"))["_host"]
    mapping = {h: unicode_host(h) for h in unicode_hosts.unique().to_list()}
    host = pl.col("_host").replace(mapping) if mapping else pl.col("_host")
    frame = frame.with_columns(_host=host.str.to_lowercase().str.strip_suffix("."))
    return frame.with_columns(
        _ip_like=pl.col("_v6") | pl.col("_host").str.contains(_ENDS_IN_NUMBER)
    )


def unicode_host(host: str) -> str:
    """A non-ASCII host as a resolver reads it: NFKC (full-width digits and dots become ASCII),
    ideographic full stops as dots. Done per distinct host: they are rare."""
    return unicodedata.normalize("NFKC", host).translate(_IDEOGRAPHIC_DOTS)


def _ip_verdicts(hosts: pl.Series) -> dict[str, bool | None]:
    return {h: ip_is_private(h) for h in hosts.unique().to_list() if h is not None}


def url_reasons(
    frame: pl.DataFrame,
    *,
    url: str = "url",
    text_ok: pl.Expr | None = None,
    denylist: list[str] | tuple[str, ...] = (),
    allow_private: bool = False,
    seen: HashSet | None = None,
) -> pl.DataFrame:
    """Columns `reason` (null: keep) and `host`, one row per row of `frame`, reasons checked in
    REASON_ORDER. `text_ok`: a boolean expression over `frame`, false where the text is empty.
    Rows whose URL is null (a manifest row with a local path) only get the text check.
    `seen`: the URLs that passed 1-8 in earlier blocks of the same file (a duplicate of one is
    a duplicate_url); this block's are added to it."""
    import polars as pl

    work = _parse(
        frame.select(
            pl.col(url).alias("_url"),
            (text_ok if text_ok is not None else pl.lit(True)).fill_null(False).alias("_text_ok"),
        )
    )
    u, host, scheme, port = pl.col("_url"), pl.col("_host"), pl.col("_scheme"), pl.col("_port")
    ip_like, v6 = pl.col("_ip_like"), pl.col("_v6")
    verdicts = _ip_verdicts(work.filter(pl.col("_ip_like").fill_null(False))["_host"])
    work = work.with_columns(
        _ip_private=host.replace_strict(verdicts, default=None, return_dtype=pl.Boolean)
    )
    ip_private = pl.col("_ip_private")
    malformed = (
        host.is_null()
        | (host == "")
        | (port.str.len_chars() > 5)
        | (port.cast(pl.Int64, strict=False) > 65535)
        | (~v6 & host.str.contains(_BAD_HOST_CHAR))
        | (~v6 & (host.str.contains("..", literal=True) | host.str.starts_with(".")))
        | (ip_like & ip_private.is_null())
        | (v6 & ~host.str.contains(":", literal=True))  # [1.2.3.4] is not IPv6
        | pl.col("_backslash")
    )
    private = (
        (~ip_like & ~host.str.contains(".", literal=True))  # localhost, metadata, intranet
        | host.str.ends_with(".localhost")
        | host.is_in(_LOCAL_NAMES)
        | (ip_like & ip_private)
    )
    has_url = u.is_not_null()
    tests = {  # each reason's condition; checked in REASON_ORDER (duplicate_url comes last)
        "empty_text": ~pl.col("_text_ok"),
        "too_long": has_url & (u.str.len_chars() > MAX_URL_CHARS),
        "bad_scheme": has_url & scheme.is_not_null() & ~scheme.is_in(["http", "https"]),
        "malformed": has_url & malformed,
        "private_address": pl.lit(False) if allow_private else has_url & private,
        "non_public_tld": has_url & host.str.contains(_TLD_RE),
        "tor_gateway": has_url & host.str.contains(_TOR_GATEWAY),
        "denylisted_domain": has_url & _denied(host, denylist),
    }
    reason = pl.lit(None, dtype=pl.String)
    for name in reversed(REASON_ORDER[:-1]):
        reason = pl.when(tests[name].fill_null(False)).then(pl.lit(name)).otherwise(reason)
    work = work.with_columns(reason=reason)
    work = work.with_columns(_ok=pl.col("reason").is_null() & has_url)
    dup = pl.col("_ok") & ~u.is_first_distinct().over("_ok")
    work = work.with_columns(_dup=dup)
    if seen is not None:
        work = _earlier_duplicates(work, seen)
    return work.select(
        pl.when("_dup").then(pl.lit("duplicate_url")).otherwise(pl.col("reason")).alias("reason"),
        host.alias("host"),
    )


def _earlier_duplicates(work: pl.DataFrame, seen: HashSet) -> pl.DataFrame:
    """Mark rows whose URL passed 1-8 in an earlier block; add this block's new URLs."""
    import numpy as np
    import polars as pl

    first = work.select(pl.col("_ok") & ~pl.col("_dup")).to_series().to_numpy()
    rows = np.flatnonzero(first)
    urls = work["_url"].gather(rows)
    hi, lo = hash128(urls)
    earlier = seen.contains(hi, lo)
    seen.add(hi[~earlier], lo[~earlier])
    dup = np.zeros(work.height, dtype=bool)
    dup[rows[earlier]] = True
    return work.with_columns(_dup=pl.col("_dup") | pl.Series(dup))


def url_reason(url: str, *, denylist: list[str] = (), allow_private: bool = False) -> str | None:
    """The reject reason for one URL (None: fetchable), by exactly the rules of `url_reasons`.

    For one-off checks such as redirect targets; ~1 ms a call, so not for bulk use. Unlike a
    bare `ip_is_private`, it also refuses numeric hosts like `2130706433` (as `malformed`)."""
    import polars as pl

    frame = pl.DataFrame({"url": [url]}, schema={"url": pl.String})
    reasons = url_reasons(frame, denylist=list(denylist), allow_private=allow_private)
    return reasons["reason"][0]


def _denied(host: pl.Expr, denylist: list[str]) -> pl.Expr:
    """Suffix match on whole labels: for each label count in the denylist, compare the host's
    last n labels against the domains of that length."""
    import polars as pl

    by_labels: dict[int, list[str]] = {}
    for domain in denylist:
        by_labels.setdefault(domain.count(".") + 1, []).append(domain)
    cond = pl.lit(False)
    for n, domains in sorted(by_labels.items()):
        suffix = host.str.extract(r"((?:[^.]+\.){" + str(n - 1) + r"}[^.]+)$", 1)
        cond = cond | suffix.is_in(domains).fill_null(False)
    return cond


REASON_DETAILS = {
    "empty_text": "empty caption / texts",
    "too_long": f"URL longer than {MAX_URL_CHARS} characters",
    "bad_scheme": "scheme is not http or https",
    "malformed": "no scheme://, bad host, numeric host that is not a dotted quad, or bad port",
    "private_address": "host is localhost, a single-label name or a non-global IP",
    "non_public_tld": f"host in {', '.join('.' + t for t in NON_PUBLIC_TLDS)}",
    "tor_gateway": "host is a Tor-to-web gateway (*.onion.link, *.tor2web.org ...)",
    "denylisted_domain": "host is on the denylist",
    "duplicate_url": "same URL as an earlier kept row",
}


def reason_detail(reason: pl.Expr, host: pl.Expr) -> pl.Expr:
    """A reject's `detail`: what the reason means, and the host it was found in."""
    import polars as pl

    text = reason.replace_strict(REASON_DETAILS, default="", return_dtype=pl.String)
    return pl.when(host.is_not_null()).then(pl.format("{} (host {})", text, host)).otherwise(text)
