"""Masking a whole batch × beams to a trie inside `generate()`, with tensor operations.

`generate()` gives a logits processor no beam indices (beams are reordered every step), so each
call re-derives every row's trie node from the tokens generated so far: one vectorised `Trie.step`
per generated position (numpy on the host; the ids are tiny). The masking runs on the scores'
device with whole-tensor operations: one broadcast row when every beam sits at the same node
(the first step, at the root, whose children can be most of the vocabulary), else a -inf tensor
with the allowed (row, token) entries copied in. Rows that left the trie or completed a sequence
get eos (and pad) allowed, so no row is ever all -inf (transformers' own processor raises on an
empty allowed list).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from vlmdata.trie.core import Trie  # one way: core never imports this module

WIDE = 1024  # nodes with more children than this get a dense row instead of scattered pairs
MAX_WIDE_GROUPS = 16  # beyond this many distinct wide nodes in a batch, scatter everything


def mask_scores(
    trie: Trie,
    generated: np.ndarray,
    scores: torch.Tensor,
    *,
    fallback: list[int],
    start_nodes: np.ndarray | None = None,
) -> torch.Tensor:
    """`scores` with every token that leaves the trie set to -inf (a new tensor).

    Memory traffic is what costs on a (rows × vocab) tensor, so: when all rows sit at one node
    (always so at the first step) it is one broadcast `torch.where`; otherwise the output starts
    at -inf and only allowed entries are copied in (dense rows for the few very wide nodes).
    """
    nodes = trie.walk(generated, start_nodes)
    lo, n = trie.fanout(nodes)
    _check_width(trie, lo, n, scores.shape[-1])
    neg = float("-inf")
    uniq = np.unique(nodes)
    if len(uniq) == 1:
        row = _dense_rows(trie, uniq, scores.shape[-1], fallback, scores.device)
        return torch.where(row, scores, neg)
    out = torch.full_like(scores, neg)
    sparse = np.ones(len(nodes), dtype=bool)
    wide = uniq[trie.fanout(uniq)[1] > WIDE]
    if 0 < len(wide) <= MAX_WIDE_GROUPS:
        dense = _dense_rows(trie, wide, scores.shape[-1], fallback, scores.device)
        for j, node in enumerate(wide):
            rows = np.flatnonzero(nodes == node)
            sparse[rows] = False
            idx = torch.from_numpy(rows).to(scores.device)
            out[idx] = torch.where(dense[j], scores[idx], neg)
    r, t = _pairs(trie, np.flatnonzero(sparse), lo, n, fallback)
    r, t = torch.from_numpy(r).to(scores.device), torch.from_numpy(t).to(scores.device)
    out[r, t] = scores[r, t]
    return out


def _check_width(trie: Trie, lo: np.ndarray, n: np.ndarray, width: int) -> None:
    if trie.vocab_size > width and n.any():
        top = int(trie.tokens[lo[n > 0] + n[n > 0] - 1].max())  # children are sorted
        if top >= width:
            raise ValueError(f"trie token {top} outside the model's {width} logits")


def _pairs(
    trie: Trie, rows: np.ndarray, lo: np.ndarray, n: np.ndarray, fallback: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """(row, token) of every allowed entry of `rows`; rows without children get `fallback`."""
    lo, n = lo[rows], n[rows]
    total = int(n.sum())
    first = np.repeat(lo - (np.cumsum(n) - n), n)  # edge = node's first edge + rank in slice
    toks = trie.tokens[first + np.arange(total)].astype(np.int64)
    r = np.repeat(rows, n)
    stuck = rows[n == 0]
    if stuck.size and fallback:
        r = np.concatenate([r, np.repeat(stuck, len(fallback))])
        toks = np.concatenate([toks, np.tile(np.asarray(fallback, np.int64), len(stuck))])
    return r, toks


def _dense_rows(
    trie: Trie, nodes: np.ndarray, width: int, fallback: list[int], device
) -> torch.Tensor:
    """(len(nodes) × width) boolean rows: each node's children (fallback for none/-1)."""
    lo, n = trie.fanout(nodes)
    dense = torch.zeros(len(nodes), width, dtype=torch.bool, device=device)
    r, t = _pairs(trie, np.arange(len(nodes)), lo, n, fallback)
    dense[torch.from_numpy(r).to(device), torch.from_numpy(t).to(device)] = True
    return dense


class TrieLogitsProcessor(LogitsProcessor):
    """Sets the scores of tokens that leave the trie to -inf, for all rows in one pass.

    `prompt_length`: number of input_ids columns before generation starts (the padded prompt
    width for decoder-only models, 1 for encoder-decoders). `start_nodes`: per batch item start
    node (a candidate-set forest, see `vlmdata.trie.forest`), repeated over each item's beams.
    """

    def __init__(
        self,
        trie: Trie,
        prompt_length: int,
        *,
        pad_id: int | None = None,
        start_nodes: np.ndarray | None = None,
    ) -> None:
        if trie.eos_id is None and pad_id is None:
            raise ValueError("the trie has no eos id: pass pad_id so finished rows have a token")
        self.trie = trie
        self.prompt_length = prompt_length
        self.fallback = [t for t in dict.fromkeys((trie.eos_id, pad_id)) if t is not None]
        self.start_nodes = None if start_nodes is None else np.asarray(start_nodes, np.int64)

    def _starts(self, rows: int) -> np.ndarray | None:
        if self.start_nodes is None:
            return None
        per_item = rows // len(self.start_nodes)
        if per_item * len(self.start_nodes) != rows:
            raise ValueError(f"{rows} rows for {len(self.start_nodes)} candidate sets")
        return np.repeat(self.start_nodes, per_item)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.Tensor:
        generated = input_ids[:, self.prompt_length :].cpu().numpy()
        return mask_scores(
            self.trie,
            generated,
            scores,
            fallback=self.fallback,
            start_nodes=self._starts(len(generated)),
        )
