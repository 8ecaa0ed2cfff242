"""Recall@K of FROMAGe's two published retrieval protocols, scored as its scripts score them.

VIST contextual image retrieval (kohjingyu/fromage `evals/eval_vist_retrieval.py`): each story's
context embedding is scored against every candidate image; the story's earlier images get
-10000 (never retrieved); a hit at K when the story's last image is in the top K.

VisDial (`evals/eval_visdial_retrieval.py`): `scores = image_embs @ text_embs.T`, then
`scores.topk(K)` along each IMAGE's row, a hit when its own dialog is there: each of the N
images ranks the N dialog contexts, though the paper calls the task text-to-image. That figure
is `recall@K`; the direction the paper names (each dialog ranks the images) is `t2i_recall@K`.

Ties count against the model (vlmtrain.eval.metrics.recall); the scripts' `topk` breaks them
arbitrarily, which only matters for identical embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from vlmtrain.eval.metrics.recall import DEFAULT_KS, recall_at_k

SEEN_PENALTY = 10000.0  # eval_vist_retrieval.py: scores[previous image] -= 10000


def vist_recall(
    query_emb: np.ndarray,
    image_emb: np.ndarray,
    image_ids: Sequence[str],
    gold: Sequence[str],
    seen: Sequence[Sequence[str]],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[int, float]:
    """Recall@K of stories: query_emb (S, D) and image_emb (N, D) normalised; gold[s] is the
    story's last image id, seen[s] the ids of its earlier images (pushed to the bottom)."""
    ids = np.asarray(image_ids, dtype=object)
    scores = np.asarray(query_emb, np.float64) @ np.asarray(image_emb, np.float64).T
    for s, earlier in enumerate(seen):
        scores[s, np.isin(ids, list(earlier))] -= SEEN_PENALTY
    positives = ids[None, :] == np.asarray(gold, dtype=object)[:, None]
    return recall_at_k(scores, positives, ks)


def visdial_recall(
    text_emb: np.ndarray, image_emb: np.ndarray, ks: Sequence[int] = DEFAULT_KS
) -> dict[str, dict[int, float]]:
    """{'script': image rows rank the dialogs (the published script's figure), 't2i': dialog
    rows rank the images}; row i of each matrix belongs to dialog i."""
    scores = np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T
    eye = np.eye(len(scores), dtype=bool)
    return {"script": recall_at_k(scores, eye, ks), "t2i": recall_at_k(scores.T, eye, ks)}
