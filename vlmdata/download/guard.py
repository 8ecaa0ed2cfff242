"""The fetch guard inside img2dataset's workers: one URL rule, a byte cap and a deadline.

img2dataset fetches with `urllib` in worker processes that its distributor starts: spawned
`multiprocessing` workers, pyspark executors or ray workers. None of them runs our code unless
the object they are sent carries it, so `GuardedDownloader` wraps img2dataset's `Downloader`
(the one object every distributor pickles and calls once per shard): its `__call__` installs
the guard in whatever process it lands in, with the policy it carries (no environment
variables, no import-order tricks), then runs the shard.

The guard replaces `img2dataset.downloader.download_image` in that process with `fetch_image`:
- every redirect target must pass `url_reason`, the very rule filter-urls applies to the URLs
  handed over (numeric IP forms, private hosts, .onion, Tor gateways, the denylist ...);
- the body is read in pieces and refused past `max_bytes` (a response without a length cannot
  fill memory) or once `deadline` seconds have passed since the request began (a server that
  drips bytes cannot hold a thread for ever; it may overshoot by one socket `timeout`).
Like filter-urls it does not resolve DNS names.
"""

from __future__ import annotations

import functools
import io
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

REFUSED = "redirect refused"
TOO_LARGE = "response larger than"
TOO_SLOW = "response not complete within"
_CHUNK = 1 << 16


@dataclass(frozen=True)
class FetchPolicy:
    """What a worker may fetch. Small and picklable: it travels inside GuardedDownloader."""

    allow_private: bool = False
    denylist: tuple[str, ...] = ()
    max_bytes: int = 50_000_000
    deadline: float = 60.0


def redirect_problem(url: str, policy: FetchPolicy) -> str | None:
    """The filter-urls reason that refuses `url` as a redirect target, else None."""
    from vlmdata.filter.urls import url_reason

    return url_reason(url, denylist=list(policy.denylist), allow_private=policy.allow_private)


class GuardedRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling; a target the URL rule refuses raises HTTPError instead."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy = policy

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 (urllib's)
        reason = redirect_problem(newurl, self.policy)
        if reason is not None:
            raise urllib.error.HTTPError(newurl, code, f"{REFUSED} ({reason})", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def guarded_opener(policy: FetchPolicy) -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(GuardedRedirectHandler(policy))


class FetchRefused(Exception):
    """A response over the byte cap or past the deadline (its message is the reject detail)."""


def read_capped(response: Any, policy: FetchPolicy, started: float) -> bytes:
    """The body, or FetchRefused past `policy.max_bytes` bytes or `policy.deadline` seconds
    after `started` (a time.monotonic() value)."""
    cap = policy.max_bytes
    length = (response.headers.get("Content-Length") or "").strip()
    if length.isdigit() and int(length) > cap:
        raise FetchRefused(f"{TOO_LARGE} {cap:,} bytes (Content-Length {int(length):,})")
    parts, size = [], 0
    while chunk := response.read1(_CHUNK):
        size += len(chunk)
        if size > cap:
            raise FetchRefused(f"{TOO_LARGE} {cap:,} bytes")
        if time.monotonic() - started > policy.deadline:
            raise FetchRefused(f"{TOO_SLOW} {policy.deadline:g} s ({size:,} bytes so far)")
        parts.append(chunk)
    return b"".join(parts)


def fetch_image(
    row: tuple[Any, str],
    timeout: float,
    user_agent_token: str | None,
    disallowed_header_directives: set[str] | None,
    *_: Any,
    policy: FetchPolicy,
    **__: Any,
) -> tuple[Any, io.BytesIO | None, str | None]:
    """img2dataset's `download_image` contract: (key, stream, None) or (key, None, message)."""
    from img2dataset.downloader import is_disallowed

    key, url = row
    agent = "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:72.0) Gecko/20100101 Firefox/72.0"
    if user_agent_token:
        agent += f" (compatible; {user_agent_token}; +https://github.com/rom1504/img2dataset)"
    started = time.monotonic()
    try:
        request = urllib.request.Request(url, headers={"User-Agent": agent})
        with guarded_opener(policy).open(request, timeout=timeout) as r:
            if disallowed_header_directives and is_disallowed(
                r.headers, user_agent_token, disallowed_header_directives
            ):
                return key, None, "Use of image disallowed by X-Robots-Tag directive"
            data = read_capped(r, policy, started)
    except Exception as e:  # noqa: BLE001 - img2dataset records any failure as a message
        return key, None, str(e)
    return key, io.BytesIO(data), None


_installed: FetchPolicy | None = None


def install(policy: FetchPolicy) -> None:
    """Make this process's img2dataset fetch through `fetch_image` under `policy`.

    Also installs the guarded opener as urllib's global one, for any other `urlopen` caller.
    Idempotent; a different policy replaces the earlier one."""
    global _installed
    if _installed == policy:
        return
    import importlib

    downloader = importlib.import_module("img2dataset.downloader")
    downloader.download_image = functools.partial(fetch_image, policy=policy)
    urllib.request.install_opener(guarded_opener(policy))
    _installed = policy


class GuardedDownloader:
    """img2dataset's Downloader, carrying the policy to whichever process calls it."""

    def __init__(self, downloader: Any, policy: FetchPolicy) -> None:
        self.downloader = downloader
        self.policy = policy

    def __call__(self, row: Any) -> Any:
        install(self.policy)
        return self.downloader(row)


def guard_img2dataset(policy: FetchPolicy) -> None:
    """In the process that calls `img2dataset.download`: every Downloader it builds is guarded
    (and this process's own fetches too)."""
    import importlib

    main = importlib.import_module("img2dataset.main")  # the package hides it behind main()
    real = getattr(main.Downloader, "__wrapped__", main.Downloader)

    @functools.wraps(real, updated=())
    def make(*args: Any, **kwargs: Any) -> GuardedDownloader:
        return GuardedDownloader(real(*args, **kwargs), policy)

    main.Downloader = make
    install(policy)
