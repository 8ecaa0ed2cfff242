"""`vlmdata download`'s memory at N URL rows (issue 23): the driver's peak RSS and the largest
of img2dataset's processes, each sampled by psutil (every 20 ms, from outside), plus
`/usr/bin/time -v`'s maximum resident set (the largest single process of the tree).

Not a test. Each N runs the real command, `vlmdata download cc3m TSV -o OUT` (source reader,
filter-urls, img2dataset in its child process with its worker processes, the repack), in a
process of its own, against a loopback image server in another process: an asyncio server
answering `/img/N.jpg` with one 8x8 JPEG whose COM segment holds N (distinct bytes per URL, so
the repack's de-duplication keeps every row; ~640 bytes; a few thousand requests a second).

Rows: a CC3M `Validation_GCC-1.1.0-Validation.tsv` (caption TAB url, Google's CC3M release),
captions `--caption-bytes` long (1,000 by default, so the per-row tables show; CC3M's own are
~60), with `--missing K` every Kth URL a 404 and every (K+1)th an ftp:// one (rejects from
the fetch and from filter-urls). Usage (RESULTS.md, "download at 10^5 rows"):

    PYTHONPATH=$PWD .venv/bin/python benchmarks/bench_download_memory.py 10000 100000 \
        --dir /tmp/bdm [--caption-bytes 60] [--missing 20] [--processes 2] [--threads 32] \
        [--port 18931 --sha256 /tmp/sums]

`--sha256 FILE` writes every OUT file's sha256 (relative path, sorted) to FILE.N.txt after
each N, to compare two trees' outputs byte for byte (a fixed `--port` and `--dir` make the
same input). `--phases` runs the command in this process instead (one N a run), with RSS,
Arrow's allocated bytes and glibc's mallinfo2 (heap in use, free) sampled per pipeline phase.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hashlib
import io
import re
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import psutil

ROUTE = re.compile(rb"GET /img/(\d+)\.jpg ")
CHILD_MODULE = "vlmdata.download.child"


# --- the image server (its own process: `--serve`) ----------------------------------------


def jpeg_with_comment(base: bytes, n: bytes) -> bytes:
    """`base` (a JPEG) with a COM segment holding `n` after its SOI marker: same pixels,
    distinct bytes (JPEG, ITU T.81 B.2.4.5: FFFE, a 2-byte length counting itself, text)."""
    return base[:2] + b"\xff\xfe" + (len(n) + 2).to_bytes(2, "big") + n + base[2:]


def serve(port: int) -> None:
    """Answer GET /img/N.jpg with image N (anything else: 404) until killed; print the port
    first (0: the OS picks one)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 30, 200)).save(buf, format="JPEG", quality=90)
    base = buf.getvalue()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            while await reader.readline() not in (b"\r\n", b"\n", b""):
                pass
            m = ROUTE.match(line)
            if m is None:
                writer.write(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            else:
                body = jpeg_with_comment(base, m.group(1))
                head = b"HTTP/1.0 200 OK\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                writer.write(head % len(body) + body)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
        print(server.sockets[0].getsockname()[1], flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def start_server(port: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                            stdout=subprocess.PIPE)  # fmt: skip
    assert proc.stdout is not None
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


# --- inputs, outputs ----------------------------------------------------------------------


def write_tsv(path: Path, rows: int, base_url: str, caption_bytes: int, missing: int) -> None:
    """Row i: a caption of `caption_bytes` and i, then image i's URL; with `missing`, every
    missing-th row's URL answers 404 and every (missing+1)-th has a bad scheme (rejects)."""
    caption = ("a photo of " + "x" * caption_bytes)[:caption_bytes]

    def url(i: int) -> str:
        if missing and i % missing == missing - 1:
            return f"{base_url}/missing/{i}.jpg"
        if missing and i % (missing + 1) == missing:
            return f"ftp://example.com/{i}.jpg"
        return f"{base_url}/img/{i}.jpg"

    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, rows, 10_000):
            f.writelines(
                f"{caption} {i}\t{url(i)}\n" for i in range(start, min(rows, start + 10_000))
            )


def write_sums(out: Path, dest: Path) -> None:
    lines = []
    for p in sorted(q for q in out.rglob("*") if q.is_file()):
        lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(out)}\n")
    dest.write_text("".join(lines), encoding="utf-8")


def command(tsv: Path, out: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable, "-c", "import sys; from cli.vlmdata import main; sys.argv[0] = 'x'; main()",
        "download", "cc3m", str(tsv), "-o", str(out), "--allow-private", "-q",
        "--processes", str(args.processes), "--threads", str(args.threads), "--timeout", "20",
        "--download-shard-size", "1000", "--samples-per-shard", "5000",
    ]  # fmt: skip


# --- measuring from outside ---------------------------------------------------------------


class TreePeaks:
    """Largest RSS of each process under `root` (sampled every 20 ms in a thread), by role:
    the driver, img2dataset's child, its workers."""

    def __init__(self, root: int) -> None:
        self.root, self.peaks = psutil.Process(root), defaultdict(int)
        self.roles: dict[int, str] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _role(self, p: psutil.Process) -> None:
        """Named once its command line is its own (a forked process shows its parent's
        until it execs)."""
        if self.roles.get(p.pid, "time") == "time":
            cmd = " ".join(p.cmdline())
            self.roles[p.pid] = (
                "time" if cmd.startswith("/usr/bin/time")
                else "child" if CHILD_MODULE in cmd
                else "driver" if "cli.vlmdata" in cmd
                else "worker"
            )  # fmt: skip

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for p in procs:
                try:
                    self.peaks[p.pid] = max(self.peaks[p.pid], p.memory_info().rss)
                    self._role(p)
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            time.sleep(0.02)

    def by_role(self) -> dict[str, int]:
        self.stop.set()
        self.thread.join()
        out: dict[str, int] = defaultdict(int)
        for pid, rss in self.peaks.items():
            role = self.roles.get(pid, "worker")
            out[role] = max(out[role], rss)
        out["workers"] = sum(1 for r in self.roles.values() if r == "worker")
        return out


def run_one(rows: int, base_url: str, args: argparse.Namespace) -> None:
    root = args.dir / f"n{rows}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tsv = root / "Validation_GCC-1.1.0-Validation.tsv"
    write_tsv(tsv, rows, base_url, args.caption_bytes, args.missing)
    out = root / "out"
    if args.phases:
        return run_phases(tsv, out, args)
    t = time.time()
    proc = subprocess.Popen(["/usr/bin/time", "-v", *command(tsv, out, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peaks = TreePeaks(proc.pid)
    stdout, stderr = proc.communicate()
    wall = time.time() - t
    roles = peaks.by_role()
    if proc.returncode not in (0, 1):
        sys.exit(f"download failed (exit {proc.returncode}):\n{stdout}\n{stderr[-3000:]}")
    kept = re.search(r"kept\s+([\d,]+)", stdout)
    maxrss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    time_max = int(maxrss.group(1)) >> 10 if maxrss else 0
    cpu = sum(float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", stderr))
    print(
        f"rows {rows:>7,}  kept {kept.group(1) if kept else '?':>7}  wall {wall:6.1f} s  "
        f"cpu {cpu:6.1f} s  driver {roles['driver'] >> 20:4} MB  img2dataset child "
        f"{roles['child'] >> 20:4} MB  largest of {roles['workers']} workers "
        f"{roles['worker'] >> 20:4} MB  time -v max {time_max} MB",
        flush=True,
    )  # fmt: skip
    if args.sha256:
        write_sums(out, args.sha256.with_suffix(f".{rows}.txt"))
    if not args.keep:
        shutil.rmtree(root)


# --- measuring inside, by phase (--phases) ------------------------------------------------


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


PHASES = {  # module attribute -> phase name; each is wrapped to label the time inside it
    "vlmdata.download.pipeline._read_source": "source reader",
    "vlmdata.download.pipeline._fetch_list": "filter-urls + fetch list",
    "vlmdata.download.pipeline._fetch_fingerprint": "fingerprint",
    "vlmdata.download.pipeline._fetch": "img2dataset (child)",
    "vlmdata.download.pipeline._download_rejects": "fetch rejects",
    "vlmdata.download.pipeline._concat_rejects": "prior rejects",
    "vlmdata.download.repack.fetched_rows": "fetched rows",
    "vlmdata.shards.writer.write_planned": "repack (plan, shards, tables)",
}


class PhasePeaks:
    """Peaks of RSS, Arrow's allocated bytes and glibc's heap (in use, free) per phase, sampled
    every 20 ms in a thread; `label(dotted, name)` wraps a function (module[.Class].attr) so
    the time inside it counts as phase `name`, the rest as the phase it was called from."""

    def __init__(self, first: str) -> None:
        self.phase, self.order = first, [first]
        self.peaks: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
        self._libc = ctypes.CDLL("libc.so.6")
        self._libc.mallinfo2.restype = _Mallinfo2

    def label(self, dotted: str, name: str) -> None:
        owner, attr = _owner(dotted)
        fn = getattr(owner, attr)

        def inner(*a, **k):
            before, self.phase = self.phase, name
            self.order.append(name)
            try:
                return fn(*a, **k)
            finally:
                self.phase = before

        setattr(owner, attr, inner)

    def start(self) -> None:
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        import pyarrow as pa

        proc = psutil.Process()
        while True:
            m = self._libc.mallinfo2()
            now = (proc.memory_info().rss, pa.total_allocated_bytes(), m.uordblks + m.hblkhd,
                   m.fordblks)  # fmt: skip
            p = self.peaks[self.phase]
            p[:] = [max(x, y) for x, y in zip(p, now, strict=True)]
            time.sleep(0.02)

    def rows(self) -> Iterator[tuple[str, list[int]]]:
        """(phase, [rss, arrow, heap in use, heap free] in MB), phases in order of first entry."""
        for name in dict.fromkeys(self.order):
            yield name, [v >> 20 for v in self.peaks[name]]


def _owner(dotted: str) -> tuple[object, str]:
    """(owner, attribute) of a dotted module[.Class].attribute path."""
    import importlib

    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for name in parts[i:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(dotted)


def run_phases(tsv: Path, out: Path, args: argparse.Namespace) -> None:
    """The command in this process; peaks of RSS, Arrow's allocated bytes and glibc's heap
    (in use, free) per phase."""
    peaks = PhasePeaks("start")
    for target, name in PHASES.items():
        peaks.label(target, name)
    peaks.start()
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download
    from vlmdata.shards import ShardOptions

    t = time.time()
    fetch = FetchOptions(processes=args.processes, threads=args.threads, timeout=20)
    s = download("cc3m", [tsv], out, fetch=fetch, shard=ShardOptions(samples_per_shard=5000),
                 allow_private=True, progress=False)  # fmt: skip
    print(f"kept {s.kept}  wall {time.time() - t:.1f} s; peaks by phase (MB): RSS, Arrow, "
          "heap in use, heap free")  # fmt: skip
    for name, (rss, arrow, used, free) in peaks.rows():
        print(f"  {name:32} {rss:5} {arrow:5} {used:5} {free:5}")


def main() -> None:
    if sys.argv[1:2] == ["--serve"]:
        return serve(int(sys.argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", type=int, nargs="+")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/bench-download-memory"))
    ap.add_argument("--processes", type=int, default=2, help="img2dataset's processes")
    ap.add_argument("--threads", type=int, default=32, help="img2dataset's threads a process")
    ap.add_argument("--caption-bytes", type=int, default=1000, help="caption length (+ row no.)")
    ap.add_argument("--missing", type=int, default=0, help="every Kth URL 404, K+1th ftp://")
    ap.add_argument("--port", type=int, default=0, help="the server's (fixed: same OUT bytes)")
    ap.add_argument("--sha256", type=Path, help="write OUT's sha256 sums to FILE.N.txt")
    ap.add_argument("--phases", action="store_true", help="in this process, peaks by phase")
    ap.add_argument("--keep", action="store_true", help="keep DIR/nN (inputs and OUT)")
    args = ap.parse_args()
    if args.phases and len(args.rows) > 1:
        ap.error("--phases measures this process: one N a run (a second would start warm)")
    server, base_url = start_server(args.port)
    try:
        for rows in args.rows:
            run_one(rows, base_url, args)
    finally:
        server.kill()
        server.wait()


if __name__ == "__main__":
    main()
