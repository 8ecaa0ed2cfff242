"""Shared CLI plumbing: exit codes and turning library errors into clear messages."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_OK = 0
EXIT_REJECTS = 1  # ran, but too much input was rejected (or verify found mismatches)
EXIT_USAGE = 2  # bad input


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map library exceptions to one-line messages and exit codes instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from vlmdata.core.errors import DataError
        from vlmdata.core.rejects import RejectRatioExceeded

        try:
            return fn(*args, **kwargs)
        except RejectRatioExceeded as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_REJECTS)
        except (DataError, FileNotFoundError) as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(EXIT_USAGE)

    return wrapper
