"""Recall@K for retrieval, from a score matrix (embeddings) or from ranked lists (generation).

Ties are broken pessimistically: a positive item's rank is 1 + the number of NEGATIVE items
scoring at least as high. A model that gives every item the same score therefore gets the
recall of the worst ordering, not a perfect one (torch.topk would pick an arbitrary winner and
make a degenerate model look good). Other positives never push a positive down: with five
captions per image, image->text is a hit when any of them is in the top K.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

DEFAULT_KS = (1, 5, 10)


def positive_ranks(scores: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Best rank (1-based) of any positive per query row; 0 for a query without positives.

    scores: (Q, N) similarity, higher is better. positives: (Q, N) bool.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    if scores.shape != positives.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and positives {positives.shape} must be (Q, N)")
    ranks = np.zeros(len(scores), dtype=np.int64)
    for q in range(len(scores)):
        pos = scores[q, positives[q]]
        if pos.size == 0:
            continue
        neg = np.sort(scores[q, ~positives[q]])
        # negatives scoring >= the best positive (ties count against us)
        ahead = neg.size - np.searchsorted(neg, pos.max(), side="left")
        ranks[q] = 1 + ahead
    return ranks


def recall_from_ranks(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS) -> dict[int, float]:
    """Fraction of queries whose rank is in 1..K (rank 0 = never found)."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {k: 0.0 for k in ks}
    found = ranks > 0
    return {k: float(np.mean(found & (ranks <= k))) for k in ks}


def recall_at_k(
    scores: np.ndarray, positives: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[int, float]:
    """Recall@K over a (Q, N) score matrix with a (Q, N) boolean relevance matrix."""
    return recall_from_ranks(positive_ranks(scores, positives), ks)


def ranked_list_ranks(
    ranked: Sequence[Sequence[Hashable | None]], targets: Sequence[Hashable]
) -> np.ndarray:
    """Rank of each query's target in its ranked prediction list (0 if absent).

    Used for generative retrieval: beams decode to identifiers, so the list may contain
    duplicates (two beams, one identifier) or None (a beam that left the trie); those never
    take a rank position, so K counts distinct valid predictions.
    """
    if len(ranked) != len(targets):
        raise ValueError(f"{len(ranked)} ranked lists for {len(targets)} targets")
    ranks = np.zeros(len(targets), dtype=np.int64)
    for q, (preds, target) in enumerate(zip(ranked, targets, strict=True)):
        seen: set = set()
        for p in preds:
            if p is None or p in seen:
                continue
            seen.add(p)
            if p == target:
                ranks[q] = len(seen)
                break
    return ranks


def recall_at_k_ranked(
    ranked: Sequence[Sequence[Hashable | None]],
    targets: Sequence[Hashable],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[int, float]:
    """Recall@K when each query comes with its own ranked predictions (beam search output)."""
    return recall_from_ranks(ranked_list_ranks(ranked, targets), ks)
