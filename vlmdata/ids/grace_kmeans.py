"""GRACE's structured identifiers exactly as its `data_process/structured_id.py` clusters.

GRACE's settings (liyongqi67/GRACE): the top level always runs MiniBatchKMeans (n_init 100,
max_iter 300, batch 1000, reassignment_ratio 0.01, max_no_improvement 20, tol 1e-7,
random_state 3) on the float32 embeddings; below it a group of more than `leaf_size` images is
clustered again, by the same MiniBatchKMeans when it holds 1000 images or more, else by KMeans
(n_init 100, max_iter 300, tol 1e-7, random_state = GRACE's `--seed`, default 7), both on the
group's rows as float64 (GRACE copies them into `np.zeros((n, v_dim))`). Clusters are visited
0..k-1; a group of at most `leaf_size` images numbers its images in index order, and an image
alone in its cluster gets no index piece.

Two departures, both where GRACE cannot finish: a set or group with fewer images than k (GRACE's
k-means raises) is one leaf, its images numbered in index order; a group that k-means puts in a
single cluster (identical embeddings: GRACE recurses for ever) is cut into k equal chunks in
index order. The k-means calls run on one thread, so reruns give the same ids.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

GRACE_SEED = 7  # structured_id.py's --seed default (KMeans's random_state)
MINIBATCH_SEED = 3  # fixed in structured_id.py
MINIBATCH_FROM = 1000  # groups of this many images or more use MiniBatchKMeans


def grace_ids(
    emb: np.ndarray,
    k: int,
    leaf_size: int,
    seed: int | None = None,
    done: Callable[[int], object] | None = None,
) -> list[str]:
    """One identifier per row of `emb` (float32), as GRACE's structured_id.py builds it.
    `done(n)` is called as each final group of n images is settled (a progress bar)."""
    done = done or (lambda _n: None)
    seed = GRACE_SEED if seed is None else seed
    n = len(emb)
    if n < k:  # GRACE: MiniBatchKMeans raises (n_samples < n_clusters)
        done(n)
        return [f"0_{j}" for j in range(n)]
    pieces: list[list[int]] = [[] for _ in range(n)]
    todo = [np.arange(n)]
    top = True
    while todo:
        idx = todo.pop()
        if not top and len(idx) <= leaf_size:
            if len(idx) > 1:
                for j, i in enumerate(idx):
                    pieces[i].append(j)
            done(len(idx))
            continue
        if not top and len(idx) < k:  # GRACE's KMeans raises; one leaf instead
            for j, i in enumerate(idx):
                pieces[i].append(j)
            done(len(idx))
            continue
        x = emb[idx] if top else emb[idx].astype(np.float64)
        labels = _grace_labels(x, k, seed, minibatch=top or len(idx) >= MINIBATCH_FROM)
        top = False
        groups = [idx[labels == c] for c in range(k)]
        for c, group in enumerate(groups):
            for i in group:
                pieces[i].append(c)
        todo.extend(reversed(groups))
    return ["-".join(f"{level}_{c}" for level, c in enumerate(p)) for p in pieces]


def _grace_labels(x: np.ndarray, k: int, seed: int, *, minibatch: bool) -> np.ndarray:
    """GRACE's k-means call for this group; k equal chunks if it cannot split the group."""
    from sklearn.cluster import KMeans, MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    if minibatch:
        km = MiniBatchKMeans(
            n_clusters=k, max_iter=300, n_init=100, init="k-means++",
            random_state=MINIBATCH_SEED, batch_size=1000, reassignment_ratio=0.01,
            max_no_improvement=20, tol=1e-7,
        )  # fmt: skip
    else:
        km = KMeans(
            n_clusters=k, max_iter=300, n_init=100, init="k-means++", random_state=seed, tol=1e-7
        )
    # One thread always: OpenMP sums per-thread partial sums in arrival order, so the chosen
    # init and the labels could change from run to run on another thread count.
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # fewer distinct points than k (duplicates)
        labels = km.fit_predict(x)
    if len(np.unique(labels)) < 2:
        return equal_chunks(len(x), k)
    return labels


def equal_chunks(n: int, k: int) -> np.ndarray:
    """Labels cutting n rows into min(k, n) consecutive near-equal chunks."""
    k = min(k, n)
    return np.repeat(np.arange(k), [len(c) for c in np.array_split(np.arange(n), k)])
