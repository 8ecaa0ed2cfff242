"""`build-ids --scheme structured --kmeans grace` equals GRACE's `structured_id.py`, id for id.

The oracle is a port of GRACE's clustering (liyongqi67/GRACE, data_process/structured_id.py)
written from its definition: a global per-image list of cluster numbers; the top level
`mini_kmeans.fit_predict(X)` on the float32 embedding matrix; `classify_recursion` on each
cluster 0..k-1 (members in index order), which for at most c images appends each image's
position (nothing for a group of one) and otherwise copies the rows into a float64
`np.zeros((n, v_dim))` and runs `mini_kmeans` (n >= 1e3) or `kmeans`, appends the label and
recurses per cluster; identifiers are "-".join(f"{level}_{n}"). Both sides run on one thread
(OpenMP reduction order is not part of GRACE's definition).
"""

from __future__ import annotations

import warnings

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from sklearn.cluster import KMeans, MiniBatchKMeans
from threadpoolctl import threadpool_limits

from cli.vlmdata import main
from vlmdata.core.manifest import ManifestSink
from vlmdata.ids.structured import structured_ids


def grace_structured_ids(x: np.ndarray, k: int, c: int, seed: int = 7) -> list[str]:
    """structured_id.py's clustering, ported (recursion kept, as GRACE writes it)."""
    kmeans = KMeans(
        n_clusters=k, max_iter=300, n_init=100, init="k-means++", random_state=seed, tol=1e-7
    )
    mini_kmeans = MiniBatchKMeans(
        n_clusters=k, max_iter=300, n_init=100, init="k-means++", random_state=3,
        batch_size=1000, reassignment_ratio=0.01, max_no_improvement=20, tol=1e-7,
    )  # fmt: skip
    new_id_list: list[list[int]] = []

    def classify_recursion(pos: np.ndarray) -> None:
        if pos.shape[0] <= c:
            if pos.shape[0] == 1:
                return
            for idx, p in enumerate(pos):
                new_id_list[p].append(idx)
            return
        temp = np.zeros((pos.shape[0], x.shape[1]))
        for idx, p in enumerate(pos):
            temp[idx, :] = x[p]
        pred = mini_kmeans.fit_predict(temp) if pos.shape[0] >= 1e3 else kmeans.fit_predict(temp)
        for i in range(k):
            members = []
            for j, cls in enumerate(pred):
                if cls == i:
                    members.append(pos[j])
                    new_id_list[pos[j]].append(i)
            classify_recursion(np.array(members, dtype=np.int64))

    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")
        pred = mini_kmeans.fit_predict(x)
        for cls in pred:
            new_id_list.append([cls])
        for i in range(k):
            classify_recursion(np.array([j for j, cls in enumerate(pred) if cls == i], np.int64))
    return ["-".join(f"{lvl}_{n}" for lvl, n in enumerate(ids)) for ids in new_id_list]


def manifest(root, n: int):
    with ManifestSink(root) as sink:
        for i in range(n):
            sink.keep({"key": f"im{i:05d}", "source": "t", "split": "train",
                       "path": f"{i}.jpg", "texts": [f"caption {i}"]})  # fmt: skip
    return root


def cli_ids(tmp_path, emb: np.ndarray, k: int, c: int, *extra: str) -> list[str]:
    out = manifest(tmp_path / "out", len(emb))
    np.save(tmp_path / "emb.npy", emb)
    args = ["build-ids", out, "--scheme", "structured", "--embeddings", tmp_path / "emb.npy",
            "--k", k, "--leaf-size", c, "-o", tmp_path / "ids.parquet", *extra]  # fmt: skip
    r = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return pq.read_table(tmp_path / "ids.parquet").column("identifier").to_pylist()


def test_random_rows_equal_grace_id_for_id(tmp_path):
    emb = np.random.default_rng(11).normal(size=(2000, 16)).astype(np.float32)
    ids = cli_ids(tmp_path, emb, 10, 30, "--kmeans", "grace")
    assert ids == grace_structured_ids(emb, 10, 30)
    assert len(set(ids)) == 2000


def test_clustered_rows_equal_grace_id_for_id(tmp_path):
    # three blobs of 1400, 1000 and 600 images: level-1 groups of 1000 or more take GRACE's
    # MiniBatchKMeans branch, smaller ones its KMeans branch; ids reach depth 5 and more
    rng = np.random.default_rng(5)
    labels = np.repeat(np.arange(3), [1400, 1000, 600])
    rng.shuffle(labels)
    emb = (10 * rng.normal(size=(3, 16))[labels] + rng.normal(size=(3000, 16))).astype(np.float32)
    ids = cli_ids(tmp_path, emb, 3, 30)  # --kmeans grace is the default
    expected = grace_structured_ids(emb, 3, 30)
    assert ids == expected
    tops = np.unique([i.split("-")[0] for i in ids], return_counts=True)[1]
    assert sorted(tops) == [600, 1000, 1400]  # the blobs, so both branches ran
    assert max(len(i.split("-")) for i in ids) >= 5


def test_grace_seed_is_grace_kmeans_random_state():
    emb = np.random.default_rng(2).normal(size=(300, 8)).astype(np.float32)
    assert structured_ids(emb, 5, 20, seed=11) == grace_structured_ids(emb, 5, 20, seed=11)


def test_where_grace_cannot_finish_the_project_still_does():
    # fewer images than k: GRACE's MiniBatchKMeans raises; one leaf in index order instead
    emb = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
    with pytest.raises(ValueError):
        grace_structured_ids(emb, 10, 30)
    assert structured_ids(emb, 10, 30) == [f"0_{i}" for i in range(7)]
    # a group larger than the leaf size but smaller than k (GRACE's KMeans raises): one leaf
    # too. Nine lone points and a blob of five, far apart; k=10, c=3
    centres = 100.0 * np.arange(10)[:, None] * np.ones((1, 4))
    blob = centres[9] + 0.01 * np.arange(5)[:, None]
    emb = np.concatenate([centres[:9], blob]).astype(np.float32)
    with pytest.raises(ValueError):
        grace_structured_ids(emb, 10, 3)
    ids = structured_ids(emb, 10, 3)
    assert len(set(ids)) == 14
    top = ids[9].split("-")[0]
    assert ids[9:] == [f"{top}-1_{j}" for j in range(5)]
    # identical embeddings: GRACE recurses for ever; k equal chunks in index order instead
    ids = structured_ids(np.ones((50, 4), np.float32), 3, 10)
    assert ids[:3] == ["0_0-1_0-2_0", "0_0-1_0-2_1", "0_0-1_0-2_2"]
    assert len(set(ids)) == 50 and ids[-1].startswith("0_2-")


def test_fast_kmeans_is_still_available_and_differs(tmp_path):
    emb = np.random.default_rng(3).normal(size=(200, 8)).astype(np.float32)
    fast = cli_ids(tmp_path, emb, 4, 7, "--kmeans", "fast", "--seed", "1")
    assert fast == structured_ids(emb, 4, 7, seed=1, kmeans="fast")
    assert fast != structured_ids(emb, 4, 7)
