"""Prefix tries over identifier token sequences (docs/DESIGN.md, contract 5), for constrained
decoding.

`from vlmdata.trie import Trie` imports numpy only. Decoding builds on it, one way (`core`
imports neither): `vlmdata.trie.mask.TrieLogitsProcessor(trie, prompt_length, pad_id=...)` is
the transformers `LogitsProcessor`, and `vlmdata.trie.forest.batch_subset(trie, row_sets)` gives
each batch item its own candidate set (AutoVER).
"""

from vlmdata.trie.core import Trie

__all__ = ["Trie"]
