"""Fault injection for tests: named points of a checkpoint save where a test may kill a run.

The trainer calls `reached(NAME)` at each point while it saves a step (between
`saving(step)` and `saving(None)`); with no hook installed that is a no-op. A test installs a
hook in-process with `install(hook)`, or, for ranks started by `vlmtrain launch`, sets
VLMTRAIN_TEST_KILL_AT="POINT@STEP" in the launch's environment: the rank entry point calls
`install_from_env()` once, and the hook SIGKILLs the rank at that point of that step's save.
Nothing else reads the variable, and no CLI flag exists for it.

Points: `model_states` (a rank wrote its model-states file, not yet its optimizer one),
`deepspeed_saved` (DeepSpeed's files written: where its own `latest` used to appear),
`before_latest` (complete.json written, `latest` not yet).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Mapping

KILL_ENV = "VLMTRAIN_TEST_KILL_AT"
POINTS = ("model_states", "deepspeed_saved", "before_latest")

Hook = Callable[[str, int], None]  # (point, step being saved)
_hook: list[Hook] = []
_step: list[int] = []


def install(hook: Hook | None) -> None:
    """Install `hook` (None removes it); it runs at every point of every save."""
    _hook[:] = [] if hook is None else [hook]


def saving(step: int | None) -> None:
    """The step being saved (the trainer sets it around a save; None after)."""
    _step[:] = [] if step is None else [step]


def reached(point: str) -> None:
    if _hook and _step:
        _hook[0](point, _step[0])


def kill_at(point: str, step: int) -> Hook:
    """A hook that SIGKILLs this process at `point` of step `step`'s save."""
    if point not in POINTS:
        raise ValueError(f"{KILL_ENV}: unknown point {point!r} (one of {', '.join(POINTS)})")

    def hook(name: str, saving_step: int) -> None:
        if name == point and saving_step == step:
            os.kill(os.getpid(), signal.SIGKILL)

    return hook


def install_from_env(environ: Mapping[str, str] = os.environ) -> None:
    """Install `kill_at` from VLMTRAIN_TEST_KILL_AT="POINT@STEP" when it is set."""
    want = environ.get(KILL_ENV)
    if not want:
        return
    point, _, step = want.partition("@")
    if not step.isdigit():
        raise ValueError(f"{KILL_ENV}={want!r}: expected POINT@STEP")
    install(kill_at(point, int(step)))
