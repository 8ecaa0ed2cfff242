"""`download`'s driver phases replayed in this process on a kept workspace (issue 23): peak RSS,
Arrow's allocated bytes and glibc's heap in use, by phase, finer than
`bench_download_memory.py --phases` and without fetching again (minutes, not half an hour).

Not a test. Make the workspace once with `--keep-raw` (the same TSV and command as
bench_download_memory.py, which `--keep` keeps), e.g.:

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_download_phases.py --make 1000000 \
        --dir /tmp/bdp --port 18931
    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_download_phases.py --dir /tmp/bdp/n1000000

A replay removes OUT's outputs (not OUT/.download, whose raw shards stay: nothing is
fetched), runs `download` again with the same options and keep_raw, and prints the peaks of
each phase; OUT ends as a fresh run leaves it (compare its sha256 sums between two trees).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.bench_download_memory import PhasePeaks, command, start_server, write_tsv
from vlmdata.core.heap import system_arrow_pool_for_process

TSV = "Validation_GCC-1.1.0-Validation.tsv"
PHASES = {  # module attribute (a dotted path) -> phase name
    "vlmdata.download.pipeline._read_source": "source reader",
    "vlmdata.download.pipeline._fetch_list": "filter-urls + fetch list",
    "vlmdata.download.pipeline._fetch_fingerprint": "fingerprint",
    "vlmdata.download.pipeline._download_rejects": "fetch rejects",
    "vlmdata.download.pipeline._concat_rejects": "prior rejects",
    "vlmdata.download.repack.fetched_rows": "fetched rows",
    "vlmdata.shards.planrows.SpooledManifest.__init__": "spool the fetched rows",
    "vlmdata.shards.placement.number_images": "number images",
    "vlmdata.shards.placement.Placer.run": "place records",
    "vlmdata.shards.sealing.seal_samples": "seal samples",
    "vlmdata.shards.plan.layout_shards": "layout",
    "vlmdata.shards.writer.write_jobs": "write shards",
    "vlmdata.shards.tables.stage_tables": "records + index tables",
    "vlmdata.shards.run.ShardRun.publish": "publish",
}


def make(rows: int, root: Path, port: int) -> None:
    """The workspace: bench_download_memory's TSV (60-byte captions, every 20th URL missing)
    and its command with --keep-raw, against its image server."""
    root.mkdir(parents=True, exist_ok=True)
    server, base_url = start_server(port)
    try:
        write_tsv(root / TSV, rows, base_url, 60, 20)
        opts = argparse.Namespace(processes=2, threads=32)
        subprocess.run([*command(root / TSV, root / "out", opts), "--keep-raw"], check=True)
    finally:
        server.kill()
        server.wait()


def replay(root: Path) -> None:
    out = root / "out"
    for p in out.iterdir():
        if p.name != ".download":
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    peaks = PhasePeaks("other")
    for dotted, name in PHASES.items():
        peaks.label(dotted, name)
    peaks.start()
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download
    from vlmdata.shards import ShardOptions

    t = time.time()
    fetch = FetchOptions(processes=2, threads=32, timeout=20, raw_shard_size=1000)
    s = download("cc3m", [root / TSV], out, fetch=fetch, allow_private=True, keep_raw=True,
                 shard=ShardOptions(samples_per_shard=5000), progress=False)  # fmt: skip
    print(f"kept {s.kept}  wall {time.time() - t:.1f} s; peaks (MB): RSS, Arrow, heap in use")
    for name, (rss, arrow, heap, _) in peaks.rows():
        print(f"  {name:26} {rss:5} {arrow:5} {heap:5}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, required=True, help="the workspace (made: its parent)")
    ap.add_argument("--make", type=int, metavar="ROWS", help="make DIR/nROWS with --keep-raw")
    ap.add_argument("--port", type=int, default=18931, help="the image server's, for --make")
    args = ap.parse_args()
    system_arrow_pool_for_process()  # as `vlmdata` does; nothing here has used pyarrow yet
    if args.make:
        return make(args.make, args.dir / f"n{args.make}", args.port)
    replay(args.dir)


if __name__ == "__main__":
    sys.exit(main())
