"""`filter-urls` (polars, vectorised) against a plain-Python per-row loop, on CC3M-sized input.

    .venv/bin/python benchmarks/bench_filter_urls.py [--rows 3300000] [--repeats 1] [--work DIR]

Generates a Google-format CC3M TSV (caption<TAB>url, no header) with realistic URLs plus a
share of every reject reason, then times, end to end (read TSV -> write manifest/manifest.parquet +
rejects/rejects.parquet), `vlmdata.filter.urls.filter_urls` and the peer: a loop over lines applying
the same rules in the same order with the standard library (the tests' oracle,
tests/sources/url_oracle.py). Prints wall and
CPU seconds of both (CPU time = the work done, which wall time hides on a shared machine), the
ratios (peer / ours), and whether the two agree on every row's reason and kept key.
Not a test: figures vary with the machine; the ratio is measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the oracle lives in tests/

from tests.sources.url_oracle import reference_reason  # noqa: E402
from vlmdata.core import layout  # noqa: E402
from vlmdata.core.rejects import REJECT_SCHEMA, record_json  # noqa: E402
from vlmdata.filter.urls import filter_urls  # noqa: E402

WORDS = "a the dog cat man woman child red blue green car street beach sunset city old new".split()
HOSTS = [
    "i.pinimg.com",
    "media.gettyimages.com",
    "c8.alamy.com",
    "images.example.org",
    "upload.wikimedia.org",
    "www.telegraph.co.uk",
    "l7.alamy.com",
    "cdn.shopify.com",
]
DENY = [f"spam{i}.example.net" for i in range(50)]


def generate(path: Path, rows: int, seed: int = 0) -> None:
    """CC3M-like rows; ~6% of them hit one reject reason each."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(
        ["ok", "dup", "empty", "long", "ftp", "mal", "priv", "v6", "onion", "deny", "tab", "num"],
        size=rows,
        p=[0.96, 0.01, 0.004, 0.001, 0.004, 0.004, 0.004, 0.001, 0.004, 0.004, 0.002, 0.002],
    )
    host_ids = rng.integers(0, 5000, rows)
    words = rng.integers(0, len(WORDS), (rows, 8))
    lines = []
    for i in range(rows):
        caption = " ".join(WORDS[w] for w in words[i])
        host = (
            f"{HOSTS[host_ids[i] % len(HOSTS)]}" if host_ids[i] < 4000 else f"img{host_ids[i]}.com"
        )
        url = f"https://{host}/photos/{i:08d}/{WORDS[words[i, 0]]}-{i}.jpg"
        kind = kinds[i]
        if kind == "dup" and i > 10:
            url = f"https://{HOSTS[0]}/photos/{i % 1000:08d}/dup.jpg"
        elif kind == "empty":
            caption = " "
        elif kind == "long":
            url += "?q=" + "x" * 2100
        elif kind == "ftp":
            url = "ftp" + url[5:]
        elif kind == "mal":
            url = url[8:]  # no scheme
        elif kind == "priv":
            url = f"http://192.168.{i % 256}.{i % 200}/{i}.jpg"
        elif kind == "v6":
            url = f"http://[fe80::{i % 65536:x}]/{i}.jpg"
        elif kind == "onion":
            url = f"http://abc{i}.onion/{i}.jpg"
        elif kind == "deny":
            url = f"http://cdn.{DENY[i % len(DENY)]}/{i}.jpg"
        elif kind == "tab":
            caption += "\tsplit"
        elif kind == "num":
            url = f"http://{8 * 2**24 + i}/{i}.jpg"
        lines.append(f"{caption}\t{url}\n")
    path.write_text("".join(lines), encoding="utf-8")


def peer_reason(caption: str, url: str, seen: set[str], deny: set[str]) -> str | None:
    """The same rules, one row at a time: the oracle the tests compare filter-urls against
    (tests/sources/url_oracle.py, written from the rules' definitions with the standard
    library, sharing no regex with vlmdata/filter/rules.py)."""
    if not caption.strip():
        return "empty_text"
    return reference_reason(url, seen, deny)


def peer(tsv: Path, out: Path, deny: set[str]) -> Counter[str]:
    """Per-row loop: read, classify, collect, write both Parquet files."""
    kept, rejects, seen = [], [], set()
    counts: Counter[str] = Counter()
    with open(tsv, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                text = raw.rstrip(b"\n").decode("utf-8")
            except UnicodeDecodeError:
                reason, fields = "bad_utf8", None
            else:
                fields = text.split("\t")
                reason = "wrong_field_count" if len(fields) != 2 else None
            if reason is None:
                caption, url = fields[0].strip(), fields[1].strip()
                reason = peer_reason(caption, url, seen, deny)
            counts[reason or "kept"] += 1
            key = f"cc3m_train_{line:08d}"
            if reason is None:
                kept.append(
                    {
                        "key": key,
                        "source": "cc3m",
                        "split": "train",
                        "url": url,
                        "path": None,
                        "texts": [caption],
                    }
                )
            else:
                rejects.append(
                    {
                        "stage": "peer",
                        "reason": reason,
                        "file": str(tsv),
                        "line": line,
                        "key": key,
                        "detail": "",
                        "record": record_json(fields),
                    }
                )
    for rel in (layout.MANIFEST, layout.REJECTS):
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(kept), out / layout.MANIFEST)
    pq.write_table(pa.Table.from_pylist(rejects, schema=REJECT_SCHEMA), out / layout.REJECTS)
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_300_000)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-urls-"))
    try:
        tsv = work / "Train_GCC-training.tsv"
        t = time.perf_counter()
        generate(tsv, args.rows)
        print(
            f"generated {args.rows:,} rows ({tsv.stat().st_size / 1e6:.0f} MB) "
            f"in {time.perf_counter() - t:.1f}s"
        )
        deny_file = work / "deny.txt"
        deny_file.write_text("\n".join(DENY) + "\n")
        load = os.getloadavg()[0]
        wall: dict[str, list[float]] = {"ours": [], "peer": []}
        cpu: dict[str, list[float]] = {"ours": [], "peer": []}
        for _ in range(args.repeats):
            t, c = time.perf_counter(), time.process_time()
            result = filter_urls(tsv, work / "ours", denylist=deny_file)
            wall["ours"].append(time.perf_counter() - t)
            cpu["ours"].append(time.process_time() - c)
            t, c = time.perf_counter(), time.process_time()
            counts = peer(tsv, work / "peer", set(DENY))
            wall["peer"].append(time.perf_counter() - t)
            cpu["peer"].append(time.process_time() - c)
        ours_counts = Counter(result.rejects) + Counter({"kept": result.kept})
        same_keys = pq.read_table(work / "ours" / layout.MANIFEST, columns=["key"]).equals(
            pq.read_table(work / "peer" / layout.MANIFEST, columns=["key"])
        )
        w = {k: min(v) for k, v in wall.items()}
        c = {k: min(v) for k, v in cpu.items()}
        print(f"load average before timing: {load:.1f} on {os.cpu_count()} CPUs")
        print("                        wall s    CPU s   rows/s (wall)")
        for key, name in (("ours", "filter-urls (polars)"), ("peer", "peer (stdlib loop)")):
            print(f"{name:<22} {w[key]:7.2f}  {c[key]:7.2f}  {args.rows / w[key]:14,.0f}")
        ratio_wall, ratio_cpu = w["peer"] / w["ours"], c["peer"] / c["ours"]
        print(f"ratio peer/ours: wall {ratio_wall:.1f}x, CPU {ratio_cpu:.1f}x")
        print(f"same counts by reason: {ours_counts == counts}; same kept keys: {same_keys}")
        for reason, n in sorted(counts.items(), key=lambda kv: -kv[1]):
            print(f"  {reason:<18} peer {n:>9,}   ours {ours_counts.get(reason, 0):>9,}")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
