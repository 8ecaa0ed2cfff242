"""Records vs one image per record on the published-shape test files (tests/records).

For each data set: records in the input files, records in records/records.parquet (+ text-only),
image samples stored, image bytes in the tars (counted member by member), and the image bytes a
one-image-per-record layout would write (every record carrying its own copy).

    PYTHONPATH=. python benchmarks/records_savings.py
"""

from __future__ import annotations

import json
import sys
import tarfile
import tempfile
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.records.conftest import CASES  # noqa: E402
from vlmdata.core import layout  # noqa: E402
from vlmdata.shards import list_shards, write_shards  # noqa: E402
from vlmdata.sources import read_source  # noqa: E402


def records_in(case) -> int:
    n = 0
    for path in case.inputs:
        if path.suffix == ".jsonl":
            n += sum(1 for line in path.read_text().splitlines() if line.strip())
        else:
            obj = json.loads(path.read_text())
            n += len(obj) if isinstance(obj, list) else len(obj.get("questions", []))
    return n


def tar_image_bytes(out: Path) -> int:
    total = 0
    for shard in list_shards(out):
        with tarfile.open(shard) as tar:
            total += sum(m.size for m in tar if m.name.endswith((".jpg", ".png", ".webp")))
    return total


def main() -> None:
    print("| data set | records in | records out | images stored | image bytes stored | "
          "one image per record | saved |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, build in CASES.items():
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            case = build(tmp)
            res = read_source(case.source, case.inputs, tmp / "m", **case.options)
            write_shards(tmp / "m" / layout.MANIFEST, case.images, tmp / "o", progress=False)
            records = pl.read_parquet(tmp / "o" / layout.RECORDS)
            index = pl.read_parquet(tmp / "o" / layout.INDEX)
            stored = tar_image_bytes(tmp / "o")
            sizes = index.select(pl.col("key").alias("image_key"), "image_size")
            naive = int(records.join(sizes, on="image_key")["image_size"].sum())
            out = records.height + res.extra.get("text_only", 0)
            print(f"| {name} | {records_in(case)} | {out} | {index.height} | {stored:,} | "
                  f"{naive:,} | {naive - stored:,} ({1 - stored / naive:.0%}) |")  # fmt: skip


if __name__ == "__main__":
    main()
