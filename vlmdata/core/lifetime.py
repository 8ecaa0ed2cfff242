"""Child processes that die with their parent, and one run at a time per output folder.

`kill -9` gives a process no chance to stop its children, so each child arranges its own end:
`die_with_parent` asks Linux to SIGKILL it when its parent goes (PR_SET_PDEATHSIG, through
ctypes; a polling thread elsewhere), and `kill_group_with_parent` (for a child that leads its
own process group, such as the img2dataset runner) kills the whole group, grandchildren
included, once its parent is gone.

`stop_group` ends a child's whole process group (SIGTERM, then SIGKILL after a grace
period), waiting for the group and not just its leader.

`out_lock` takes an advisory `flock` on the OUT folder itself (no lock file appears among the
outputs) for the length of a run, so a second run into the same OUT is refused at once instead
of both rewriting the same files. The kernel drops the lock when its holder dies, so a rerun
right after a kill is never blocked.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from vlmdata.core.errors import DataError

_PR_SET_PDEATHSIG = 1
_POLL_SECONDS = 0.2
T = TypeVar("T")


def _set_pdeathsig(sig: int) -> bool:
    """PR_SET_PDEATHSIG on Linux; False where unavailable."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent_pid: int, on_orphan) -> None:
    def loop() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_POLL_SECONDS)
        on_orphan()

    threading.Thread(target=loop, name="vlmdata-parent-watch", daemon=True).start()


def die_with_parent(parent_pid: int) -> None:
    """Make this process end when `parent_pid` (its parent) ends, even by SIGKILL.

    Call first thing in a child (a pool initializer): if the parent is already gone, exit now."""
    if not _set_pdeathsig(signal.SIGKILL):
        _watch(parent_pid, lambda: os._exit(1))
    if os.getppid() != parent_pid:
        os._exit(1)


def kill_group_with_parent(parent_pid: int) -> None:
    """For a process group leader: SIGKILL the whole group (itself included) once `parent_pid`
    is no longer its parent. Grandchildren in the group go too, whatever they are doing."""

    def kill_group() -> None:
        if os.getpgrp() == os.getpid():  # only a group this process leads (never the caller's)
            os.killpg(os.getpgrp(), signal.SIGKILL)
        os._exit(1)

    if os.getppid() != parent_pid:
        kill_group()
    _watch(parent_pid, kill_group)


def stop_group(proc: subprocess.Popen, grace_seconds: float) -> None:
    """End the process group `proc` leads (a child started with start_new_session=True):
    SIGTERM to all of it, then SIGKILL to whatever is left after `grace_seconds`. The group is
    waited for, not the leader alone: DeepSpeed's runner dies at once on SIGTERM while its
    ranks are still stopping."""
    group = proc.pid
    try:
        os.killpg(group, signal.SIGTERM)
    except ProcessLookupError:
        proc.wait()
        return
    deadline = time.monotonic() + grace_seconds
    while time.monotonic() < deadline:
        proc.poll()  # reaps the leader once it ends: a zombie would still count in its group
        if not _group_alive(group):
            break
        time.sleep(0.1)
    if _group_alive(group):
        os.killpg(group, signal.SIGKILL)
    proc.wait()


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


_held: dict[str, tuple[int, int]] = {}  # lock file -> (fd, depth), for nested runs


@contextlib.contextmanager
def out_lock(out_dir: Any) -> Iterator[None]:
    """Hold the run lock of OUT (a folder, an fsspec URL or a Location); DataError at once if
    another process holds it. Re-entrant within a process (download -> write_samples)."""
    path = lock_path(out_dir)
    name = str(path)
    if name in _held:
        fd, depth = _held[name]
        _held[name] = (fd, depth + 1)
        try:
            yield
        finally:
            fd, depth = _held[name]
            _held[name] = (fd, depth - 1)
        return
    fd = _acquire(path)
    _held[name] = (fd, 1)
    try:
        yield
    finally:
        del _held[name]
        os.close(fd)


def lock_path(out_dir: Any) -> Path:
    """What is locked: a local OUT folder itself; for a URL, a file named after it in the
    user's cache (the lock guards runs on this machine: object stores have no locks)."""
    import hashlib

    from vlmdata.core.storage import Location

    out = out_dir if isinstance(out_dir, Location) else Location(out_dir)
    if out.is_local:
        Path(out.url).mkdir(parents=True, exist_ok=True)
        return Path(os.path.realpath(out.url))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vlmdata" / "locks"
    cache.mkdir(parents=True, exist_ok=True)
    return cache / (hashlib.sha256(out.url.encode()).hexdigest()[:16] + ".lock")


def _acquire(path: Path) -> int:
    flags = os.O_RDONLY if path.is_dir() else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags, 0o666)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (documented)
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataError(
            "another vlmdata run is writing into this folder; wait for it to end or use another -o",
            file=str(path),
        ) from None
    return fd


def holds_out_lock(fn: Callable[..., T]) -> Callable[..., T]:
    """Decorator: run `fn` holding the lock of its `out_dir` argument."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        with out_lock(sig.bind(*args, **kwargs).arguments["out_dir"]):
            return fn(*args, **kwargs)

    return wrapper
