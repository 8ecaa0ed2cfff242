"""Running img2dataset for `vlmdata download`: its arguments, a child process, its error strings.

img2dataset runs in a child process (`python -m vlmdata.download.child CONFIG.json`), not in
ours, because its `download()` installs a SIGINT handler that exits 0 (a Ctrl-C would look
like success), prints to stdout, and spawns worker processes that re-import `__main__`. The
config is JSON, so no argument is ever parsed as code or through a shell.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vlmdata.core.choices import DISTRIBUTORS, FETCH_RESIZE_MODES
from vlmdata.core.errors import DataError
from vlmdata.core.lifetime import stop_group
from vlmdata.download.guard import REFUSED as REFUSED_REDIRECT
from vlmdata.download.guard import TOO_LARGE, TOO_SLOW, FetchPolicy

RAW_FORMATS = ("parquet", "webdataset")
KEY_COLUMN = "vlm_key"  # img2dataset reserves "key" for its positional keys


@dataclass(frozen=True)
class FetchOptions:
    """img2dataset options passed on. resize_mode None keeps the server's bytes untouched."""

    image_size: int = 256
    resize_mode: str | None = None
    encode_format: str = "jpg"
    processes: int = 1
    threads: int = 64
    retries: int = 0
    timeout: int = 10
    distributor: str = "multiprocessing"
    raw_format: str = "parquet"
    raw_shard_size: int = 1000
    user_agent_token: str | None = None
    max_image_bytes: int = 50_000_000  # per response: more is refused (response_too_large)
    deadline: float = 60.0  # seconds per whole response (download_deadline)

    def fingerprint_fields(self) -> dict[str, Any]:
        """The options that change what img2dataset writes (not how fast it writes it)."""
        d = asdict(self)
        for k in ("processes", "threads", "retries", "timeout", "distributor"):
            d.pop(k)
        return d


def check_options(opts: FetchOptions) -> None:
    """Refuse what img2dataset would fail on late or, for ray, silently skip."""
    if opts.distributor not in DISTRIBUTORS:
        raise DataError(f"unknown --distributor {opts.distributor!r}; use {DISTRIBUTORS}")
    if opts.distributor != "multiprocessing" and importlib.util.find_spec(opts.distributor) is None:
        # img2dataset's ray distributor is a no-op when ray is missing: it would "succeed".
        raise DataError(
            f"--distributor {opts.distributor} needs the {opts.distributor} package, which is "
            f"not installed (pip install {opts.distributor}); or use --distributor multiprocessing"
        )
    if opts.resize_mode is not None and opts.resize_mode not in FETCH_RESIZE_MODES:
        raise DataError(f"unknown --resize-mode {opts.resize_mode!r}; use {FETCH_RESIZE_MODES}")
    if opts.raw_format not in RAW_FORMATS:
        raise DataError(f"unknown raw format {opts.raw_format!r}; use {RAW_FORMATS}")
    for name in ("processes", "threads", "raw_shard_size", "timeout", "max_image_bytes"):
        if getattr(opts, name) < 1:
            raise DataError(f"--{name.replace('_', '-')} must be at least 1")
    if not opts.deadline > 0:
        raise DataError("--deadline must be more than 0 seconds")


def fetch_policy(
    opts: FetchOptions, allow_private: bool = False, denylist: list[str] | tuple[str, ...] = ()
) -> FetchPolicy:
    """What img2dataset's workers may fetch: filter-urls' rules for redirects, the caps."""
    return FetchPolicy(allow_private, tuple(denylist), opts.max_image_bytes, opts.deadline)


def img2dataset_kwargs(url_list: Path, raw_dir: Path, opts: FetchOptions) -> dict[str, Any]:
    """Keyword arguments for `img2dataset.download`."""
    keep_bytes = opts.resize_mode is None
    return {
        "url_list": str(url_list),
        "input_format": "parquet",
        "url_col": "url",
        "save_additional_columns": [KEY_COLUMN],
        "output_folder": str(raw_dir),
        "output_format": opts.raw_format,
        "image_size": opts.image_size,
        "resize_mode": opts.resize_mode or "no",
        "encode_format": opts.encode_format,
        "disable_all_reencoding": keep_bytes,
        "processes_count": opts.processes,
        "thread_count": opts.threads,
        "retries": opts.retries,
        "timeout": opts.timeout,
        "distributor": opts.distributor,
        "number_sample_per_shard": opts.raw_shard_size,
        "incremental_mode": "incremental",  # its "overwrite" deletes its own _tmp: we clear
        "compute_hash": None,  # our writer hashes the bytes it keeps
        "extract_exif": False,
        "enable_wandb": False,
        "user_agent_token": opts.user_agent_token,
    }


def finished_shards(raw_dir: Path) -> set[int]:
    """img2dataset shard ids whose `_stats.json` exists (its own resume rule)."""
    if not raw_dir.is_dir():
        return set()
    return {int(p.name.split("_")[0]) for p in raw_dir.glob("*_stats.json")}


def run_img2dataset(
    kwargs: dict[str, Any],
    work_dir: Path,
    expected_shards: int,
    progress: bool = True,
    policy: FetchPolicy | None = None,
) -> None:
    """Run img2dataset in a child process; its output goes to WORK/img2dataset.log.

    Its workers fetch under `policy` (default: FetchPolicy(), private redirects refused). Ctrl-C
    or an exception here stops the child's whole process group; a kill -9 of this process is
    noticed by the child, which then kills that group itself. Finished shards stay for the next
    (incremental) run.
    """
    from tqdm import tqdm

    policy = policy or FetchPolicy()
    config = work_dir / "img2dataset.json"
    body = {"img2dataset": kwargs, "policy": asdict(policy), "parent_pid": os.getpid()}
    config.write_text(json.dumps(body, indent=2, sort_keys=True), encoding="utf-8")
    log_path = work_dir / "img2dataset.log"
    raw_dir = Path(kwargs["output_folder"])
    cmd = [sys.executable, "-m", "vlmdata.download.child", str(config)]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "WANDB_MODE": "disabled"}
    env.setdefault("RAY_TMPDIR", tempfile.gettempdir())  # Ray's sockets: short paths (107 B)
    env["TMPDIR"] = str(_fresh_tmp(work_dir))
    for name in ("PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON"):  # executors run our interpreter
        env.setdefault(name, sys.executable)
    with (
        open(log_path, "ab") as log,
        tqdm(total=expected_shards, desc="downloading", unit="shard", disable=not progress) as bar,
    ):
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            while proc.poll() is None:
                time.sleep(0.5)
                bar.update(len(finished_shards(raw_dir)) - bar.n)
        except BaseException:
            stop_group(proc, STOP_SECONDS)
            raise
        finally:
            shutil.rmtree(env["TMPDIR"], ignore_errors=True)
        bar.update(len(finished_shards(raw_dir)) - bar.n)
    if proc.returncode != 0:
        raise DataError(
            f"img2dataset failed (exit {proc.returncode}); its log ends:\n{_tail(log_path)}",
            file=str(log_path),
        )


STOP_SECONDS = 10  # img2dataset's processes get this long after SIGTERM before SIGKILL


def _fresh_tmp(work_dir: Path) -> Path:
    """An empty TMPDIR for the child, removed after it (and at the next run's start, after a
    kill -9). img2dataset's pool ends its workers with SIGTERM, so their atexit cleanup never
    runs: every worker left two `tmp*wandb-*` folders in /tmp, from its import of wandb."""
    tmp = work_dir / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def _tail(path: Path, lines: int = 15) -> str:
    text = path.read_text(encoding="utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


_HTTP = re.compile(r"HTTP Error (\d{3})")
_RESIZE_REASONS = {
    "image too small": "too_small",
    "image area too large": "too_large",
    "aspect ratio too large": "bad_aspect_ratio",
}


def reject_reason(status: str | None, message: str | None) -> str:
    """A reject reason from img2dataset's status and error_message (kept as the detail).

    Ours (guard.py): "HTTP Error 302: redirect refused (private_address)", "response larger
    than 50,000,000 bytes", "response not complete within 60 s". urllib's: "HTTP Error 404:
    Not Found", "timed out" / "The read operation timed out", "<urlopen error [Errno 111]
    Connection refused>". The resizer's: "image too small", decoder exceptions.
    """
    msg = message or ""
    if REFUSED_REDIRECT in msg:
        return "redirect_refused"
    if msg.startswith(TOO_LARGE):
        return "response_too_large"
    if msg.startswith(TOO_SLOW):
        return "download_deadline"
    if status == "failed_to_resize":
        return _RESIZE_REASONS.get(msg, "decode_failed")
    if m := _HTTP.search(msg):
        return f"http_{m.group(1)}"
    low = msg.lower()
    if "timed out" in low or "timeout" in low:
        return "timeout"
    if "x-robots-tag" in low:
        return "robots_disallowed"
    if msg == "hash mismatch":
        return "hash_mismatch"
    if "urlopen error" in low or "connection" in low:
        return "connection_failed"
    return "download_failed"
