"""The trie's LogitsProcessor on a GPU: batch 64 x 10 beams, scores on the device.

The same identifier sets as bench_trie.py (1M BPE-like, 1M structured, 10k BPE-like). For each
prefix depth: our vectorised processor with scores on CUDA, the floor (one `torch.where` over a
full 640 x V mask on the device), and, for the 10k set, the GENRE-style dict trie through
transformers' `PrefixConstrainedLogitsProcessor` with the same CUDA scores (the peer). Timings
are medians after a warm-up, with `torch.cuda.synchronize()` around each call.

    python benchmarks/bench_trie_gpu.py                   # needs CUDA
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_trie import BATCH, BEAMS, DEPTHS, EOS, as_lists, beam_prefixes, make  # noqa: E402


def cuda_ms(fn, reps: int) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        ts.append((time.perf_counter() - t) * 1000)
    return statistics.median(ts)


def run_case(case: str, with_dict: bool) -> None:
    import torch

    from vlmdata.trie import Trie
    from vlmdata.trie.mask import TrieLogitsProcessor

    flat, lengths, vocab = make(case)
    seqs = as_lists(flat, lengths)
    trie = Trie.from_flat(flat, lengths, vocab_size=vocab, eos_id=EOS)
    scores = torch.randn(BATCH * BEAMS, vocab, device="cuda")
    full = torch.ones_like(scores, dtype=torch.bool)
    floor = cuda_ms(lambda: torch.where(full, scores, float("-inf")), 20)
    proc = TrieLogitsProcessor(trie, 0)
    print(f"\n## {case} on {torch.cuda.get_device_name()} (floor {floor:.3f} ms)\n")
    print("| prefix depth | CSR trie processor (ms) | dict trie + transformers (ms) | ratio |")
    print("|---:|---:|---:|---:|")
    for d in DEPTHS:
        ids = torch.from_numpy(beam_prefixes(seqs, d, d)).cuda()
        ours = cuda_ms(lambda i=ids: proc(i, scores), 20)
        base = _dict_ms(seqs, ids, scores, d) if with_dict else None
        b = f"{base:.1f}" if base is not None else "–"
        r = f"{base / ours:.0f}x" if base is not None else "–"
        print(f"| {d} | {ours:.3f} | {b} | {r} |")


def _dict_ms(seqs, ids, scores, depth: int) -> float:
    from dict_trie import DictTrie, prefix_allowed_tokens_fn
    from transformers.generation.logits_process import PrefixConstrainedLogitsProcessor

    proc = PrefixConstrainedLogitsProcessor(prefix_allowed_tokens_fn(DictTrie(seqs), 0), BEAMS)
    return cuda_ms(lambda: proc(ids, scores), 2 if depth == 0 else 5)


def main() -> None:
    import torch

    if not torch.cuda.is_available():
        sys.exit("bench_trie_gpu.py needs a CUDA device")
    run_case("bpe10k", with_dict=True)
    run_case("bpe1m", with_dict=False)
    run_case("struct1m", with_dict=False)


if __name__ == "__main__":
    main()
