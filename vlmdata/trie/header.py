"""The arrays and header of a `Trie`: made from built CSR arrays (`build.py`), and checked when
a saved file is opened, so that a malformed or foreign file is a `TrieFileError` naming the file
(bad input, CLI exit 2) rather than a wrong answer or a crash deep in a query.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from vlmdata.core.errors import DataError
from vlmdata.trie.build import CSRArrays

MAX_VOCAB = 1 << 31  # tokens are stored as int32 at most


class TrieFileError(DataError, ValueError):
    """A trie file that cannot be used: the message names the file and what is wrong."""


REQUIRED_ARRAYS = ("offsets", "tokens", "term_nodes", "term_rows", "dup_nodes", "dup_rows")
REQUIRED_LISTS = ("level_starts", "level_max_fanout")


def check_layout(path: str | os.PathLike, header: dict[str, Any], arrays: dict) -> None:
    """ValueError naming the file when a saved trie lacks an array or header list it needs."""
    missing = [a for a in REQUIRED_ARRAYS if a not in arrays]
    if missing:
        raise ValueError(f"{path}: trie file lacks the array(s) {missing}; rebuild it")
    for key in REQUIRED_LISTS:
        value = header.get(key)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in value
        ):
            raise ValueError(f"{path}: trie header {key!r} is {value!r}, not a list of integers")


def checked_vocab_size(value: Any) -> int:
    """The header's vocab_size: a token must fit the int32 arrays."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_VOCAB:
        raise ValueError(f"trie vocab_size {value!r} is not an integer in [1, 2^31]")
    return value


def checked_eos_id(value: Any, vocab_size: int) -> int | None:
    """None, or a real token: -1 would index the last logit and silently allow it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"trie eos_id {value!r} is not an integer")
    if not 0 <= int(value) < vocab_size:
        raise ValueError(f"trie eos_id {int(value)} is outside the vocabulary [0, {vocab_size})")
    return int(value)


def arrays_of(csr: CSRArrays) -> dict[str, np.ndarray]:
    """The arrays a `Trie` is made of (and a file stores), by name."""
    return {
        "offsets": csr.offsets,
        "tokens": csr.tokens,
        "term_nodes": csr.term_nodes,
        "term_rows": csr.term_rows,
        "dup_nodes": csr.dup_nodes,
        "dup_rows": csr.dup_rows,
    }


def counts_of(csr: CSRArrays) -> dict[str, Any]:
    """The numbers `make_header` takes, of built arrays."""
    return {
        "n_nodes": int(len(csr.offsets) - 1),
        "n_edges": int(len(csr.tokens)),
        "n_sequences": csr.n_sequences,
        "n_duplicates": csr.n_duplicates,
        "level_starts": csr.level_starts,
        "level_max_fanout": csr.level_max_fanout,
    }


def make_header(
    vocab_size: int,
    eos_id: int | None,
    tokenizer_name: str,
    meta: dict[str, Any] | None,
    *,
    n_nodes: int,
    n_edges: int,
    n_sequences: int,
    n_duplicates: int,
    level_starts: list[int],
    level_max_fanout: list[int],
) -> dict[str, Any]:
    """The header a trie file stores beside its arrays (sizes, eos, tokenizer, level layout)."""
    return {
        "vocab_size": int(vocab_size),
        "eos_id": None if eos_id is None else int(eos_id),
        "tokenizer": tokenizer_name,
        "n_nodes": int(n_nodes),
        "n_edges": int(n_edges),
        "n_sequences": int(n_sequences),
        "n_duplicates": int(n_duplicates),
        "level_starts": [int(x) for x in level_starts],
        "level_max_fanout": [int(x) for x in level_max_fanout],
        "child_nodes": "implicit: edge e leads to node e + 1 (level order)",
        "meta": meta or {},
    }
