"""Per-rank entry point: `python -m vlmtrain.train.entry --config RESOLVED.yaml [--resume]`.

The DeepSpeed launcher starts one of these per rank (`vlmtrain launch` builds that command) and
sets RANK / WORLD_SIZE / MASTER_* for it; run alone it trains as a world of one.
"""

from __future__ import annotations

import argparse
import os
import sys


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="vlmtrain.train.entry", description=__doc__)
    p.add_argument("--config", required=True, help="resolved YAML config (output_dir/config.yaml)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument(
        "--accelerator",
        default=None,
        help="DeepSpeed accelerator (DS_ACCELERATOR) for this rank; default: cuda when this "
        "machine has CUDA, else cpu",
    )
    p.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # launcher
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.accelerator:  # before deepspeed is imported: it reads DS_ACCELERATOR once
        os.environ["DS_ACCELERATOR"] = args.accelerator
    elif "DS_ACCELERATOR" not in os.environ:  # decided on the machine this rank runs on
        import torch

        if not torch.cuda.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"
    from vlmdata.core.errors import DataError
    from vlmtrain.train import testing
    from vlmtrain.train.config import load_config
    from vlmtrain.train.trainer import train

    testing.install_from_env()  # tests' fault injection (VLMTRAIN_TEST_KILL_AT); else nothing
    try:
        summary = train(load_config(args.config), resume=args.resume)
    except (DataError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    if os.environ.get("RANK", "0") == "0":
        last = summary["last"]
        loss = f", loss {last['loss']:.4f}" if last else ""
        print(f"done: {summary['steps']}/{summary['total']} steps{loss}", flush=True)
        if summary["export"]:
            print(f"export: {summary['export']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
