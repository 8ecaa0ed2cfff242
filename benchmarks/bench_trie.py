"""CSR trie (vlmdata.trie) vs the GENRE-style nested-dict trie (benchmarks/dict_trie.py).

Cases: BPE-like identifiers (vocab 50,257, Zipf-distributed tokens, 1–7 tokens + eos, root
fan-out in the tens of thousands) at 10k and 1M, and 1M fixed-length structured identifiers
(5 pieces "{level}_{n}" as added tokens, "-" between, eos). For each: build time, resident
memory, load time, the whole LogitsProcessor call for batch 64 × 10 beams at prefix lengths 0,
1, 2, 4 (for the peer: transformers' `PrefixConstrainedLogitsProcessor` over the dict trie), a
whole constrained beam search (`generate`, 64 prompts × 10 beams, a tiny random GPT-2 over the
full vocabulary, identical outputs required), and the allowed sets compared on 100k random
prefixes (a correctness check, not timed: a bare node lookup is not comparable with the peer's
Python lists). Each side runs in its own process, so resident memory (RSS growth) is not
muddled by the other side.

    .venv/bin/python benchmarks/bench_trie.py                 # all cases (dict 1M ~ minutes)
    .venv/bin/python benchmarks/bench_trie.py --cases bpe10k  # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

VOCAB = 50257
EOS = 50256
DASH = 12
BATCH, BEAMS = 64, 10
DEPTHS = (0, 1, 2, 4)
N_CHECK = 100_000
CASES = {"bpe10k": ("bpe", 10_000), "bpe1m": ("bpe", 1_000_000), "struct1m": ("struct", 1_000_000)}


def bpe_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """n distinct identifiers: Zipf tokens (rank + 20)^-1, 1–7 tokens, then eos."""
    rng = np.random.default_rng(seed)
    p = 1.0 / (np.arange(VOCAB - 1) + 20.0)
    m = int(n * 1.05) + 100
    while True:  # draw until n distinct (short ids collide often under Zipf)
        lengths = rng.integers(1, 8, size=m)
        mat = rng.choice(VOCAB - 1, size=(m, 7), p=p / p.sum()).astype(np.int64)
        mat[np.arange(7)[None, :] >= lengths[:, None]] = -1
        _, first = np.unique(mat, axis=0, return_index=True)
        if len(first) >= n:
            break
        m = int(m * 1.3)
    keep = np.sort(rng.permutation(first)[:n])
    mat, lengths = mat[keep], lengths[keep]
    mat = np.concatenate([mat, np.full((n, 1), -1)], axis=1)
    mat[np.arange(n), lengths] = EOS
    return mat[mat >= 0], lengths + 1, VOCAB


def structured(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """n distinct 5-piece ids: piece (level l, n) = token VOCAB + 30 l + n; "-" between; eos."""
    rng = np.random.default_rng(seed)
    codes = rng.choice(30**5, size=n, replace=False)
    digits = (codes[:, None] // 30 ** np.arange(4, -1, -1)[None, :]) % 30
    pieces = VOCAB + 30 * np.arange(5)[None, :] + digits
    mat = np.full((n, 10), DASH, dtype=np.int64)
    mat[:, 0:9:2] = pieces
    mat[:, 9] = EOS
    return mat.reshape(-1), np.full(n, 10), VOCAB + 150


def make(case: str):
    kind, n = CASES[case]
    return bpe_like(n) if kind == "bpe" else structured(n)


def as_lists(flat: np.ndarray, lengths: np.ndarray) -> list[list[int]]:
    return [a.tolist() for a in np.split(flat, np.cumsum(lengths)[:-1])]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn, reps: int) -> float:
    """Median wall time (ms) of `reps` calls after one warm-up."""
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def beam_prefixes(seqs: list[list[int]], depth: int, seed: int) -> np.ndarray:
    """64 × 10 on-trie prefixes of `depth` tokens, cut from ids longer than that (so every
    beam has children: the dict trie's empty list off the trie makes transformers raise)."""
    rng = np.random.default_rng(seed)
    long = [s for s in seqs if len(s) > depth]
    rows = rng.choice(len(long), BATCH * BEAMS, replace=False)
    return np.array([long[r][:depth] for r in rows], dtype=np.int64).reshape(len(rows), depth)


def check_prefixes(seqs: list[list[int]], vocab: int) -> list[list[int]]:
    """100k prefixes: 3/4 cut from real ids at random lengths, 1/4 of those with one bad token."""
    rng = np.random.default_rng(1)
    out = []
    for i in rng.integers(0, len(seqs), N_CHECK):
        s = seqs[i]
        p = s[: rng.integers(0, len(s) + 1)]
        if p and rng.random() < 0.25:
            p = p[:-1] + [int(rng.integers(0, vocab))]
        out.append(p)
    return out


def tiny_lm(vocab: int):
    """A seeded 1-layer GPT-2 over the whole vocabulary: the decoding around the processor."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=vocab, n_layer=1, n_embd=32, n_head=2, n_positions=64,
                     bos_token_id=EOS, eos_token_id=EOS)  # fmt: skip
    return GPT2LMHeadModel(cfg).eval()


def timed_generate(vocab: int, max_new: int, make_processor) -> tuple[float, str]:
    """Median ms of a constrained beam search over 64 prompts × 10 beams, and a digest of its
    output (both sides must produce the same sequences)."""
    import torch

    model = tiny_lm(vocab)
    prompts = torch.randint(0, 1000, (BATCH, 4), generator=torch.Generator().manual_seed(1))
    out = {}

    def run():
        with torch.no_grad():
            out["ids"] = model.generate(
                prompts, attention_mask=torch.ones_like(prompts), num_beams=BEAMS,
                max_new_tokens=max_new, do_sample=False, pad_token_id=EOS, eos_token_id=EOS,
                logits_processor=[make_processor(prompts.shape[1])],
            )  # fmt: skip

    ms = timed(run, 2)
    digest = Digest()
    for row in out["ids"][:, prompts.shape[1] :].tolist():
        digest.add(row)
    return ms, digest.hexdigest()


def run_ours(case: str, path: str) -> dict:
    import torch

    from vlmdata.trie import Trie
    from vlmdata.trie.mask import TrieLogitsProcessor

    flat, lengths, vocab = make(case)
    seqs = as_lists(flat, lengths)
    res: dict = {}
    t, c = time.perf_counter(), time.process_time()
    trie = Trie.build(seqs, vocab_size=vocab, eos_id=EOS)
    res["build_s"], res["build_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    Trie.from_flat(flat, lengths, vocab_size=vocab, eos_id=EOS)
    res["build_flat_s"], res["build_flat_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    trie.save(path)
    res["file_mb"] = os.path.getsize(path) / 2**20
    res["nodes"] = trie.n_nodes
    res["root_fanout"] = len(trie.children([]))
    del trie
    gc.collect()
    res["load_ms"] = timed(lambda: Trie.load(path), 20)
    before = rss_mb()
    trie = Trie.load(path)
    prefixes = {d: beam_prefixes(seqs, d, d) for d in DEPTHS}
    digest = Digest()
    for p in check_prefixes(seqs, vocab):
        digest.add(trie.children(p).tolist())
    res["allowed_sets"] = digest.hexdigest()
    res["rss_mb"] = rss_mb() - before  # mapped pages touched by every query above
    scores = torch.randn(BATCH * BEAMS, vocab)
    proc = TrieLogitsProcessor(trie, 0)
    for d, pref in prefixes.items():
        ids = torch.from_numpy(pref)
        res[f"proc_ms_{d}"] = timed(lambda i=ids: proc(i, scores), 10)
    full = torch.ones(BATCH * BEAMS, vocab, dtype=torch.bool)
    res["floor_ms"] = timed(lambda: torch.where(full, scores, float("-inf")), 10)
    res["gen_ms"], res["gen_out"] = timed_generate(
        vocab, int(lengths.max()), lambda width: TrieLogitsProcessor(trie, width, pad_id=EOS)
    )
    return res


def run_dict(case: str) -> dict:
    import torch
    from dict_trie import DictTrie, prefix_allowed_tokens_fn
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    flat, lengths, vocab = make(case)
    seqs = as_lists(flat, lengths)
    del flat, lengths
    gc.collect()
    res: dict = {}
    before = rss_mb()
    t, c = time.perf_counter(), time.process_time()
    trie = DictTrie(seqs)
    res["build_s"], res["build_cpu_s"] = time.perf_counter() - t, time.process_time() - c
    gc.collect()
    res["rss_mb"] = rss_mb() - before
    scores = torch.randn(BATCH * BEAMS, vocab)
    for d in DEPTHS:
        pref = beam_prefixes(seqs, d, d)
        ids = torch.from_numpy(pref)
        fn = prefix_allowed_tokens_fn(trie, 0)
        reps = 2 if d == 0 else 10
        proc = PrefixConstrainedLogitsProcessor(fn, BEAMS)
        res[f"proc_ms_{d}"] = timed(lambda i=ids, p=proc: p(i, scores), reps)

    def peer(width: int):
        fn = prefix_allowed_tokens_fn(trie, width)
        # finished rows get eos, as the CSR processor gives them (GENRE's [] would raise)
        return PrefixConstrainedLogitsProcessor(lambda b, s: fn(b, s) or [EOS], BEAMS)

    res["gen_ms"], res["gen_out"] = timed_generate(vocab, max(map(len, seqs)), peer)
    digest = Digest()
    for p in check_prefixes(seqs, vocab):
        digest.add(sorted(trie.get(p)))
    res["allowed_sets"] = digest.hexdigest()
    return res


class Digest:
    """sha256 over a stream of allowed sets (keeping 100k root lists would take gigabytes)."""

    def __init__(self) -> None:
        import hashlib

        self.h = hashlib.sha256()

    def add(self, allowed: list[int]) -> None:
        self.h.update(np.asarray(allowed, dtype=np.int64).tobytes() + b"|")

    def hexdigest(self) -> str:
        return self.h.hexdigest()[:16]


def worker(args) -> None:
    res = run_ours(args.case, args.path) if args.side == "ours" else run_dict(args.case)
    print(json.dumps(res))


def spawn(side: str, case: str, path: str) -> dict:
    cmd = [sys.executable, __file__, "--worker", side, "--case", case, "--path", path]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(case: str, ours: dict, base: dict) -> None:
    same = "yes" if ours["allowed_sets"] == base["allowed_sets"] else "NO"
    same_gen = "yes" if ours["gen_out"] == base["gen_out"] else "NO"
    print(f"\n## {case}: {ours['nodes']:,} nodes, root fan-out {ours['root_fanout']:,}")
    print(f"allowed sets identical on {N_CHECK:,} prefixes: {same}")
    print(f"constrained generate outputs identical: {same_gen}\n")
    print("| measure | CSR trie | dict trie | dict / CSR |")
    print("|---|---:|---:|---:|")
    rows = [
        ("build (s wall), from token lists", ours["build_s"], base["build_s"]),
        ("build (s CPU), from token lists", ours["build_cpu_s"], base["build_cpu_s"]),
        ("resident memory (MB)", ours["rss_mb"], base["rss_mb"]),
    ]
    for label, a, b in rows:
        print(f"| {label} | {a:.3f} | {b:.3f} | {b / max(a, 1e-9):.1f}x |")
    flat_s, flat_cpu = ours["build_flat_s"], ours["build_flat_cpu_s"]
    print(f"| build from flat arrays (s wall / CPU) | {flat_s:.3f} / {flat_cpu:.3f} | – | – |")
    print(f"| file size (MB) | {ours['file_mb']:.1f} | – | – |")
    print(
        f"| load (ms, mmap) | {ours['load_ms']:.3f} | rebuild: {base['build_s'] * 1000:.0f} | – |"
    )
    for d in DEPTHS:
        a, b = ours[f"proc_ms_{d}"], base[f"proc_ms_{d}"]
        print(f"| LogitsProcessor call, prefix {d} (ms) | {a:.2f} | {b:.1f} | {b / a:.0f}x |")
    print(f"| floor: one torch.where over 640 × V scores (ms) | {ours['floor_ms']:.2f} | – | – |")
    a, b = ours["gen_ms"], base["gen_ms"]
    print(f"| constrained generate, 64 × 10 beams, tiny GPT-2 (ms) | {a:.0f} | {b:.0f} | "
          f"{b / a:.1f}x |")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--worker", choices=["ours", "dict"])
    ap.add_argument("--case")
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.worker:
        args.side = args.worker
        return worker(args)
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases.split(","):
            path = str(Path(tmp) / f"{case}.trie")
            ours = spawn("ours", case, path)
            base = spawn("dict", case, path)
            report(case, ours, base)


if __name__ == "__main__":
    main()
