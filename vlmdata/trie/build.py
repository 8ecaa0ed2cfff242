"""Level-order CSR construction of a prefix trie, vectorised with numpy.

Why level order: the nodes of one depth are numbered after all nodes of the depth above, and a
node's children get consecutive numbers, sorted by token. So a node's children are one slice of
`tokens`, and the child reached through edge `e` is simply node `e + 1` (no child-node array to
store). Each level is one stable sort of `parent * vocab + token` keys, which orders the edges by
(parent, token) exactly in that order, so building never loops over sequences in Python.

`write_levels` streams the levels straight into the trie file: each depth's offsets, edge
tokens and ending sequences go to their own spool (`storage.Spool`, an unnamed temporary file
beside the output) at once, and `storage.save_spooled` copies the spools behind the header once
the lengths are known: the bytes of `build_csr` + `save_arrays`, without the whole trie (25 MB
at 10^6 OVEN-like names) in memory or its terminals concatenated (held twice).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlmdata.trie.storage import Spool, save_spooled


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


@dataclass
class Level:
    """One step of the level-order build, in file order: the sequences ending at this depth
    (`_level_terminals`), the offsets entries of the nodes at this depth (their children's
    edge ranges) and the tokens of the edges leaving them. The last level has no edges and
    its offsets are the deepest nodes' (leaves)."""

    terms: tuple[np.ndarray, ...]
    offsets: np.ndarray
    tokens: np.ndarray
    fanout: int


def build_csr(
    flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray | None, vocab_size: int
) -> CSRArrays:
    """Build the CSR trie of the sequences `flat` split by `lengths`; `rows[i]` (default i)
    names sequence i. The levels of `build_levels`, gathered in memory."""
    flat = narrow_tokens(np.asarray(flat), vocab_size)
    # The outputs are filled level by level into arrays sized for the most nodes there can be
    # (one per token, plus the root): np.zeros maps pages lazily, so the unused tail never
    # becomes resident, and no per-level pieces are concatenated at the end.
    offsets = np.zeros(len(flat) + 2, dtype=_index_dtype(len(flat)))
    tokens = np.zeros(len(flat), dtype=flat.dtype)
    n_offsets, n_edges, fanout, terms = 1, 0, [], []
    level_starts = [0, 1]
    for lv in build_levels(flat, lengths, rows, vocab_size):
        terms.append(lv.terms)
        offsets[n_offsets : n_offsets + len(lv.offsets)] = lv.offsets
        n_offsets += len(lv.offsets)
        tokens[n_edges : n_edges + len(lv.tokens)] = lv.tokens
        n_edges += len(lv.tokens)
        fanout.append(lv.fanout)
        if len(lv.tokens):
            level_starts.append(n_edges + 1)
    n_nodes = level_starts[-1]
    term, dup = _join_terminals(terms)
    return CSRArrays(
        offsets=offsets[: n_nodes + 1].astype(_index_dtype(n_nodes - 1), copy=False),
        tokens=tokens[: n_nodes - 1],
        term_nodes=term[0],
        term_rows=term[1],
        dup_nodes=dup[0],
        dup_rows=dup[1],
        level_starts=level_starts,
        level_max_fanout=fanout,
        n_sequences=int(len(lengths)),
        n_duplicates=len(dup[0]),
    )


def build_levels(
    flat: np.ndarray, lengths: np.ndarray, rows: np.ndarray | None, vocab_size: int
) -> Iterator[Level]:
    """The trie's levels, root first (`Level`), so a writer can stream each to its file.

    The live sequences are kept sorted by (node, row): each level is a stable sort on
    (parent, token), so sequences stay in node order from one level to the next and the next
    level's keys are sorted but for the tokens under each node. Timsort (numpy's stable sort)
    takes such runs in near-linear time: 0.7 s for all levels at 6M names, against 4.2 s for
    a sort of the same keys in sequence order (measured). Sequences ending at a depth are
    dropped from the live arrays there, already sorted by (node, row) for the terminals."""
    flat = narrow_tokens(np.asarray(flat), vocab_size)
    lengths = np.asarray(lengths)
    idx = _index_dtype(len(flat) + 1)  # node numbers and token positions
    pos, rem = _live_sequences(lengths, rows, idx)
    node = None  # each live sequence's node: none made for the root, where all are at 0
    out_dtype = _index_dtype(len(flat))  # offsets, as build_csr has always made them
    lo, hi = 0, 1  # the nodes of the current depth
    while True:
        done = rem == 0
        if node is None:  # the root: the sequences are still in row order
            terms = _level_terminals(np.zeros(np.count_nonzero(done), idx), _root_rows(done, rows))
        else:
            terms = _level_terminals(node[done], _ended_rows(pos[done], lengths, rows, idx))
        if done.all():
            break
        if done.any():  # one array at a time: a tuple assignment held all the copies at once
            keep = ~done
            pos = pos[keep]
            rem = rem[keep]
            node = None if node is None else node[keep]
            del keep
        del done
        # One array at a time: the nodes go once keyed, the key once sorted (each held once).
        key, pbits = _packed_keys(node, flat[pos], (lo, hi), vocab_size)
        node = None  # held in the keys now
        perm, key = _sort_keys(key, pbits)
        first, edges = _edge_starts(key)
        del key  # before the edges are split: the keys are the widest array here
        counts, edge_toks = _edge_counts(edges, hi - lo, vocab_size, flat.dtype)
        del edges
        node = np.cumsum(first, dtype=idx)  # each sequence's child: the level's nth edge's
        del first
        node += hi - 1  # the first child of this level is node hi
        pos = pos[perm]  # one at a time: one copy alive at once
        rem = rem[perm]
        del perm
        pos += 1
        rem -= 1
        # edges of this level are hi - 1 onwards (edge e leads to node e + 1)
        offs = np.cumsum(counts, dtype=out_dtype)
        offs += hi - 1
        yield Level(terms, offs, edge_toks, int(counts.max()) if len(counts) else 0)
        del terms, offs, counts
        lo, hi = hi, hi + len(edge_toks)
        del edge_toks
    del pos, rem, node
    # the deepest level: leaves (hi is the number of nodes)
    yield Level(terms, np.full(hi - lo, hi - 1, dtype=out_dtype), flat[:0], 0)


def _live_sequences(
    lengths: np.ndarray, rows: np.ndarray | None, idx: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """Each sequence's (next token position, remaining length), ordered by row. No row is
    kept per live sequence: a sequence's row follows from where it ends (`_ended_rows`), 4
    bytes a name less, and none permuted at each level (measured at 10^6 names: the level
    build's peak 223 -> ~219 MB)."""
    if rows is not None and len(rows) != len(lengths):
        raise ValueError(f"{len(rows)} rows for {len(lengths)} sequences")
    pos = np.cumsum(lengths, dtype=idx)
    pos -= lengths.astype(idx, copy=False)
    top = int(lengths.max()) if len(lengths) else 0
    rem = lengths.astype(np.min_scalar_type(top), copy=False)  # never changed in place
    if rows is None:
        return pos, rem
    order = np.argsort(rows, kind="stable")
    return pos[order], rem[order]


def _root_rows(done: np.ndarray, rows: np.ndarray | None) -> np.ndarray:
    """The rows of the sequences `done` at the root (empty ones), the live sequences being
    in row order there (`_live_sequences`)."""
    at = np.flatnonzero(done)
    return at if rows is None or not len(at) else np.sort(np.asarray(rows), kind="stable")[at]


def _ended_rows(
    ends: np.ndarray, lengths: np.ndarray, rows: np.ndarray | None, idx: np.dtype
) -> np.ndarray:
    """The rows of sequences ending below the root, from where they end in `flat` (their
    next token position, once none remain): sequence i ends at the cumulative length
    through i, and below the root it is not empty, so the first sequence ending there is it
    (an empty one after it ends there too)."""
    if not len(ends):
        return np.zeros(0, np.int64)
    seq = np.searchsorted(np.cumsum(lengths, dtype=idx), ends, side="left")
    return seq if rows is None else np.asarray(rows)[seq]


TERMS = ("term_nodes", "term_rows", "dup_nodes", "dup_rows")  # the order of `Level.terms`


def write_levels(
    path: str | os.PathLike,
    flat: np.ndarray,
    lengths: np.ndarray,
    rows: np.ndarray | None,
    vocab_size: int,
    make_header: Callable[..., dict[str, Any]],
) -> None:
    """Build the trie of `flat` split by `lengths` (rows as in `build_csr`) straight into
    `path` (atomically). `make_header(n_nodes=, n_edges=, n_sequences=, n_duplicates=,
    level_starts=, level_max_fanout=)` gives the file's header."""
    folder = Path(path).parent
    folder.mkdir(parents=True, exist_ok=True)
    flat = narrow_tokens(np.asarray(flat), vocab_size)
    off_dtype = _index_dtype(len(flat))  # as `build_csr` fills offsets, narrowed at the end
    spools = {"offsets": Spool(off_dtype, folder), "tokens": Spool(flat.dtype, folder)}
    spools |= {name: Spool(np.int64, folder) for name in TERMS}
    try:
        spools["offsets"].append(np.zeros(1, off_dtype))  # the root's children start at 0
        level_starts, fanout = [0, 1], []
        for lv in build_levels(flat, lengths, rows, vocab_size):
            for name, part in zip(TERMS, lv.terms, strict=True):
                spools[name].append(part)
            spools["offsets"].append(lv.offsets)
            spools["tokens"].append(lv.tokens)
            fanout.append(lv.fanout)
            if len(lv.tokens):
                level_starts.append(level_starts[-1] + len(lv.tokens))
            del lv
        n_nodes = level_starts[-1]
        header = make_header(
            n_nodes=n_nodes,
            n_edges=spools["tokens"].count,
            n_sequences=int(len(lengths)),
            n_duplicates=spools["dup_nodes"].count,
            level_starts=level_starts,
            level_max_fanout=fanout,
        )
        dtypes = {"offsets": _index_dtype(n_nodes - 1), "tokens": flat.dtype}
        dtypes |= dict.fromkeys(TERMS[0::2], _narrowest(spools, TERMS[0::2]))
        dtypes |= dict.fromkeys(TERMS[1::2], _narrowest(spools, TERMS[1::2]))
        save_spooled(path, header, {name: (sp, dtypes[name]) for name, sp in spools.items()})
    finally:
        for sp in spools.values():
            sp.close()


def _narrowest(spools: dict[str, Spool], names: tuple[str, ...]) -> np.dtype:
    """int32 unless a value of any of these spools needs more (`_join_terminals`' rule)."""
    top = max((spools[n].max for n in names if spools[n].max is not None), default=0)
    return np.dtype(np.int32) if top < 2**31 else np.dtype(np.int64)


def narrow_tokens(flat: np.ndarray, vocab_size: int) -> np.ndarray:
    """`flat` in the file's token dtype (uint16 for vocabularies up to 2^16), range-checked."""
    if flat.size and (flat.min() < 0 or flat.max() >= vocab_size):
        bad = flat[(flat < 0) | (flat >= vocab_size)][0]
        raise ValueError(f"token {int(bad)} outside the vocabulary [0, {vocab_size})")
    return flat.astype(token_dtype(vocab_size), copy=False)


def _index_dtype(n: int) -> np.dtype:
    """int32 for indexes below n when they fit (half the memory of int64), else int64."""
    return np.dtype(np.int32) if n < 2**31 else np.dtype(np.int64)


def _edge_keys(
    nodes: np.ndarray | None, toks: np.ndarray, above: tuple[int, int], vocab_size: int
) -> np.ndarray:
    """Each live sequence's edge key, (node - above[0]) * vocab + token, as narrow as the
    level allows: the token alone under the root, uint32 while width x vocab fits, else int64.
    `nodes` (sorted; None at the root) are the sequences' nodes among `above` (first, end)."""
    width = above[1] - above[0]
    if width == 1:
        return toks
    if width * vocab_size <= 2**32:
        key = (nodes - above[0]).astype(np.uint32)
        key *= np.uint32(vocab_size)
    else:
        key = (nodes - above[0]).astype(np.int64)
        key *= vocab_size
    np.add(key, toks, out=key, casting="unsafe")  # tokens are in [0, vocab): no overflow
    return key


def _packed_keys(
    nodes: np.ndarray | None, toks: np.ndarray, above: tuple[int, int], vocab_size: int
) -> tuple[np.ndarray, int]:
    """(keys to sort, position bits) for `_sort_keys`. Each edge key (`_edge_keys`) with
    the sequence's position in the low `pbits` bits, one uint64 (ties then keep their order,
    so any sort is stable); keys too wide for 64 bits with their positions give the edge
    keys alone and pbits 0 (a stable argsort). The root packs too (its nodes are None, all
    0): a stable argsort of its tokens held an int64 order and numpy's int64 radix buffer,
    16 MB at 10^6 names, against the packed keys' 8 and timsort's 4 (one of build-trie's
    peaks, measured)."""
    width, n = above[1] - above[0], len(toks)
    pbits = max(1, (n - 1).bit_length())  # bits for a position
    if pbits > 31 or width * vocab_size > 2 ** (64 - pbits) or _big_endian():
        return _edge_keys(nodes, toks, above, vocab_size), 0
    both = np.empty(n, np.uint64)
    if nodes is None:  # the root: the token alone
        both[:] = toks
    else:
        np.subtract(nodes, above[0], out=both, casting="unsafe")  # nodes are >= above[0]
        both *= np.uint64(vocab_size)
        np.add(both, toks, out=both, casting="unsafe")  # < width x vocab
    both <<= np.uint64(pbits)
    for i in range(0, n, 1 << 16):  # | position, a block at a time (no n-long temporary)
        both[i : i + (1 << 16)] |= np.arange(i, min(n, i + (1 << 16)), dtype=np.uint64)
    return both, pbits


def _sort_keys(key: np.ndarray, pbits: int) -> tuple[np.ndarray, np.ndarray]:
    """(the stable order of the edge keys, the keys in that order) from `_packed_keys`.

    Packed keys are sorted in place, the positions masked out as int32 and the keys shifted
    down in place: no int64 argsort order and no second key array (at 10^6 names the level
    below the root peaked at ~30 MB traced with them). Timsort, on the runs the node order
    leaves: as fast as the stable argsort (measured). Why not np.unique(return_inverse): no
    int64 inverse is made."""
    if pbits == 0:
        perm = np.argsort(key, kind="stable")  # radix for the root's uint16 tokens
        return perm, key[perm]
    key.sort(kind="stable")
    low = key.view(np.uint32)[0::2]  # little-endian: the low half holds the position
    perm = np.bitwise_and(low, np.uint32((1 << pbits) - 1)).view(np.int32)
    del low
    key >>= np.uint64(pbits)
    return perm, key.view(np.int64)  # keys < 2^(64 - pbits): the int64 view is exact


def _big_endian() -> bool:
    return sys.byteorder != "little"


def _edge_starts(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """From one depth's sorted edge keys: (True where a key starts a new edge, the key of
    each edge). The caller drops the keys before `_edge_counts`: the per-sequence keys and
    the per-edge ones were held together with two int64 temporaries of the edges (at 10^6
    names the levels below the root peaked there, measured)."""
    first = np.empty(len(key), dtype=bool)
    first[:1] = True
    np.not_equal(key[1:], key[:-1], out=first[1:])
    return first, key[first]


def _edge_counts(
    edges: np.ndarray, width: int, vocab_size: int, tok_dtype: np.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """(each node's number of children among the `width` nodes above, each edge's token in
    `tok_dtype`) from the edges' keys, which are divided in place (no int64 temporary)."""
    toks = np.empty(len(edges), tok_dtype)
    np.remainder(edges, vocab_size, out=toks, casting="unsafe")  # < vocab: fits tok_dtype
    edges //= vocab_size
    return np.bincount(edges, minlength=width), toks


def _level_terminals(nodes: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """The sequences ending at one depth, given sorted by node, then row: (first nodes, their
    rows, other nodes, their rows), the first being the lowest row ending at each node. The
    nodes of a depth all come after those of the depth above, so per-depth pieces joined in
    depth order are sorted too."""
    first = np.ones(len(nodes), dtype=bool)
    first[1:] = nodes[1:] != nodes[:-1]
    return nodes[first], rows[first], nodes[~first], rows[~first]


def _join_terminals(
    parts: list[tuple[np.ndarray, ...]],
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """((node, row) of the lowest row ending at each node, (node, row) of every other one).

    Both sorted by node, then row. The second pair is what `Trie.subset` needs to keep a row
    whose sequence equals another row's (two entities with one name). int32 unless a node or
    row (of either pair) needs more."""
    joined = [np.concatenate([p[i] for p in parts]) for i in range(4)]
    parts.clear()
    nodes_max = max((int(a.max()) for a in joined[0::2] if len(a)), default=0)
    rows_max = max((int(a.max()) for a in joined[1::2] if len(a)), default=0)
    idx_dtype = np.int32 if nodes_max < 2**31 else np.int64
    row_dtype = np.int32 if rows_max < 2**31 else np.int64
    term_nodes, term_rows, dup_nodes, dup_rows = (
        a.astype(t, copy=False) for a, t in zip(joined, (idx_dtype, row_dtype) * 2, strict=True)
    )
    return (term_nodes, term_rows), (dup_nodes, dup_rows)
