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

from vlmtrain.eval.metrics import DEFAULT_KS


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


def ranked_indices(scores: np.ndarray, positives: np.ndarray, n: int) -> np.ndarray:
    """(Q, min(n, N)): each query row's best items, highest score first.

    On a tie negatives come first (then index order), so the first positive's position in this
    list is its `positive_ranks` rank: a saved list reproduces the pessimistic Recall@K.
    """
    scores = np.asarray(scores, dtype=np.float64)
    positives = np.asarray(positives, dtype=bool)
    n = min(n, scores.shape[1])
    out = np.empty((len(scores), n), dtype=np.int64)
    for start in range(0, len(scores), 1024):  # lexsort's keys cost 3x a chunk, not the matrix
        rows = slice(start, start + 1024)
        order = np.lexsort((positives[rows], -scores[rows]), axis=-1)  # stable: index order
        out[rows] = order[:, :n]
    return out


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


def grace_counting_recall(
    ranked: Sequence[Sequence[Hashable | None]],
    targets: Sequence[Hashable],
    texts: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
    *,
    semantic: bool = False,
) -> tuple[dict[int, float], dict[str, int]]:
    """Recall@K counted as GRACE's `evaluate_t2id` counts it, for setting beside the paper.

    Where GRACE differs from `recall_at_k_ranked`: queries are keyed by (image, text), so a
    repeated caption of one image counts once; a query with a returned beam that maps to no
    image raises inside GRACE's loop and is skipped, leaving numerator and denominator
    (identifier schemes other than semantic); every returned beam equal to the gold counts at
    its own position with no break, so a gold returned twice counts twice (semantic ids break
    after the first hit); Recall@K = hits in the first K positions / queries kept.
    Returns ({K: recall}, {"queries", "skipped_unmappable", "repeated_queries"}).
    """
    if not len(ranked) == len(targets) == len(texts):
        raise ValueError(f"{len(ranked)} ranked lists, {len(targets)} targets, {len(texts)} texts")
    width = max((len(p) for p in ranked), default=0)
    hits = np.zeros(max(width, max(ks, default=0)), dtype=np.int64)
    seen: set = set()
    kept = skipped = repeated = 0
    for preds, target, text in zip(ranked, targets, texts, strict=True):
        if (target, text) in seen:
            repeated += 1
            continue
        seen.add((target, text))
        if not semantic and any(p is None for p in preds):
            skipped += 1
            continue
        kept += 1
        for i, p in enumerate(preds):
            if p == target:
                hits[i] += 1
                if semantic:
                    break
    recall = {k: float(hits[:k].sum() / kept) if kept else 0.0 for k in ks}
    return recall, {"queries": kept, "skipped_unmappable": skipped, "repeated_queries": repeated}
