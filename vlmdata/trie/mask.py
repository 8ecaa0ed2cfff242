"""Masking a whole batch × beams to a trie inside `generate()`, with tensor operations.

`generate()` gives a logits processor no beam indices (beams are reordered every step), so each
call re-derives every row's trie node from the tokens generated so far: one vectorised `Trie.step`
per generated position (numpy on the host; the ids are tiny). The mask itself is built and
applied on the scores' device: rows at the same node share one dense row (at the first step every
beam sits at the root, whose children can be most of the vocabulary), other rows get their few
children scattered in. Rows that left the trie or completed a sequence get eos (and pad) allowed,
so no row is ever all -inf (transformers' own processor raises on an empty allowed list).
"""

from __future__ import annotations

import numpy as np
import torch
from transformers import LogitsProcessor

from vlmdata.trie.core import Trie

SPARSE_EDGES_PER_ROW = 64  # scatter per row below this many allowed tokens per row on average


def allowed_mask(
    trie: Trie,
    generated: np.ndarray,
    width: int,
    *,
    fallback: list[int],
    start_nodes: np.ndarray | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Boolean (rows × width) mask of the tokens each row may emit next."""
    nodes = trie.walk(generated, start_nodes)
    lo, n = trie.fanout(nodes)
    if trie.vocab_size > width and n.any():
        top = int(trie.tokens[lo[n > 0] + n[n > 0] - 1].max())  # children are sorted
        if top >= width:
            raise ValueError(f"trie token {top} outside the model's {width} logits")
    rows = len(nodes)
    if n.sum() <= SPARSE_EDGES_PER_ROW * rows:
        mask = torch.zeros(rows, width, dtype=torch.bool, device=device)
        _scatter_children(trie, mask, np.arange(rows), lo, n)
    else:  # many allowed tokens: build one row per distinct node, then gather
        uniq, inv = np.unique(nodes, return_inverse=True)
        ulo, un = trie.fanout(uniq)
        dense = torch.zeros(len(uniq), width, dtype=torch.bool, device=device)
        _scatter_children(trie, dense, np.arange(len(uniq)), ulo, un)
        mask = dense[torch.from_numpy(inv.reshape(-1)).to(device)]
    stuck = np.flatnonzero(n == 0)
    if stuck.size and fallback:
        r = torch.from_numpy(np.repeat(stuck, len(fallback))).to(device)
        c = torch.tensor(fallback * len(stuck), device=device)
        mask[r, c] = True
    return mask


def _scatter_children(
    trie: Trie, mask: torch.Tensor, rows: np.ndarray, lo: np.ndarray, n: np.ndarray
) -> None:
    """mask[row, token] = True for every child token of each row's node."""
    total = int(n.sum())
    if total == 0:
        return
    row_idx = np.repeat(rows, n)
    # edge index = node's first edge + position inside its slice
    first = np.repeat(lo - (np.cumsum(n) - n), n)
    edges = first + np.arange(total)
    toks = trie.tokens[edges].astype(np.int64)
    dev = mask.device
    mask[torch.from_numpy(row_idx).to(dev), torch.from_numpy(toks).to(dev)] = True


class TrieLogitsProcessor(LogitsProcessor):
    """Sets the scores of tokens that leave the trie to -inf, for all rows in one pass.

    `prompt_length`: number of input_ids columns before generation starts (the padded prompt
    width for decoder-only models, 1 for encoder-decoders). `start_nodes`: per batch item start
    node (a candidate-set forest, see `Trie.batch_subset`), repeated over each item's beams.
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
        mask = allowed_mask(
            self.trie,
            generated,
            scores.shape[-1],
            fallback=self.fallback,
            start_nodes=self._starts(len(generated)),
            device=scores.device,
        )
        return torch.where(mask, scores, float("-inf"))
