"""kill -9 of `vlmdata shard --workers 2` or `vlmdata download`: no process outlives the command,
and a rerun straight after resumes and finishes.

The commands run as real subprocesses (the CLI entry point) so that the kill is the real one;
their descendants are found through /proc (Linux only, like PR_SET_PDEATHSIG itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.shards.conftest import make_good_set
from tests.shards.http_server import serve_images
from vlmdata.core import layout
from vlmdata.shards import ShardReader, write_shards

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)"),
]
ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-c", "from cli.vlmdata import main; main()", *map(str, args)]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def _children() -> dict[int, list[int]]:
    """ppid -> pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z":  # zombies are gone already, waiting to be reaped
            tree.setdefault(int(fields[1]), []).append(int(entry))
    return tree


def _descendants(pid: int) -> set[int]:
    tree, found, todo = _children(), set(), [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _alive(pids: set[int]) -> set[int]:
    tree = _children()
    live = {p for kids in tree.values() for p in kids}
    return pids & live


def _kill_when(proc: subprocess.Popen, at_least: int, timeout: float = 120) -> set[int]:
    """SIGKILL `proc` once it has `at_least` descendants; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before it could be killed"
        found = _descendants(proc.pid)
        if len(found) >= at_least:
            time.sleep(0.5)  # let them get going
            found |= _descendants(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} child processes after {timeout} s")


def _wait_gone(pids: set[int], seconds: float = 15) -> set[int]:
    deadline = time.monotonic() + seconds
    while _alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _alive(pids)


def test_shard_workers_die_with_a_killed_shard_and_a_rerun_resumes(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 1500)
    out = tmp_path / "out"
    args = ["shard", manifest, "--images", images, "-o", out, "--workers", 2, "--quiet"]
    args += ["--samples-per-shard", 100]
    proc = subprocess.Popen(_cli(*args), env=_env(), stderr=subprocess.DEVNULL)
    workers = _kill_when(proc, at_least=2)
    assert _wait_gone(workers) == set(), "pool workers outlived the killed command"
    rerun = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    fresh = tmp_path / "fresh"
    write_shards(manifest, images, fresh, samples_per_shard=100, progress=False)
    for name in (layout.INDEX, "wids.json", "shards/train/data-000007.tar"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_img2dataset_dies_with_a_killed_download_and_a_rerun_resumes(tmp_path):
    with serve_images(slow_seconds=60) as server:
        slow = [server.url("slow", i) for i in range(4)]  # different bytes from img 10-17
        urls = slow + [server.url("img", 10 + i) for i in range(8)]
        tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text("".join(f"caption {i}\t{u}\n" for i, u in enumerate(urls)))
        out = tmp_path / "out"
        args = ["download", "cc3m", tsv, "-o", out, "--allow-private", "--quiet"]
        args += ["--processes", 2, "--threads", 2, "--timeout", 90, "--download-shard-size", 3]
        proc = subprocess.Popen(_cli(*args), env=_env(), stderr=subprocess.DEVNULL)
        # the child, its two spawned workers and the resource tracker / logger
        spawned = _kill_when(proc, at_least=4)
        assert _wait_gone(spawned) == set(), "img2dataset processes outlived the command"
        server._server.slow_seconds = 0  # the rerun finds a fast server
        rerun = subprocess.run(_cli(*args), env=_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    keys = ShardReader(out).index["key"].to_list()
    assert keys == [f"cc3m_val_{i:08d}" for i in range(1, 13)]
    assert pl.read_parquet(out / layout.REJECTS).height == 0
