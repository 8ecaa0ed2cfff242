"""`--device` checked before any work: a GPU named on a machine without one is a usage error
(exit 2, naming what would work), not a crash deep inside torch."""

from __future__ import annotations

from vlmdata.core.errors import DataError


def check_device(device: str, option: str = "--device") -> str:
    """`device` itself when torch can use it here; else a DataError saying what is available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as e:
        raise DataError(
            f"{option} {device!r} is not a device (cpu, cuda, cuda:1, ...): {e}"
        ) from None
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DataError(f"{option} {device}: no CUDA GPU is visible here; use {option} cpu")
        if dev.index is not None and dev.index >= count:
            raise DataError(f"{option} {device}: only {count} CUDA GPU(s) here "
                            f"(cuda:0 .. cuda:{count - 1})")  # fmt: skip
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise DataError(f"{option} mps: no Apple GPU here; use {option} cpu")
    elif dev.type not in ("cpu", "mps"):
        raise DataError(f"{option} {device!r}: use cpu or cuda[:N]")
    return device
