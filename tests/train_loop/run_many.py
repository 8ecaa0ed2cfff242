"""Per-rank script for the ZeRO matrix: `vlmtrain.train.entry` for several resolved configs in
turn, in one process per rank.

Launched by DeepSpeed's launcher exactly as `vlmtrain launch` launches the entry module, but
with many configs: six recipes then cost one launch (Python, torch and DeepSpeed imported and
the process group made once) instead of six, which is most of each tiny run on a small CPU.
Stops at the first failure: the other rank would otherwise wait in a collective. Rank 0 writes
OUTPUT/entry_exit.txt (the entry's exit status) for each config it ran.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from vlmtrain.train.entry import main as entry_main


def output_dir(config: str) -> Path:
    return Path(yaml.safe_load(Path(config).read_text())["output_dir"])


def run(configs: list[str]) -> int:
    for config in configs:
        code = entry_main(["--config", config])
        if os.environ.get("RANK", "0") == "0":
            (output_dir(config) / "entry_exit.txt").write_text(f"{code}\n")
        if code != 0:
            return code
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # launcher
    sys.exit(run(p.parse_args().configs))
