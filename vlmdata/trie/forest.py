"""Per-item candidate tries decoded in one batch (AutoVER's retrieval-augmented decoding).

Each batch item may only generate one of its own top-k retrieved entities. Rather than one trie
and one processor per item, the candidate sets become one trie whose root has a private marker
token per item (vocab_size + b, never a real token): item b's rows start at the marker's node,
so the same vectorised walk and mask serve the whole batch × beams at once. An item whose set
is empty (or holds no row of the trie) can only emit eos.

Layering: this module and `mask` build on `core`; `core` imports neither.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vlmdata.trie.core import Trie


@dataclass
class Forest:
    trie: Trie  # markers vocab_size + b lead to item b's candidates
    start_nodes: np.ndarray  # (batch,) node of each item's marker (-1: empty candidate set)
    vocab_size: int  # the real vocabulary (without markers)

    @classmethod
    def build(cls, base: Trie, row_sets: Sequence[Sequence[int]]) -> Forest:
        """Item b's rows start at marker vocab_size + b; lookups give `base`'s rows."""
        flats, lens, rows = [], [], []
        for b, wanted in enumerate(row_sets):
            flat, lengths, out_rows = base.sequences(wanted)
            starts = np.cumsum(lengths) - lengths
            flats.append(np.insert(flat, starts, base.vocab_size + b))
            lens.append(lengths + 1)
            rows.append(out_rows)
        trie = Trie.from_flat(
            np.concatenate(flats) if flats else np.zeros(0, np.int64),
            np.concatenate(lens) if lens else np.zeros(0, np.int64),
            np.concatenate(rows) if rows else np.zeros(0, np.int64),
            vocab_size=base.vocab_size + len(row_sets),
            eos_id=base.eos_id,
            tokenizer_name=base.tokenizer_name,
            meta=base.header.get("meta"),
        )
        markers = base.vocab_size + np.arange(len(row_sets))
        starts = trie.step(np.zeros(len(row_sets), np.int64), markers)
        return cls(trie=trie, start_nodes=starts, vocab_size=base.vocab_size)

    def children(self, item: int, prefix: Sequence[int]) -> np.ndarray:
        return self.trie.children([self.vocab_size + item, *prefix])

    def lookup(self, item: int, tokens: Sequence[int]) -> int | None:
        """Row of a complete sequence among item's candidates, else None."""
        return self.trie.lookup([self.vocab_size + item, *tokens])

    def logits_processor(self, prompt_length: int, *, pad_id: int | None = None):
        """Masks item b's beams (rows b·beams … b·beams + beams - 1) to item b's candidates."""
        from vlmdata.trie.mask import TrieLogitsProcessor

        return TrieLogitsProcessor(
            self.trie, prompt_length, pad_id=pad_id, start_nodes=self.start_nodes
        )


def batch_subset(base: Trie, row_sets: Sequence[Sequence[int]]) -> Forest:
    """One candidate set per batch item, decoded together (AutoVER): every sequence of each
    item's rows, as `base.subset(rows)` would keep them."""
    return Forest.build(base, row_sets)
