"""`Trie`: a read-mostly prefix trie over token sequences, for constrained decoding.

Built once (see `build.py` for the level-order CSR layout), saved to one file and memory-mapped
back (`storage.py`). Queries walk many prefixes at once: `walk` advances every row one depth per
step with array operations (a dense table for the root, whose fan-out is the vocabulary's order,
and a vectorised binary search inside each node's sorted child slice below it). What a file
holds, and the checks a loaded one passes, are in `header.py`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlmdata.trie.build import build_csr, flatten, write_levels
from vlmdata.trie.header import (
    MAX_VOCAB,
    TrieFileError,
    arrays_of,
    check_layout,
    checked_eos_id,
    checked_vocab_size,
    counts_of,
    make_header,
)
from vlmdata.trie.storage import load_arrays, save_arrays

__all__ = ["MAX_VOCAB", "Trie", "TrieFileError"]  # the file checks live in header.py


class Trie:
    """Prefix trie over token sequences; each complete sequence maps to an identifier row."""

    def __init__(self, arrays: dict[str, np.ndarray], header: dict[str, Any]) -> None:
        self.offsets = arrays["offsets"]
        self.tokens = arrays["tokens"]
        self.term_nodes = arrays["term_nodes"]
        self.term_rows = arrays["term_rows"]
        self.dup_nodes = arrays["dup_nodes"]
        self.dup_rows = arrays["dup_rows"]
        self.header = header
        self.vocab_size: int = checked_vocab_size(header.get("vocab_size"))
        self.eos_id: int | None = checked_eos_id(header.get("eos_id"), self.vocab_size)
        self.tokenizer_name: str = header.get("tokenizer", "")
        self.level_starts: list[int] = header["level_starts"]
        self.level_max_fanout: list[int] = header["level_max_fanout"]
        self._root_table: np.ndarray | None = None
        self._by_row: tuple[np.ndarray, np.ndarray] | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        seqs: Sequence[Sequence[int]],
        rows: Sequence[int] | None = None,
        *,
        vocab_size: int,
        eos_id: int | None,
        tokenizer_name: str = "",
        meta: dict[str, Any] | None = None,
    ) -> Trie:
        """Trie of `seqs`; `rows[i]` (default i) is returned by `lookup` for sequence i."""
        flat, lengths = flatten(seqs)
        return cls.from_flat(
            flat,
            lengths,
            rows,
            vocab_size=vocab_size,
            eos_id=eos_id,
            tokenizer_name=tokenizer_name,
            meta=meta,
        )

    @classmethod
    def from_flat(
        cls,
        flat: np.ndarray,
        lengths: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        vocab_size: int,
        eos_id: int | None,
        tokenizer_name: str = "",
        meta: dict[str, Any] | None = None,
    ) -> Trie:
        """Like `build`, from concatenated tokens and per-sequence lengths (no lists needed)."""
        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        csr = build_csr(flat, lengths, rows, vocab_size)
        header = make_header(vocab_size, eos_id, tokenizer_name, meta, **counts_of(csr))
        return cls(arrays_of(csr), header)

    @classmethod
    def write_flat(
        cls,
        path: str | os.PathLike,
        flat: np.ndarray,
        lengths: np.ndarray,
        rows: Sequence[int] | np.ndarray | None = None,
        *,
        vocab_size: int,
        eos_id: int | None,
        tokenizer_name: str = "",
        meta: dict[str, Any] | None = None,
    ) -> Trie:
        """`from_flat(...).save(path)`, the same bytes, with each level written to the file as
        it is built instead of the whole trie held (`build.write_levels`); returned mapped."""
        from functools import partial

        rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        header = partial(make_header, vocab_size, eos_id, tokenizer_name, meta)
        write_levels(path, flat, lengths, rows, vocab_size, header)
        return cls.load(path)

    def save(self, path: str | os.PathLike) -> None:
        header = {k: v for k, v in self.header.items() if k not in ("arrays", "format", "version")}
        save_arrays(path, header, self._array_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Trie:
        """Open a saved trie by memory map (nothing is read until a query touches it)."""
        try:
            header, arrays = load_arrays(path)
            check_layout(path, header, arrays)
            return cls(arrays, header)
        except ValueError as e:  # a malformed file: bad input (CLI exit 2), not a crash
            msg = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            raise TrieFileError(msg) from None

    # -- sizes ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Number of distinct complete sequences."""
        return len(self.term_nodes)

    @property
    def n_nodes(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self._array_dict().values())

    def _array_dict(self) -> dict[str, np.ndarray]:
        return {
            "offsets": self.offsets,
            "tokens": self.tokens,
            "term_nodes": self.term_nodes,
            "term_rows": self.term_rows,
            "dup_nodes": self.dup_nodes,
            "dup_rows": self.dup_rows,
        }

    # -- single queries -------------------------------------------------------------------------
    def node(self, prefix: Sequence[int]) -> int:
        """Node reached by `prefix`, or -1 if the prefix leaves the trie."""
        node = 0
        for tok in prefix:
            lo, hi = int(self.offsets[node]), int(self.offsets[node + 1])
            i = lo + int(np.searchsorted(self.tokens[lo:hi], tok))
            if i >= hi or int(self.tokens[i]) != tok:
                return -1
            node = i + 1
        return node

    def children(self, prefix: Sequence[int]) -> np.ndarray:
        """Sorted tokens allowed after `prefix` (empty if off-trie or the sequence is complete)."""
        node = self.node(prefix)
        if node < 0:
            return np.zeros(0, dtype=np.int64)
        return self.tokens[self.offsets[node] : self.offsets[node + 1]].astype(np.int64)

    def lookup(self, tokens: Sequence[int]) -> int | None:
        """Identifier row of the complete sequence `tokens` (eos included), else None."""
        node = self.node(tokens)
        return None if node < 0 else self._row_of(node)

    def _row_of(self, node: int) -> int | None:
        i = int(np.searchsorted(self.term_nodes, node))
        if i < len(self.term_nodes) and int(self.term_nodes[i]) == node:
            return int(self.term_rows[i])
        return None

    # -- batched queries ------------------------------------------------------------------------
    def root_table(self) -> np.ndarray:
        """Dense token → child-node table for the root (built lazily, int32). It ends at the
        largest root token, not at vocab_size: its size follows the file, not the header."""
        if self._root_table is None:
            lo, hi = int(self.offsets[0]), int(self.offsets[1])
            root_tokens = self.tokens[lo:hi].astype(np.int64)
            table = np.full(int(root_tokens.max()) + 1 if hi > lo else 0, -1, dtype=np.int32)
            table[root_tokens] = np.arange(lo + 1, hi + 1)
            self._root_table = table
        return self._root_table

    def step(self, nodes: np.ndarray, toks: np.ndarray) -> np.ndarray:
        """Child of each node through each token, -1 where there is none (or node is -1)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        toks = np.asarray(toks, dtype=np.int64)
        if len(self.tokens) == 0:  # an empty trie (e.g. an empty candidate set)
            return np.full(len(nodes), -1, np.int64)
        alive = nodes >= 0
        safe = np.where(alive, nodes, 0)
        lo = self.offsets[safe].astype(np.int64)
        hi = self.offsets[safe + 1].astype(np.int64)
        at_root = alive & (safe == 0)
        # Root rows are answered by the dense table below; dead rows search nothing.
        lo = np.where(at_root | ~alive, hi, lo)
        found = _lower_bound(self.tokens, lo, hi, toks)
        e_safe = np.minimum(found, len(self.tokens) - 1)
        hit = alive & (found < hi) & (self.tokens[e_safe] == toks)
        out = np.where(hit, found + 1, -1)
        if at_root.any():
            table = self.root_table()
            in_table = (toks >= 0) & (toks < len(table))
            rt = table[np.where(in_table, toks, 0)] if len(table) else np.full(len(toks), -1)
            out = np.where(at_root, np.where(in_table, rt, -1), out)
        return out

    def walk(self, prefixes: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """Node of each row of the (rows × depth) token matrix, -1 for rows that left the trie."""
        prefixes = np.asarray(prefixes, dtype=np.int64).reshape(len(prefixes), -1)
        nodes = np.zeros(len(prefixes), np.int64) if start is None else np.asarray(start)
        for d in range(prefixes.shape[1]):
            nodes = self.step(nodes, prefixes[:, d])
        return nodes

    def fanout(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first edge, number of children) of each node; (0, 0) for -1."""
        nodes = np.asarray(nodes, dtype=np.int64)
        safe = np.where(nodes >= 0, nodes, 0)
        lo = self.offsets[safe].astype(np.int64)
        n = np.where(nodes >= 0, self.offsets[safe + 1] - lo, 0)
        return lo, n

    def rows_of(self, nodes: np.ndarray) -> np.ndarray:
        """Identifier row of each node, -1 where no sequence ends there."""
        nodes = np.asarray(nodes, dtype=np.int64)
        i = np.searchsorted(self.term_nodes, nodes)
        i_safe = np.minimum(i, max(len(self.term_nodes) - 1, 0))
        if len(self.term_nodes) == 0:
            return np.full(len(nodes), -1, np.int64)
        ok = (i < len(self.term_nodes)) & (self.term_nodes[i_safe] == nodes)
        return np.where(ok, self.term_rows[i_safe], -1).astype(np.int64)

    # -- whole-trie views -----------------------------------------------------------------------
    def parents(self, nodes: np.ndarray) -> np.ndarray:
        """Parent of each (non-root) node: the owner of edge node - 1."""
        return np.searchsorted(self.offsets, np.asarray(nodes) - 1, side="right") - 1

    def pairs_of_rows(self, rows: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(terminal node, row) of every sequence whose row is in `rows`, sorted by row then node.

        Every one: a row with several sequences (semantic ids: one per text) gives several
        pairs, and a row whose sequence equals another row's (two entities with one name) is
        found too. Rows the trie does not hold are left out.
        """
        by_row, nodes = self._pairs_by_row()
        want = np.unique(np.asarray(rows, dtype=np.int64))
        lo = np.searchsorted(by_row, want, side="left")
        n = np.searchsorted(by_row, want, side="right") - lo
        idx = np.repeat(lo - (np.cumsum(n) - n), n) + np.arange(int(n.sum()))
        return nodes[idx], by_row[idx]

    def _pairs_by_row(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, nodes) of all stored (node, row) pairs, sorted by row then node (cached)."""
        if self._by_row is None:
            nodes = np.concatenate([self.term_nodes, self.dup_nodes]).astype(np.int64)
            rows = np.concatenate([self.term_rows, self.dup_rows]).astype(np.int64)
            order = np.lexsort((nodes, rows))
            self._by_row = (rows[order], nodes[order])
        return self._by_row

    def paths(self, nodes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(flat tokens, lengths) of the root-to-node paths, walking parents level by level."""
        nodes = np.asarray(nodes, dtype=np.int64)
        depth = np.searchsorted(self.level_starts, nodes, side="right") - 1
        width = int(depth.max()) if len(depth) else 0
        mat = np.zeros((len(nodes), width), dtype=np.int64)
        cur = nodes.copy()
        for d in range(width - 1, -1, -1):
            here = depth > d
            mat[here, d] = self.tokens[cur[here] - 1]
            cur[here] = self.parents(cur[here])
        return mat[np.arange(width)[None, :] < depth[:, None]], depth

    def sequences(self, rows: Sequence[int] | np.ndarray | None = None):
        """(flat tokens, lengths, rows) of every stored sequence, or of those of `rows`.

        Duplicates included, so `Trie.from_flat(*trie.sequences())` rebuilds the same trie.
        """
        if rows is None:
            out_rows, nodes = self._pairs_by_row()
        else:
            nodes, out_rows = self.pairs_of_rows(rows)
        flat, lengths = self.paths(nodes)
        return flat, lengths, out_rows

    def subset(self, rows: Sequence[int] | np.ndarray) -> Trie:
        """The trie of every sequence whose identifier row is in `rows` (a candidate set):
        equal to `Trie.build` over those sequences and rows."""
        flat, lengths, out_rows = self.sequences(rows)
        return Trie.from_flat(
            flat,
            lengths,
            out_rows,
            vocab_size=self.vocab_size,
            eos_id=self.eos_id,
            tokenizer_name=self.tokenizer_name,
            meta=self.header.get("meta"),
        )

    # -- decoding -------------------------------------------------------------------------------
    def prefix_allowed_tokens_fn(self, prompt_length: int, pad_id: int | None = None):
        """Callable(batch_id, input_ids) -> list of allowed tokens, for `generate()`.

        Never returns an empty list (transformers raises on one): off-trie or complete sequences
        get the eos (and pad) token, so the beam can finish.
        """
        fallback = [t for t in (self.eos_id, pad_id) if t is not None]

        def fn(batch_id: int, input_ids) -> list[int]:
            allowed = self.children(input_ids[prompt_length:].tolist()).tolist()
            return allowed or fallback

        return fn

    def __repr__(self) -> str:
        return (
            f"Trie({len(self)} sequences, {self.n_nodes} nodes, vocab {self.vocab_size}, "
            f"eos {self.eos_id}, tokenizer {self.tokenizer_name!r})"
        )


def _lower_bound(keys: np.ndarray, lo: np.ndarray, hi: np.ndarray, x: np.ndarray) -> np.ndarray:
    """First index in [lo, hi) of each row with keys[i] >= x; vectorised over rows.

    The loop runs log2(widest slice) times, not once per row: a few array ops per iteration.
    """
    lo, hi = lo.copy(), hi.copy()
    width = int((hi - lo).max()) if len(lo) else 0
    last = max(len(keys) - 1, 0)
    for _ in range(math.ceil(math.log2(width + 1)) if width > 0 else 0):
        open_ = lo < hi
        mid = (lo + hi) >> 1
        less = open_ & (keys[np.minimum(mid, last)] < x)
        lo = np.where(less, mid + 1, lo)
        hi = np.where(open_ & ~less, mid, hi)
    return lo
