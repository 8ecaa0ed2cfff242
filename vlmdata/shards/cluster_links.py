"""Components of the links between image keys, partitioned (stage 5 of cluster_plan.py).

A link joins two image keys that share a record key or an image's bytes. Each linked key's
label starts as itself and, round by round, becomes the smallest label among its own and its
neighbours' (min-label propagation), until a round changes nothing: then every key of a
component has the component's smallest key as its label, and the component's partition is
that label's hash partition. Keys, links and labels live in hash-partition files; a round is
two engine calls (send each key's label to its neighbours' partitions, keep the smallest per
key); the driver counts the changes. Rounds: the largest distance from a component's smallest
key, plus one; small for duplicate links (each shared key or digest is a star). The links
come from stage 4 (`save_adjacency`), the rows' destinations go to stage 6.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from vlmdata.core.keyset import HashMap
from vlmdata.shards.cluster_files import (
    EDGE,
    IK,
    Scratch,
    load_arrays,
    save_array,
    split_by_bucket,
)

LAB = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("l_hi", "<u8"), ("l_lo", "<u8")])
DEST = np.dtype([("row", "<i8"), ("bucket", "<i8")])


def save_adjacency(scratch: Scratch, j: int, edges: np.ndarray) -> None:
    """Links found by task j in both directions, by the first key's partition."""
    both = np.concatenate([edges, _reversed(edges)])
    for p, part in enumerate(
        split_by_bucket(both, scratch.bucket_of(both["a_hi"]), scratch.buckets)
    ):
        if len(part):
            save_array(scratch.path("adj", f"b{p}", f"s{j}.npy"), part)


def _reversed(edges: np.ndarray) -> np.ndarray:
    out = np.zeros(len(edges), dtype=EDGE)
    out["a_hi"], out["a_lo"], out["b_hi"], out["b_lo"] = (
        edges["b_hi"], edges["b_lo"], edges["a_hi"], edges["a_lo"]
    )  # fmt: skip
    return out


def _labels(scratch: Scratch, p: int) -> tuple[np.ndarray, HashMap]:
    """A partition's labels (before the first change: each linked key its own) and
    key -> position in them."""
    path = scratch.path("lab", f"s{p}.npy")
    if path.exists():
        labels = np.load(path, allow_pickle=False)
    else:
        adj = load_arrays(scratch.path("adj", f"b{p}"), EDGE)
        keys = np.unique(np.stack((adj["a_hi"], adj["a_lo"]), 1), axis=0)
        labels = np.zeros(len(keys), dtype=LAB)
        labels["hi"], labels["lo"] = keys[:, 0], keys[:, 1]
        labels["l_hi"], labels["l_lo"] = keys[:, 0], keys[:, 1]
    where = HashMap()
    where.add(labels["hi"], labels["lo"], np.arange(len(labels)))
    return labels, where


def send_labels(task: tuple) -> int:
    """Round r, first half: each key's label to each neighbour, by the neighbour's partition."""
    scratch, p, r = task
    adj = load_arrays(scratch.path("adj", f"b{p}"), EDGE)
    if not len(adj):
        return 0
    labels, where = _labels(scratch, p)
    mine = labels[where.get(adj["a_hi"], adj["a_lo"])]
    msg = np.zeros(len(adj), dtype=LAB)
    msg["hi"], msg["lo"] = adj["b_hi"], adj["b_lo"]
    msg["l_hi"], msg["l_lo"] = mine["l_hi"], mine["l_lo"]
    for q, part in enumerate(split_by_bucket(msg, scratch.bucket_of(msg["hi"]), scratch.buckets)):
        if len(part):
            save_array(scratch.path("msg", f"r{r}", f"b{q}", f"s{p}.npy"), part)
    return len(msg)


def keep_smallest(task: tuple) -> int:
    """Round r, second half: each key keeps the smallest of its label and those it was sent;
    how many labels changed."""
    scratch, p, r = task
    msg = load_arrays(scratch.path("msg", f"r{r}", f"b{p}"), LAB)
    if not len(msg):
        return 0
    msg = msg[np.lexsort((msg["l_lo"], msg["l_hi"], msg["lo"], msg["hi"]))]
    first = np.ones(len(msg), dtype=bool)
    first[1:] = (msg["hi"][1:] != msg["hi"][:-1]) | (msg["lo"][1:] != msg["lo"][:-1])
    best = msg[first]
    labels, where = _labels(scratch, p)
    at = where.get(best["hi"], best["lo"])
    old = labels[at]
    smaller = (best["l_hi"] < old["l_hi"]) | (
        (best["l_hi"] == old["l_hi"]) & (best["l_lo"] < old["l_lo"])
    )
    if smaller.any():
        labels["l_hi"][at[smaller]] = best["l_hi"][smaller]
        labels["l_lo"][at[smaller]] = best["l_lo"][smaller]
        save_array(scratch.path("lab", f"s{p}.npy"), labels)
    return int(smaller.sum())


def component_buckets(scratch: Scratch, p: int, hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """The component partition of image key hashes of partition p: a linked key's is its
    label's, any other's its own."""
    labels, where = _labels(scratch, p)
    at = where.get(hi, lo)
    bucket = scratch.bucket_of(hi)
    linked = at >= 0
    bucket[linked] = scratch.bucket_of(labels["l_hi"][at[linked]])
    return bucket


def row_destinations(scratch: Scratch, p: int) -> int:
    """Each row of an image-key partition with its component partition, by slice."""
    ik = load_arrays(scratch.path("ik", f"b{p}"), IK)
    dest = np.zeros(len(ik), dtype=DEST)
    dest["row"] = ik["row"]
    dest["bucket"] = component_buckets(scratch, p, ik["hi"], ik["lo"])
    slices = ik["row"] // scratch.slice_rows
    for i in np.unique(slices).tolist():
        save_array(scratch.path("dest", f"s{i}", f"s{p}.npy"), dest[slices == i])
    return len(dest)


def find_components(engine: Any, scratch: Scratch) -> int:
    """Stage 5 on the engine: rounds until one changes no label; how many it took."""
    parts = range(scratch.buckets)
    rounds = 0
    while True:
        rounds += 1
        list(engine.map(send_labels, [(scratch, p, rounds) for p in parts]))
        if not sum(engine.map(keep_smallest, [(scratch, p, rounds) for p in parts])):
            return rounds
