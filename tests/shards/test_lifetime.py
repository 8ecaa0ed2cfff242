"""kill -9 of `vlmdata shard --workers 2` or `vlmdata download`: no process outlives the command,
and a rerun straight after resumes and finishes. A plain `kill` (SIGTERM, also a scheduler's
preemption) goes through the command's cleanup: exit 143, no temp or spill file left in TMPDIR.

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

from tests.proc_tree import descendants, wait_gone
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


def _env(tmp: Path) -> dict[str, str]:
    """The CLI's environment, with a TMPDIR of the test's own: what a kill leaves there (the
    plan's spill file) is looked at, and never lands in the machine's /tmp."""
    tmp.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(tmp)}


def _kill_when(proc: subprocess.Popen, at_least: int, timeout: float = 120,
               sig: int = signal.SIGKILL, ready=lambda: True) -> set[int]:  # fmt: skip
    """Send `sig` to `proc` once it has `at_least` descendants and `ready()` holds; return them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before it could be killed"
        found = descendants(proc.pid)
        if len(found) >= at_least and ready():
            time.sleep(0.5)  # let them get going
            found |= descendants(proc.pid)
            os.kill(proc.pid, sig)
            proc.wait(timeout=120)
            return found
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} child processes after {timeout} s")


def test_shard_workers_die_with_a_killed_shard_and_a_rerun_resumes(tmp_path):
    manifest, images = make_good_set(tmp_path / "in", 1500)
    out = tmp_path / "out"
    args = ["shard", manifest, "--images", images, "-o", out, "--workers", 2, "--quiet"]
    args += ["--samples-per-shard", 100]
    env = _env(tmp_path / "tmp")
    proc = subprocess.Popen(_cli(*args), env=env, stderr=subprocess.DEVNULL)
    workers = _kill_when(proc, at_least=2)
    assert wait_gone(workers) == set(), "pool workers outlived the killed command"
    _assert_rerun_resumes(args, env, manifest, images, tmp_path / "fresh")


def _assert_rerun_resumes(args: list, env: dict, manifest: Path, images: Path, fresh: Path):
    out = Path(args[args.index("-o") + 1])
    rerun = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    write_shards(manifest, images, fresh, samples_per_shard=100, progress=False)
    for name in (layout.INDEX, "wids.json", "shards/train/data-000007.tar"):
        assert (out / name).read_bytes() == (fresh / name).read_bytes(), name


def test_sigterm_stops_shard_through_its_cleanup_and_a_rerun_resumes(tmp_path):
    """Python's default for SIGTERM is to die at once: the plan's spill file (hundreds of MB at
    CC3M's size) stayed in TMPDIR and the pool's semaphores leaked."""
    manifest, images = make_good_set(tmp_path / "in", 3000)
    out, tmp = tmp_path / "out", tmp_path / "tmp"
    args = ["shard", manifest, "--images", images, "-o", out, "--workers", 2, "--quiet"]
    args += ["--samples-per-shard", 100]
    env = _env(tmp)
    proc = subprocess.Popen(_cli(*args), env=env, stderr=subprocess.PIPE, text=True)
    spilling = lambda: any(tmp.glob("vlmdata-plan-*.spill"))  # noqa: E731
    workers = _kill_when(proc, at_least=2, sig=signal.SIGTERM, ready=spilling)
    stderr = proc.stderr.read()
    assert proc.returncode == 143, stderr
    assert stderr.splitlines()[-1] == "terminated (SIGTERM)"
    assert "leaked" not in stderr  # the pool's semaphores were released
    assert sorted(tmp.iterdir()) == []
    assert wait_gone(workers) == set(), "pool workers outlived the terminated command"
    _assert_rerun_resumes(args, env, manifest, images, tmp_path / "fresh")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
def test_img2dataset_dies_with_a_killed_download_and_a_rerun_resumes(tmp_path, sig):
    with serve_images(slow_seconds=60) as server:
        slow = [server.url("slow", i) for i in range(4)]  # different bytes from img 10-17
        urls = slow + [server.url("img", 10 + i) for i in range(8)]
        tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
        tsv.write_text("".join(f"caption {i}\t{u}\n" for i, u in enumerate(urls)))
        out = tmp_path / "out"
        args = ["download", "cc3m", tsv, "-o", out, "--allow-private", "--quiet"]
        args += ["--processes", 2, "--threads", 2, "--timeout", 90, "--download-shard-size", 3]
        env = _env(tmp_path / "tmp")
        proc = subprocess.Popen(_cli(*args), env=env, stderr=subprocess.PIPE, text=True)
        # the child, its two spawned workers and the resource tracker / logger
        spawned = _kill_when(proc, at_least=4, sig=sig)
        assert wait_gone(spawned) == set(), "img2dataset processes outlived the command"
        if sig == signal.SIGTERM:  # stopped through its cleanup
            assert proc.returncode == 143 and proc.stderr.read().endswith("(SIGTERM)\n")
            assert sorted((tmp_path / "tmp").iterdir()) == []
        server._server.slow_seconds = 0  # the rerun finds a fast server
        rerun = subprocess.run(_cli(*args), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    keys = ShardReader(out).index["key"].to_list()
    assert keys == [f"cc3m_val_{i:08d}" for i in range(1, 13)]
    assert pl.read_parquet(out / layout.REJECTS).height == 0


def test_stop_group_waits_for_the_group_and_kills_what_ignores_sigterm():
    """The leader dies at once on SIGTERM (as DeepSpeed's runner does); its child ignores it:
    stop_group still ends the child, with SIGKILL once the grace period is over."""
    from vlmdata.core.lifetime import stop_group

    code = ("import signal, subprocess, sys, time; "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(60)']); "
            "time.sleep(60)")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True,
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout.readline() == b"\n"  # the child has set SIG_IGN
    child = descendants(proc.pid)
    t0 = time.monotonic()
    stop_group(proc, grace_seconds=1.5)
    assert 1.5 <= time.monotonic() - t0 < 10  # waited for the child, then killed it
    assert proc.returncode == -signal.SIGTERM
    assert len(child) == 1 and wait_gone(child, seconds=5) == set()
