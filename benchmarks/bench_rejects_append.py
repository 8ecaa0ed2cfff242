"""Appending an earlier stage's rejects file to OUT/rejects (issue 23): `RejectWriter.add_file`
(a piece at a time) against the old `write_table(pq.read_table(path))`, each in a fresh
process: CPU seconds, peak RSS, and the two outputs' sha256 (they must be equal).

Not a test. The file: N REJECT_SCHEMA rows (docs/DESIGN.md, contract 2) with CC3M-style
`record` JSON of `--caption-bytes` captions, in row groups of 8,192 rows (as RejectWriter
writes them) or `--group-rows`. Usage (RESULTS.md, "rejects appended a piece at a time"):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_rejects_append.py 100000 1000000 \
        --dir /tmp/bra [--caption-bytes 1000] [--group-rows 8192]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.rejects import REJECT_SCHEMA, RejectWriter


def make(path: Path, rows: int, caption: int, group: int) -> None:
    """The input file, written a group at a time."""
    pad = "x" * caption
    with pq.ParquetWriter(path, REJECT_SCHEMA) as out:
        for start in range(0, rows, group):
            n = min(group, rows - start)
            ids = range(start, start + n)
            out.write_table(
                pa.table(
                    {
                        "stage": ["filter-urls"] * n,
                        "reason": ["bad_scheme" if i % 2 else "http_404" for i in ids],
                        "file": ["Validation_GCC-1.1.0-Validation.tsv"] * n,
                        "line": [i + 1 for i in ids],
                        "key": [f"{i:09d}" for i in ids],
                        "detail": [f"HTTP Error {i % 7}" for i in ids],
                        "record": [
                            json.dumps({"caption": f"{i} {pad}", "url": f"ftp://h/{i}"})
                            for i in ids
                        ],  # fmt: skip
                    },
                    schema=REJECT_SCHEMA,
                )
            )


def append(way: str, source: Path, target: Path) -> None:
    """One append in this process; prints CPU seconds and peak RSS (MB) as JSON."""
    cpu = time.process_time()
    with RejectWriter(target) as w:
        if way == "pieces":
            w.add_file(source)
        else:
            w._writer.write_table(pq.read_table(source).select(REJECT_SCHEMA.names))
    print(json.dumps({"cpu": time.process_time() - cpu, "rss": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's peak RSS since its exec (VmHWM; `ru_maxrss` would also count the
    parent's peak, which a forked child inherits)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def run(way: str, source: Path, target: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, "--append", way, str(source), str(target)],
                          check=True, capture_output=True, text=True)  # fmt: skip
    out = json.loads(done.stdout.strip().splitlines()[-1])
    out["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()[:16]
    return out


def main() -> None:
    if sys.argv[1:2] == ["--append"]:
        append(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int, nargs="+")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-rejects-append"))
    ap.add_argument("--caption-bytes", type=int, default=1000)
    ap.add_argument("--group-rows", type=int, default=8192)
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    for rows in args.rows:
        source = args.dir / f"in{rows}.parquet"
        make(source, rows, args.caption_bytes, args.group_rows)
        got = {way: run(way, source, args.dir / f"{way}{rows}.parquet")
               for way in ("read_table", "pieces")}  # fmt: skip
        old, new = got["read_table"], got["pieces"]
        same = "same bytes" if old["sha256"] == new["sha256"] else "BYTES DIFFER"
        print(
            f"rows {rows:>9,}  read_table: {old['cpu']:6.2f} s {old['rss']:7.0f} MB   "
            f"pieces: {new['cpu']:6.2f} s {new['rss']:7.0f} MB   "
            f"CPU {new['cpu'] / old['cpu']:.2f}x  RSS {new['rss'] / old['rss']:.2f}x  {same}"
        )


if __name__ == "__main__":
    main()
