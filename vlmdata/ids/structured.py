"""GRACE's structured identifiers: hierarchical k-means over image embeddings.

Images are clustered into k groups, each group with more than `leaf_size` images is clustered
again, and so on; an identifier lists the cluster taken at each level and ends with the image's
index inside its final cluster: pieces "{level}_{n}" joined by "-", e.g. "0_3-1_17-2_5". As in
GRACE's `structured_id.py` (`classify_recursion` returns for a group of one), an image alone in
its cluster gets no index piece: its identifier ends with that cluster ("0_3-1_17").

Two k-means choices (`kmeans`): "grace" (the default) runs GRACE's own k-means calls and
settings (`vlmdata.ids.grace_kmeans`), so the same embeddings give GRACE's identifiers; "fast"
runs MiniBatchKMeans (n_init 3, batch 1024, seed 0) at every level and makes a whole set of at
most `leaf_size` images one leaf ("0_0" … "0_{n-1}"). Both are seeded: the same embeddings and
seed give the same identifiers.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable

import numpy as np

from vlmdata.ids.grace_kmeans import equal_chunks, grace_ids

KMEANS = ("grace", "fast")
SMALL_GROUP = 20_000  # fast: below this, one thread (start-up dominates on small groups)


def structured_ids(
    embeddings: np.ndarray,
    k: int = 30,
    leaf_size: int = 30,
    seed: int | None = None,
    kmeans: str = "grace",
    progress: bool = False,
) -> list[str]:
    """One identifier per embedding row (see module docstring); unique by construction.

    `seed`: GRACE's `--seed` (KMeans's random_state, default 7) for "grace", the
    MiniBatchKMeans seed (default 0) for "fast". `progress`: a bar over the images given their
    identifier (k-means on 30k images: minutes)."""
    from tqdm import tqdm

    check_params(k, leaf_size)
    if kmeans not in KMEANS:
        raise ValueError(f"unknown k-means {kmeans!r}; choose from {', '.join(KMEANS)}")
    emb = np.asarray(embeddings, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1)) if emb.ndim == 2 else np.zeros(0)
    if bad.size:
        raise ValueError(f"{bad.size} embedding rows hold NaN or infinity (first: row {bad[0]})")
    with tqdm(total=len(emb), unit="img", desc="k-means", disable=not progress) as bar:
        if kmeans == "grace":
            return grace_ids(emb, k, leaf_size, seed, done=bar.update)
        return _fast_ids(emb, k, leaf_size, 0 if seed is None else seed, bar.update)


def _fast_ids(
    emb: np.ndarray, k: int, leaf_size: int, seed: int, done: Callable[[int], object]
) -> list[str]:
    """The "fast" scheme: MiniBatchKMeans at every level, a set of <= leaf_size is one leaf."""
    ids: list[str] = [""] * len(emb)
    todo: list[tuple[np.ndarray, int, str]] = [(np.arange(len(emb)), 0, "")]
    while todo:
        idx, level, prefix = todo.pop()
        if len(idx) == 1 and level > 0:  # GRACE: a cluster of one image ends the identifier
            ids[idx[0]] = prefix[:-1]
            done(1)
            continue
        if len(idx) <= leaf_size:
            for j, i in enumerate(idx):
                ids[i] = f"{prefix}{level}_{j}"
            done(len(idx))
            continue
        labels = _cluster(emb[idx], k, seed)
        for c in np.unique(labels):
            todo.append((idx[labels == c], level + 1, f"{prefix}{level}_{c}-"))
    return ids


def check_params(k: int, leaf_size: int) -> None:
    """ValueError unless k >= 2 (one cluster never splits a group: the recursion would not end)
    and leaf_size >= 1."""
    if k < 2:
        raise ValueError(f"k must be at least 2 (got {k}): one cluster never splits a group")
    if leaf_size < 1:
        raise ValueError(f"leaf size must be at least 1 (got {leaf_size})")


def _cluster(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means labels; falls back to k equal chunks when k-means cannot split (e.g. duplicates),
    so the recursion always shrinks the groups."""
    from sklearn.cluster import MiniBatchKMeans
    from threadpoolctl import threadpool_limits

    k = min(k, len(x))
    # Thread start-up dominates on the many small groups deep in the hierarchy.
    limit = threadpool_limits(1) if len(x) < SMALL_GROUP else contextlib.nullcontext()
    with warnings.catch_warnings(), limit:
        warnings.simplefilter("ignore")  # ConvergenceWarning / fewer distinct points than k
        km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=3, batch_size=1024)
        labels = km.fit_predict(x)
    if len(np.unique(labels)) < 2:
        labels = equal_chunks(len(x), k)
    return labels


def pieces(identifiers: list[str]) -> list[str]:
    """The distinct pieces ("0_3", "1_17", …) in a stable order, for --add-tokens."""
    seen = {p for s in identifiers for p in s.split("-")}
    return sorted(seen, key=lambda p: tuple(int(x) for x in p.split("_")))
