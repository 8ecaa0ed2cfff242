"""Prefix tries over identifier token sequences (docs/DESIGN.md, contract 5), for constrained
decoding.

`from vlmdata.trie import Trie` imports numpy only; the transformers `LogitsProcessor` lives in
`vlmdata.trie.mask` and is imported when `Trie.logits_processor()` is first called.
"""

from vlmdata.trie.core import Trie

__all__ = ["Trie"]
