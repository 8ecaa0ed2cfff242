"""The GENRE-style baseline: a nested-dict trie and a per-beam `prefix_allowed_tokens_fn`.

Follows GENRE's `genre/trie.py` (De Cao et al., "Autoregressive Entity Retrieval", ICLR 2021),
the trie AutoVER and GRACE-style code bases reuse: one Python dict per node, children found by
walking dicts, the allowed list = `list(node.keys())`, an empty list off the trie. GENRE saves it
with pickle; this project never pickles, so the benchmark rebuilds it instead of loading it.
"""

from __future__ import annotations

from collections.abc import Sequence


class DictTrie:
    def __init__(self, sequences: Sequence[Sequence[int]] = ()) -> None:
        self.trie_dict: dict = {}
        self.len = 0
        for sequence in sequences:
            DictTrie._add_to_trie(sequence, self.trie_dict)
            self.len += 1

    def get(self, prefix_sequence: Sequence[int]) -> list[int]:
        return DictTrie._get_from_trie(prefix_sequence, self.trie_dict)

    @staticmethod
    def _add_to_trie(sequence: Sequence[int], trie_dict: dict) -> None:
        # GENRE recurses on sequence[1:]; the loop is the same walk without slice copies.
        for tok in sequence:
            trie_dict = trie_dict.setdefault(tok, {})

    @staticmethod
    def _get_from_trie(prefix_sequence: Sequence[int], trie_dict: dict) -> list[int]:
        for tok in prefix_sequence:
            trie_dict = trie_dict.get(tok)
            if trie_dict is None:
                return []  # GENRE: [] off the trie (transformers then raises)
        return list(trie_dict.keys())

    def __len__(self) -> int:
        return self.len


def prefix_allowed_tokens_fn(trie: DictTrie, prompt_length: int):
    """GENRE's usage: called by transformers once per beam per step."""

    def fn(batch_id: int, sent) -> list[int]:
        return trie.get(sent.tolist()[prompt_length:])

    return fn
