"""What a figure depends on beyond the seeds: the library versions and the thread / CPU-kernel
pins of examples/demo.sh. Recorded in each eval report (`made_with`), so a table built from
reports says how THEY were made, not how the shell that prints it is set up."""

from __future__ import annotations

import os

VERSIONED = ("torch", "numpy", "scikit-learn", "open_clip_torch", "transformers", "deepspeed")
PINS = ("OMP_NUM_THREADS", "ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA")


def made_with() -> dict[str, str]:
    """{library: version, pin: value} of this process ('-' / '(unset)' when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    def v(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "-"

    return {**{n: v(n) for n in VERSIONED}, **{k: os.environ.get(k, "(unset)") for k in PINS}}


def format_made_with(facts: dict[str, str]) -> str:
    """`made with torch 2.14.1, ...; OMP_NUM_THREADS=1 ...` (the README table's footer)."""
    libs = ", ".join(f"{n} {facts.get(n, '-')}" for n in VERSIONED)
    pins = " ".join(f"{k}={facts.get(k, '(unset)')}" for k in PINS)
    return f"made with {libs}; {pins}"
