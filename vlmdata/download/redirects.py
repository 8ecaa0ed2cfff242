"""Refusing redirects to private hosts inside img2dataset (which follows redirects with urllib).

filter-urls checks the URLs we hand over, but a public URL may answer `302 Location:
http://169.254.169.254/...`. img2dataset calls `urllib.request.urlopen`, which uses the global
opener, so the child process installs an opener whose redirect handler applies the same rules
as filter-urls (scheme http/https, no localhost, no non-global IP literal) to every redirect
target. Like filter-urls it does not resolve DNS names.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from vlmdata.filter.urls import ip_is_private

REFUSED = "redirect to a private address refused"
ALLOW_PRIVATE_ENV = "VLMDATA_ALLOW_PRIVATE"  # "1": the child follows any redirect


def redirect_refused(url: str) -> bool:
    """True when a redirect target is not a public http(s) URL."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
    except ValueError:
        return True
    if parts.scheme.lower() not in ("http", "https") or not host:
        return True
    if host == "localhost" or host.endswith(".localhost"):
        return True
    return bool(ip_is_private(host))


class PublicRedirectHandler(urllib.request.HTTPRedirectHandler):
    """urllib's redirect handling, but a private target raises HTTPError instead."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: PLR0913 (urllib's)
        if redirect_refused(newurl):
            raise urllib.error.HTTPError(newurl, code, REFUSED, headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def public_redirect_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(PublicRedirectHandler)


def install() -> None:
    """Make `urllib.request.urlopen` (img2dataset's fetch) refuse private redirects."""
    urllib.request.install_opener(public_redirect_opener())
