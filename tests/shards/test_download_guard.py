"""The fetch guard (vlmdata/download/guard.py): the URL rule on every redirect, a byte cap and a
whole-response deadline, in-process and inside img2dataset's workers under each distributor.

The loopback server itself is reached on purpose (its URLs are handed straight to img2dataset,
as filter-urls with --allow-private would); what is under test is where its 302s lead: 127.0.0.1
written as resolvers also read it (`2130706433`, `127.1`, `0x7f000001`, `0177.0.0.1`, `0`,
full-width digits). Without the guard urllib follows each of them back to the server.
"""

from __future__ import annotations

import importlib.util
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.shards.http_server import HOP_FORMS, image_bytes, serve_images
from vlmdata.download.guard import FetchPolicy, fetch_image, redirect_problem
from vlmdata.download.img2dataset_run import (
    FetchOptions,
    img2dataset_kwargs,
    reject_reason,
    run_img2dataset,
)
from vlmdata.download.results import read_status
from vlmdata.filter.urls import url_reason

# each of these reaches 127.0.0.1 or the cloud metadata service (2852039166 = 169.254.169.254)
ATTACK_TARGETS = [
    "http://2130706433/x.jpg",
    "http://127.1/x.jpg",
    "http://0x7f000001/x.jpg",
    "http://0177.0.0.1/x.jpg",
    "http://0/x.jpg",
    "http://2852039166/latest/meta-data/",
    "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/x.jpg",
    "http://metadata/computeMetadata/v1/",
    "http://localhost.localdomain/x.jpg",
    "http://127.0.0.1\\@example.com/x.jpg",
    "http://abcdefghijklmnop.onion/x.jpg",
    "http://metadata.google.internal/x.jpg",
    "http://dstormer6em3i4km.onion.link/x.jpg",
    "file:///etc/passwd",
]


@pytest.mark.parametrize("target", ATTACK_TARGETS)
def test_redirect_targets_get_the_filter_urls_rule(target):
    reason = url_reason(target)
    assert reason is not None
    assert redirect_problem(target, FetchPolicy()) == reason


def test_allow_private_does_not_open_numeric_forms():
    policy = FetchPolicy(allow_private=True)
    assert redirect_problem("http://127.0.0.1:8000/x.jpg", policy) is None
    assert redirect_problem("http://2130706433:8000/x.jpg", policy) == "malformed"
    assert redirect_problem("http://x.onion.to/a.jpg", policy) == "tor_gateway"
    denied = FetchPolicy(denylist=("blocked.example",))
    assert redirect_problem("http://cdn.blocked.example/a.jpg", denied) == "denylisted_domain"


def _fetch(url: str, policy: FetchPolicy, timeout: float = 5):
    key, stream, error = fetch_image((0, url), timeout, None, None, policy=policy)
    return (stream.getvalue() if stream is not None else None), error


@pytest.mark.parametrize("form", sorted(HOP_FORMS))
def test_guard_refuses_loopback_hops_before_connecting(form):
    with serve_images() as server:
        data, error = _fetch(server.url(f"hop-{form}", 4), FetchPolicy())
        assert server.hits == [f"/hop-{form}/4.jpg"]  # the target was never requested
    assert data is None
    assert reject_reason("failed_to_download", error) == "redirect_refused", error


def test_allow_private_follows_only_the_canonical_loopback():
    with serve_images() as server:
        data, error = _fetch(server.url("hop-dotted", 4), FetchPolicy(allow_private=True))
        assert data == image_bytes(4) and error is None
        data, error = _fetch(server.url("hop-decimal", 4), FetchPolicy(allow_private=True))
        assert data is None and "redirect refused (malformed)" in error


def test_byte_cap_without_content_length():
    with serve_images() as server:
        data, error = _fetch(server.url("big", 1), FetchPolicy(max_bytes=1_000_000))
        assert data is None
        assert reject_reason("failed_to_download", error) == "response_too_large", error
        data, error = _fetch(server.url("img", 1), FetchPolicy(max_bytes=len(image_bytes(1))))
        assert data == image_bytes(1)  # exactly at the cap is fine


def test_deadline_covers_the_whole_response():
    """Every read arrives well within the 3 s socket timeout; the whole takes ~8 s."""
    with serve_images() as server:
        start = time.monotonic()
        data, error = _fetch(server.url("drip", 2), FetchPolicy(deadline=1.0), timeout=3)
        elapsed = time.monotonic() - start
    assert data is None
    assert reject_reason("failed_to_download", error) == "download_deadline", error
    assert elapsed < 3.0


def _expected(url_kinds: dict[str, str]) -> dict[str, str]:
    return {
        key: {"img": "success", "big": "response_too_large", "drip": "download_deadline"}.get(
            kind, "redirect_refused"
        )
        for key, kind in url_kinds.items()
    }


def _run_guarded(tmp_path, distributor: str) -> None:
    """img2dataset under `distributor`, no --allow-private: statuses and server hits."""
    # two processes: img2dataset's spark session is then local[2]
    fetch = FetchOptions(processes=2, threads=4, timeout=3, distributor=distributor)
    policy = FetchPolicy(max_bytes=1_000_000, deadline=1.5)
    with serve_images() as server:
        kinds = {f"hop_{form}": f"hop-{form}" for form in HOP_FORMS}
        kinds |= {"img": "img", "big": "big", "drip": "drip"}
        urls = [server.url(route, 4 if route.startswith("hop") else 1) for route in kinds.values()]
        url_list = tmp_path / "urls.parquet"
        pq.write_table(pa.table({"url": urls, "vlm_key": list(kinds)}), url_list)
        kwargs = img2dataset_kwargs(url_list, tmp_path / "raw", fetch)
        run_img2dataset(kwargs, tmp_path, 1, progress=False, policy=policy)
        assert "/img/4.jpg" not in server.hits  # no hop reached its target
    status = read_status(tmp_path / "raw", 0)
    got = {
        k: reject_reason(v.status, v.error) if v.status != "success" else v.status
        for k, v in status.items()
    }
    assert got == _expected(kinds)


@pytest.mark.slow
def test_multiprocessing_workers_are_guarded(tmp_path):
    _run_guarded(tmp_path, "multiprocessing")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None or shutil.which("java") is None,
    reason="pyspark and java needed",
)
def test_pyspark_executors_are_guarded(tmp_path):
    _run_guarded(tmp_path, "pyspark")


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="ray needed")
def test_ray_workers_are_guarded(tmp_path):
    _run_guarded(tmp_path, "ray")
