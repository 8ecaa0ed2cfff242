"""Level-order CSR construction of a prefix trie, vectorised with numpy.

Why level order: the nodes of one depth are numbered after all nodes of the depth above, and a
node's children get consecutive numbers, sorted by token. So a node's children are one slice of
`tokens`, and the child reached through edge `e` is simply node `e + 1` (no child-node array to
store). Each level is one `np.unique` over `parent * vocab + token` keys, which sorts the edges by
(parent, token) exactly in that order, so building never loops over sequences in Python.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass
class CSRArrays:
    """The arrays of a trie (see module docstring) plus the few numbers the header keeps."""

    offsets: np.ndarray  # (n_nodes + 1,) children of node n are edges offsets[n]:offsets[n+1]
    tokens: np.ndarray  # (n_edges,) token of edge e, which leads to node e + 1
    term_nodes: np.ndarray  # (n_terminals,) sorted nodes where a sequence ends
    term_rows: np.ndarray  # (n_terminals,) identifier row (e.g. ids.parquet row) of that sequence
    dup_nodes: np.ndarray  # (n_duplicates,) terminal node of each sequence equal to another one
    dup_rows: np.ndarray  # (n_duplicates,) its row (kept so a row subset can find it)
    level_starts: list[int]  # first node of each depth, plus n_nodes at the end
    level_max_fanout: list[int]  # widest node of each depth (bounds the binary search)
    n_sequences: int
    n_duplicates: int  # sequences ending at an already used node (lookup gives the lowest row)


def flatten(seqs: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token lists → (flat int64 tokens, lengths), without a Python loop per token."""
    lengths = np.fromiter(map(len, seqs), dtype=np.int64, count=len(seqs))
    flat = np.fromiter(
        itertools.chain.from_iterable(seqs), dtype=np.int64, count=int(lengths.sum())
    )
    return flat, lengths


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def build_csr(
    flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray, vocab_size: int
) -> CSRArrays:
    """Build the CSR trie of the sequences `flat` split by `lengths`; `rows[i]` names sequence i."""
    flat = np.asarray(flat)
    lengths = np.asarray(lengths, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) != len(lengths):
        raise ValueError(f"{len(rows)} rows for {len(lengths)} sequences")
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        bad = flat[(flat < 0) | (flat >= vocab_size)][0]
        raise ValueError(f"token {int(bad)} outside the vocabulary [0, {vocab_size})")
    # Longest first: the sequences still going at depth d are the first live[d], a slice, and
    # those ending at depth d are the slice live[d]:live[d - 1].
    order = np.argsort(-lengths, kind="stable")
    starts = (np.cumsum(lengths) - lengths)[order]
    lengths, rows = lengths[order], rows[order]
    live = np.searchsorted(-lengths, -np.arange(int(lengths[0]) + 1 if len(lengths) else 1))
    live = np.append(live, 0)  # live[d] = number of sequences longer than d
    node = np.zeros(len(lengths), dtype=np.int64)  # current node of each sequence
    ends_nodes, ends_rows = [node[live[0] :]], [rows[live[0] :]]  # empty sequences: the root
    # Per level only compact arrays are kept: tokens in their final dtype and the child count
    # of each node of the level above (int32: no node has 2^31 children), never an int64
    # array over all nodes (31M nodes for OVEN's 6M names).
    counts, toks, level_starts, next_id = [], [], [0, 1], 1
    tok_dtype = token_dtype(vocab_size)
    for depth in range(len(live) - 2):
        k = int(live[depth])
        key = node[:k] * vocab_size + flat[starts[:k] + depth]
        uniq, inv = np.unique(key, return_inverse=True)
        above = level_starts[-2], level_starts[-1]  # the nodes these edges leave
        counts.append(_child_counts(uniq // vocab_size - above[0], above[1] - above[0]))
        toks.append((uniq % vocab_size).astype(tok_dtype))
        del key, uniq
        node[:k] = next_id + inv.reshape(-1)
        next_id += len(toks[-1])
        level_starts.append(next_id)
        done = slice(int(live[depth + 1]), k)
        ends_nodes.append(node[done])
        ends_rows.append(rows[done])
    n_nodes = next_id
    counts.append(np.zeros(n_nodes - level_starts[-2], dtype=np.int32))  # the deepest: leaves
    fanout = [int(c.max()) if len(c) else 0 for c in counts]
    n_edges = n_nodes - 1
    offsets = np.zeros(n_nodes + 1, dtype=np.int32 if n_edges < 2**31 else np.int64)
    np.cumsum(np.concatenate(counts), out=offsets[1:])
    del counts
    term, dup = _terminals(np.concatenate(ends_nodes), np.concatenate(ends_rows))
    return CSRArrays(
        offsets=offsets,
        tokens=np.concatenate(toks) if toks else np.zeros(0, token_dtype(vocab_size)),
        term_nodes=term[0],
        term_rows=term[1],
        dup_nodes=dup[0],
        dup_rows=dup[1],
        level_starts=level_starts,
        level_max_fanout=fanout,
        n_sequences=len(lengths),
        n_duplicates=len(dup[0]),
    )


def _child_counts(parents: np.ndarray, n: int) -> np.ndarray:
    """Children of each of the `n` nodes of a level, from its edges' parents (0-based)."""
    return np.bincount(parents, minlength=n).astype(np.int32)


def _terminals(
    nodes: np.ndarray, rows: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((node, row) of the lowest row ending at each node, (node, row) of every other one).

    Both sorted by node, then row. The second pair is what `Trie.subset` needs to keep a row
    whose sequence equals another row's (two entities with one name).
    """
    order = np.lexsort((rows, nodes))  # by node, then row
    nodes, rows = nodes[order], rows[order]
    first = np.ones(len(nodes), dtype=bool)
    first[1:] = nodes[1:] != nodes[:-1]
    idx_dtype = np.int32 if (len(nodes) == 0 or nodes.max() < 2**31) else np.int64
    row_dtype = np.int32 if (len(rows) == 0 or rows.max() < 2**31) else np.int64
    return (
        (nodes[first].astype(idx_dtype), rows[first].astype(row_dtype)),
        (nodes[~first].astype(idx_dtype), rows[~first].astype(row_dtype)),
    )
