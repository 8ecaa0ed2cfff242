"""Shared CLI plumbing: exit codes and turning library errors into clear messages."""

from __future__ import annotations

import contextlib
import errno
import functools
import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import click

EXIT_OK = 0
EXIT_REJECTS = 1  # ran, but too much input was rejected (or verify found mismatches)
EXIT_USAGE = 2  # could not run: bad input or options, OUT in use, disk full
EXIT_CRASH = 3  # a bug: an unexpected exception (its traceback is printed)
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_TERMINATED = 143  # SIGTERM (`kill`, a scheduler's preemption): 128 + 15, as the shell says
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


class Terminated(BaseException):
    """SIGTERM arrived: raised where the command is, so that its cleanup runs as for Ctrl-C
    (temp and spill files removed, worker pools and img2dataset stopped) before exit 143.
    A BaseException, like KeyboardInterrupt, so that `except Exception` never swallows it."""


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """SIGTERM raises `Terminated` in the main thread for the length of the block. Python's
    default is to die at once, leaving a large run's plan spill in TMPDIR. Pool workers are
    spawned, so they do not inherit the handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_terminated(signum: int, frame: object) -> None:
        raise Terminated()

    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map library exceptions to one-line messages and exit codes instead of tracebacks;
    anything unexpected is a crash (exit 3), never confused with "too many rejects" (exit 1).
    Ctrl-C and SIGTERM stop the command through its cleanup (exit 130 and 143)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vlmdata.core.errors import DataError
        from vlmdata.core.rejects import RejectRatioExceeded

        try:
            with sigterm_raises():
                return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except RejectRatioExceeded as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_REJECTS)
        except (DataError, FileNotFoundError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except OSError as e:
            if not _disk_full(e):
                _crash()
            click.echo(f"error: {e.strerror} ({e.filename or 'writing output'})", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Terminated:
            click.echo("terminated (SIGTERM)", err=True)
            sys.exit(EXIT_TERMINATED)
        except Exception:
            _crash()

    return wrapper


def _disk_full(e: OSError) -> bool:
    """ENOSPC / EDQUOT, also as pyarrow reports it (errno in the message only)."""
    return e.errno in _DISK_FULL or "No space left on device" in str(e)


def _crash() -> None:
    traceback.print_exc()
    click.echo("error: crashed (a bug; the traceback is above)", err=True)
    sys.exit(EXIT_CRASH)


def checked_device(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A --device callback: a GPU that is not here is a usage error (exit 2) naming what would
    work, raised at parse time before any model is loaded."""
    if value is None:
        return None
    from vlmdata.core.device import check_device
    from vlmdata.core.errors import DataError

    try:
        return check_device(value)
    except DataError as e:
        raise click.BadParameter(str(e), ctx, param) from None


OUT_URL_HELP = "Output folder or URL (s3://bucket/prefix)."


def out_option(help: str = OUT_URL_HELP, local: bool = False) -> Callable[[Any], Any]:
    """The required `-o/--output` OUT of a stage (`--out` kept as an alias), declared once;
    `local`: a local folder only (no URL)."""
    kind = click.Path(file_okay=False) if local else None
    return click.option("-o", "--output", "--out", "out", required=True, type=kind, help=help)


max_reject_ratio_option = click.option(
    "--max-reject-ratio", default=0.5, show_default=True, help="Exit 1 above this reject ratio."
)
