"""CPU, peak RSS and output digest of the whole `vlmdata build-trie --entities` command (issue 23).

Inputs are those of `benchmarks/bench_scale.py`: the `entities.parquet` that `manifest oven-kb`
writes, with names drawn like OVEN's `Wiki6M_ver_1_0.jsonl` titles (tests/scale_inputs.py,
`gen_entities`), and a 32k byte-level BPE trained on such names (`ensure_tokenizer`). Each run
is a child process (user+sys CPU and max RSS from `os.wait4`, as bench_scale does); the sha256
of the trie file shows the output did not change. `--tree DIR` runs another checkout (e.g. the
code before a change, `git archive BASE | tar -x -C DIR`) on the same inputs.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_trie_build.py --rows 100000 1000000 6000000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_trie_build.py --rows 1000000 --tree /tmp/base
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_scale import ensure_tokenizer, generate, run_child  # noqa: E402


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def run(tree: Path, d: Path, tok: Path, out: Path) -> dict:
    """One `build-trie --entities` run of the checkout `tree`: CPU s, peak RSS MB, digest."""
    # `-c` puts the working directory first on sys.path: the tree goes before it, or a run
    # from this checkout would import this checkout's code whatever --tree says.
    code = f"import sys; sys.path.insert(0, {str(tree)!r}); from cli.vlmdata import main; main()"
    cmd = [sys.executable, "-c", code, "build-trie", "--entities", str(d / "kb/entities.parquet"),
           "--tokenizer", str(tok), "-o", str(out)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(tree))
    cpu, rss, rc, wall = run_child(cmd, env)
    res = {"cpu_s": round(cpu, 1), "peak_rss_mb": round(rss), "wall_s": round(wall, 1), "rc": rc}
    if rc == 0:
        res |= {"file_mb": round(out.stat().st_size / 2**20, 1), "sha256": sha256(out)[:16]}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench_scale"))
    ap.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    ensure_tokenizer(args.dir)
    for n in args.rows:
        d = args.dir / str(n)
        generate(d, "kb", n)
        res = run(args.tree.resolve(), d, args.dir / "tok32k", d / "entities.trie")
        print(json.dumps({"rows": n, "tree": str(args.tree)} | res), flush=True)
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
