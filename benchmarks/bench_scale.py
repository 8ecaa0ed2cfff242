"""Peak memory and CPU of the row-count-bound stages at 10^5 and 10^6 rows (issue 23).

Inputs are generated in the published shapes (tests/scale_inputs.py, also used by the
bounded-memory tests), with the quirks the readers must handle:
- CC3M `Train_GCC-training.tsv`: `caption<TAB>url`, no header, ~1% repeated URLs, a few
  non-http and private URLs, a few lines with a wrong field count (Google's CC3M release).
- LLaVA `llava_v1_5_mix665k.json`: one JSON list of `{id, image, conversations}`, ids that
  repeat (the 665k mix repeats COCO image ids), ~1.6 KB of conversation per record, ~5%
  text-only records (LLaVA-1.5 repository, `llava_v1_5_mix665k.json`).
- OVEN `Wiki6M_ver_1_0.jsonl`: `{wikidata_id, wikipedia_title, wikipedia_content,
  wikipedia_image_url}` per line, ~40% without an image URL (OVEN repository, Wiki6M).
- build-trie: the `entities.parquet` that `manifest oven-kb` writes, a 32k byte-level BPE
  trained on the names; build-ids: the CC3M manifest (numeric and string schemes).

Each stage runs as a child process of `/usr/bin/time -v`-like accounting (resource.getrusage
of the child: user+sys CPU, max RSS). Usage:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --rows 100000 1000000
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --gen-only --rows 1000 --dir d
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_scale.py --rows 10000 100000 --stages shard
      (`shard` on generated tiny JPEGs with the default decode check and with
      `--image-check structure`, then webdataset.ShardWriter on the same images, which checks
      none: the structure run is the like-for-like comparison)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.scale_inputs import (  # noqa: E402
    WORDS,
    gen_cc3m,
    gen_entities,
    gen_llava,
    gen_shard_folder,
    gen_wiki6m,
)


def run_child(cmd: list[str], env: dict) -> tuple[float, float, int, float]:
    """(user+sys CPU s, max RSS MB, return code, wall s) of one child process."""
    t0 = time.perf_counter()
    pid = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL).pid
    _, status, ru = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    return ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, os.waitstatus_to_exitcode(status), wall


TSV, LLAVA, WIKI = "Train_GCC-training.tsv", "llava_v1_5_mix665k.json", "Wiki6M_ver_1_0.jsonl"
IMAGES = "images"  # gen_shard_folder: IMAGES/manifest.parquet + IMAGES/images/


def shardwriter_baseline(folder: str, out: str) -> None:
    """The same samples (image bytes, first text, the row as JSON) through
    `webdataset.ShardWriter`, 1,000 a shard: what `shard` is compared with. No checks, no
    index, no duplicate rules: the floor for writing these tars."""
    import pyarrow.parquet as pq
    import webdataset as wds

    Path(out).mkdir(parents=True, exist_ok=True)
    table = pq.read_table(Path(folder) / "manifest.parquet")
    with wds.ShardWriter(f"{out}/data-%06d.tar", maxcount=1000, verbose=0) as sink:
        for batch in table.to_batches(8192):
            for row in batch.to_pylist():
                try:
                    image = (Path(folder) / row["path"]).read_bytes()
                except OSError:
                    continue
                texts = row["texts"] or [""]
                sink.write({"__key__": row["key"], "jpg": image, "txt": texts[0], "json": row})


def stages(d: Path) -> list[tuple[str, str, list[str]]]:
    """(name, input file it needs, command) of each stage, in run order."""
    v = [sys.executable, "-c", "from cli.vlmdata import main; main()"]
    tok = str(d.parent / "tok32k")
    return [
        ("manifest cc3m", TSV, v + ["manifest", "cc3m", str(d / TSV), "-o", str(d / "cc3m"),
                                    "--max-reject-ratio", "1"]),
        ("filter-urls", TSV, v + ["filter-urls", str(d / TSV), "-o", str(d / "urls")]),
        ("manifest llava", LLAVA, v + ["manifest", "llava", str(d / LLAVA), "-o", str(d / "llava"),
                                       "--max-reject-ratio", "1"]),
        ("manifest oven-kb", WIKI, v + ["manifest", "oven-kb", str(d / WIKI), "-o", str(d / "kb"),
                                        "--max-reject-ratio", "1"]),
        ("build-ids numeric", "cc3m", v + ["build-ids", str(d / "cc3m"), "--scheme", "numeric",
                                           "--seed", "0", "-o", str(d / "ids.parquet")]),
        ("build-ids string+tokens", "cc3m", v + ["build-ids", str(d / "cc3m"), "--scheme",
                                                 "string", "--tokenizer", tok,
                                                 "-o", str(d / "ids_tok.parquet")]),
        ("build-trie entities", "kb", v + ["build-trie", "--entities",
                                           str(d / "kb/entities.parquet"), "--tokenizer", tok,
                                           "-o", str(d / "entities.trie")]),
        ("shard", IMAGES, v + ["shard", str(d / IMAGES / "manifest.parquet"), "--images",
                               str(d / IMAGES), "-o", str(d / "shards"), "-q",
                               "--max-reject-ratio", "1"]),
        ("shard --image-check structure", IMAGES, v + ["shard",
                               str(d / IMAGES / "manifest.parquet"),
                               "--images", str(d / IMAGES), "-o", str(d / "shards_s"), "-q",
                               "--max-reject-ratio", "1", "--image-check", "structure"]),
        ("shard: webdataset.ShardWriter", IMAGES, [sys.executable, __file__, "--shardwriter",
                                            str(d / IMAGES), str(d / "wds")]),
    ]  # fmt: skip


def shardwriter_ratios(results: list[dict]) -> str:
    """ShardWriter's CPU and wall over each `shard` run's of the same size (above 1: shard is
    faster). ShardWriter checks no image: `--image-check structure` is the like-for-like run,
    the default full decode does more work than it."""
    theirs = results[-1]
    lines = []
    for ours in results[:-1]:
        if ours["rows"] == theirs["rows"] and ours["stage"].startswith("shard") and ours["cpu_s"]:
            lines.append(f"ShardWriter / `{ours['stage']}` at {theirs['rows']:,}: CPU "
                         f"{theirs['cpu_s'] / ours['cpu_s']:.2f}x, wall "
                         f"{theirs['wall_s'] / ours['wall_s']:.2f}x")  # fmt: skip
    return "\n".join(lines)


def generate(d: Path, name: str, n: int) -> None:
    """The input `name` at n rows (LLaVA: n/10 records of ~2.5 KB), if not there yet."""
    d.mkdir(parents=True, exist_ok=True)
    if name == IMAGES and not (d / IMAGES).exists():
        gen_shard_folder(d / IMAGES, n)  # tiny JPEGs: per-row costs, not image bytes
    if name == "kb" and not (d / "kb").exists() and not (d / WIKI).exists():
        gen_entities(d / "kb/entities.parquet", n)  # build-trie alone (OVEN's 6M names)
    if (d / name).exists() or name in ("cc3m", "kb", IMAGES):  # made by the manifest stages
        return
    {TSV: gen_cc3m, LLAVA: gen_llava, WIKI: gen_wiki6m}[name](
        d / name, max(n // 10, 1) if name == LLAVA else n
    )


def ensure_tokenizer(root: Path) -> None:
    if (root / "tok32k").exists():
        return
    from vlmdata.core.tokenizer import train_tokenizer

    rng = random.Random(1)
    names = [" ".join(rng.choice(WORDS).title() for _ in range(3)) + f" {i}" for i in range(50000)]
    train_tokenizer(names, root / "tok32k", vocab_size=32000)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench_scale"))
    ap.add_argument("--gen-only", action="store_true")
    ap.add_argument("--stages", nargs="*", default=None, help="substrings of stage names")
    ap.add_argument("--shardwriter", nargs=2, metavar=("FOLDER", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.shardwriter:
        return shardwriter_baseline(*args.shardwriter)
    env = dict(os.environ, POLARS_MAX_THREADS=os.environ.get("POLARS_MAX_THREADS", "2"))
    results: list[dict] = []
    for n in args.rows:
        d = args.dir / str(n)
        ensure_tokenizer(args.dir)
        for name, needs, cmd in stages(d):
            if args.stages and not any(s in name for s in args.stages):
                continue
            generate(d, needs, n)
            if args.gen_only:
                continue
            if name.startswith("shard"):  # a fresh OUT, not a resume
                shutil.rmtree(cmd[cmd.index("-o") + 1] if "-o" in cmd else cmd[-1], True)
            cpu, rss, rc, wall = run_child(cmd, env)
            row = {"stage": name, "rows": n, "cpu_s": round(cpu, 1), "peak_rss_mb": round(rss)}
            results.append(row | {"wall_s": round(wall, 1), "rc": rc})
            print(json.dumps(results[-1]), flush=True)
            if name == "shard: webdataset.ShardWriter":
                print(shardwriter_ratios(results), flush=True)
    print(growth_table(results, args.rows))
    print(f"load average: {os.getloadavg()}  max RSS unit: {resource.getpagesize()} B pages")


def growth_table(results: list[dict], sizes: list[int]) -> str:
    """Markdown: each stage's peak RSS (CPU) per size, and its growth from the smallest size
    to each larger one (issue 23's goal: within 1.2x)."""
    sizes = sorted(sizes)
    head = " | ".join(f"{n:,}: MB (CPU s)" for n in sizes)
    lines = [f"| stage | {head} | growth |", "|---" * (len(sizes) + 2) + "|"]
    for stage in dict.fromkeys(r["stage"] for r in results):
        at = {r["rows"]: r for r in results if r["stage"] == stage}
        cells = [f"{at[n]['peak_rss_mb']:,} ({at[n]['cpu_s']})" if n in at else "" for n in sizes]
        base = at.get(sizes[0])
        growth = [f"{at[n]['peak_rss_mb'] / base['peak_rss_mb']:.2f}x" for n in sizes[1:]
                  if base and n in at]  # fmt: skip
        lines.append(f"| `{stage}` | {' | '.join(cells)} | {' / '.join(growth)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
