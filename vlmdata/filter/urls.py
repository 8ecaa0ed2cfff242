"""`filter-urls`: drop URLs a downloader must not fetch, vectorised with polars.

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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.keyset import HashSet, hash128
from vlmdata.core.rejects import Tally

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
STAGE = "filter-urls"
BLOCK_BYTES = 1 << 21  # TSV read 2 MB at a time (~12k CC3M rows)
MANIFEST_BATCH = 65536  # manifest rows read at a time
GROUP_ROWS = 1 << 20  # output row groups: pyarrow's default for one write_table

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
    steps = [
        ("empty_text", ~pl.col("_text_ok")),
        ("too_long", has_url & (u.str.len_chars() > MAX_URL_CHARS)),
        ("bad_scheme", has_url & scheme.is_not_null() & ~scheme.is_in(["http", "https"])),
        ("malformed", has_url & malformed),
        ("private_address", pl.lit(False) if allow_private else has_url & private),
        ("non_public_tld", has_url & host.str.contains(_TLD_RE)),
        ("tor_gateway", has_url & host.str.contains(_TOR_GATEWAY)),
        ("denylisted_domain", has_url & _denied(host, denylist)),
    ]
    reason = pl.lit(None, dtype=pl.String)
    for name, cond in reversed(steps):
        reason = pl.when(cond.fill_null(False)).then(pl.lit(name)).otherwise(reason)
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


_DETAILS = {
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


@dataclass
class FilterResult(Tally):
    """What filter-urls kept and rejected (and a skipped CC3M header line, counted)."""

    header: int = 0

    def summary(self) -> str:
        return self.table() + (f"\nheader    {self.header:>10,}" if self.header else "")


def _detail(reason: pl.Expr, host: pl.Expr) -> pl.Expr:
    import polars as pl

    text = reason.replace_strict(_DETAILS, default="", return_dtype=pl.String)
    return pl.when(host.is_not_null()).then(pl.format("{} (host {})", text, host)).otherwise(text)


Blocks = Iterator[tuple["pl.DataFrame", "pl.DataFrame", int]]


def _cc3m_blocks(path: Path, split: str | None, **rules) -> Blocks:
    """(kept rows in manifest columns, rejects in REJECT_SCHEMA columns, header lines skipped)
    of a Google TSV, block by block (bounded memory; URLs of earlier blocks kept as 128-bit
    hashes); rows and keys from the one CC3M builder (`manifest cc3m` uses it too)."""
    import polars as pl

    from vlmdata.sources.cc3m import iter_google_frames

    seen = HashSet()
    for tsv in iter_google_frames(path, split, block_bytes=BLOCK_BYTES):
        rows, bad_lines = tsv.rows, tsv.rejects
        verdict = url_reasons(rows, text_ok=pl.col("caption") != "", seen=seen, **rules)
        rows = pl.concat([rows, verdict], how="horizontal")
        kept = tsv.manifest_columns(rows.filter(pl.col("reason").is_null()))
        url_rejects = rows.filter(pl.col("reason").is_not_null()).select(
            "line",
            "key",
            "reason",
            detail=_detail(pl.col("reason"), pl.col("host")),
            record=pl.struct("caption", "url").struct.json_encode(),
        )
        rejects = pl.concat(
            [url_rejects, bad_lines.with_columns(key=pl.lit(None, pl.String))], how="diagonal"
        )
        yield kept, rejects.sort("line"), tsv.header


def _manifest_blocks(path: Path, **rules) -> Blocks:
    """Like `_cc3m_blocks` for a manifest parquet, MANIFEST_BATCH rows at a time; `line` in
    rejects is the 0-based row index."""
    import polars as pl
    import pyarrow.parquet as pq

    from vlmdata.core.manifest import check_manifest_schema, texts_ok

    check_manifest_schema(pq.read_schema(path), ("key", "url", "texts"), path)
    seen, start = HashSet(), 0
    for table in _manifest_tables(path):
        rows = pl.from_arrow(table)
        original = rows.columns
        rows = rows.with_columns(pl.col("url").str.strip_chars())
        verdict = url_reasons(rows, text_ok=texts_ok(), seen=seen, **rules)
        rows = pl.concat([rows.with_row_index("line", start), verdict], how="horizontal")
        start += rows.height
        kept = rows.filter(pl.col("reason").is_null()).select(original)
        rejects = rows.filter(pl.col("reason").is_not_null()).select(
            pl.col("line").cast(pl.Int64),
            "key",
            "reason",
            detail=pl.concat_str(pl.lit("row index: "), _detail(pl.col("reason"), pl.col("host"))),
            record=pl.struct(original).struct.json_encode(),
        )
        yield kept, rejects, 0


def _manifest_tables(path: Path):
    """The manifest MANIFEST_BATCH rows at a time; an empty manifest is one empty table."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    empty = True
    for batch in pq.ParquetFile(path).iter_batches(batch_size=MANIFEST_BATCH):
        empty = False
        yield pa.Table.from_batches([batch])
    if empty:
        yield pq.read_schema(path).empty_table()


def _kept_schema(kept: pl.DataFrame):
    """Manifest columns get the manifest's exact Arrow types (so it concats with others)."""
    from vlmdata.core.manifest import CORE_FIELDS, OPTIONAL_COLUMNS, manifest_schema

    known = {name for name, _ in CORE_FIELDS} | set(OPTIONAL_COLUMNS)
    if set(kept.columns) <= known and {n for n, _ in CORE_FIELDS} <= set(kept.columns):
        return manifest_schema([c for c in kept.columns if c in OPTIONAL_COLUMNS])
    return kept.to_arrow().schema


def _write(blocks, out: Path, path: Path) -> tuple[int, Counter, int]:
    """Stream (kept, rejects, header) blocks into OUT's manifest and rejects tables,
    row groups of GROUP_ROWS (pyarrow's default for one whole-table write: byte-identical to
    writing everything at once). Returns (kept, reject counts, header lines)."""
    import polars as pl

    from vlmdata.core.parquet_rows import RowsWriter
    from vlmdata.core.rejects import RejectWriter

    header, kept_writer = 0, None
    try:
        with RejectWriter(out / layout.REJECTS, GROUP_ROWS, empty_group=True) as rejects_writer:
            for kept, rejects, head in blocks:
                header += head
                if kept_writer is None:
                    kept_writer = RowsWriter(
                        out / layout.MANIFEST, _kept_schema(kept), GROUP_ROWS, empty_group=True
                    )
                kept_writer.write_table(kept.to_arrow())
                rejects = rejects.with_columns(stage=pl.lit(STAGE), file=pl.lit(str(path)))
                rejects_writer.stream_table(rejects.to_arrow())
            counts = Counter(rejects_writer.counts)
            kept_writer.close()  # the manifest first, then the rejects (as before)
    except BaseException:
        if kept_writer is not None:
            kept_writer.abort()
        raise
    return kept_writer.count, counts, header


def _counted(blocks, progress: bool):
    """The blocks as they come, with a bar of the rows read (kept + rejected) when `progress`."""
    from tqdm import tqdm

    with tqdm(desc="filter-urls", unit=" rows", disable=not progress, mininterval=0.5) as bar:
        for kept, rejects, head in blocks:
            bar.update(kept.height + rejects.height)
            yield kept, rejects, head


def filter_urls(
    input_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    fmt: str | None = None,
    denylist: str | os.PathLike | None = None,
    allow_private: bool = False,
    split: str | None = None,
    progress: bool = False,
) -> FilterResult:
    """Filter a Google CC3M TSV (`fmt="cc3m"`) or a manifest parquet (`fmt="manifest"`; the default
    for *.parquet) into OUT/manifest/manifest.parquet (kept) and OUT/rejects/rejects.parquet.
    `progress`: a running count of the rows read, block by block (2 MB blocks)."""

    path = Path(input_path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    fmt = fmt or ("manifest" if path.suffix == ".parquet" else "cc3m")
    rules = {
        "denylist": load_denylist(denylist) if denylist else [],
        "allow_private": allow_private,
    }
    if fmt == "cc3m":
        blocks = _cc3m_blocks(path, split, **rules)
    elif fmt == "manifest":
        if split:
            raise DataError("--split applies to cc3m input; a manifest has its own splits")
        blocks = _manifest_blocks(path, **rules)
    else:
        raise DataError(f"unknown format {fmt!r}; use cc3m or manifest")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    kept, counts, header = _write(_counted(blocks, progress), out, path)
    return FilterResult(kept=kept, rejects=counts, header=header)
