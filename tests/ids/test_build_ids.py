"""build-ids: each scheme's identifiers, metadata, reproducibility and errors."""

from __future__ import annotations

import random
import re

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.ids.conftest import N_IMAGES, N_TEST, captions
from vlmdata.core import layout
from vlmdata.core.errors import DataError
from vlmdata.core.tokenizer import load_tokenizer
from vlmdata.ids.build import build_ids, read_ids
from vlmdata.ids.structured import structured_ids


def test_numeric_and_string_follow_manifest_order(manifest_dir, tmp_path):
    build_ids(manifest_dir, tmp_path / "n.parquet", scheme="numeric")
    build_ids(manifest_dir, tmp_path / "s.parquet", scheme="string")
    n, meta = read_ids(tmp_path / "n.parquet")
    s, _ = read_ids(tmp_path / "s.parquet")
    assert n.column("key").to_pylist() == [f"img_{i:03d}" for i in range(N_IMAGES)]
    assert n.column("identifier").to_pylist()[:2] + n.column("identifier").to_pylist()[-1:] == [
        "0",
        "1",
        "3 9",
    ]
    assert s.column("identifier").to_pylist()[-1] == "39"
    assert n.column("split").to_pylist().count("test") == N_TEST
    assert meta["scheme"] == "numeric" and meta["seed"] is None and meta["tokenizer"] == ""
    assert n.column("tokens").null_count == N_IMAGES


def test_seed_shuffles_positions_and_reruns_are_byte_identical(manifest_dir, tokdir_tmp):
    tok_dir, tmp_path = tokdir_tmp
    a, b, c = (tmp_path / f"{x}.parquet" for x in "abc")
    build_ids(manifest_dir, a, scheme="numeric", seed=3, tokenizer=tok_dir)
    build_ids(manifest_dir, b, scheme="numeric", seed=3, tokenizer=tok_dir)
    build_ids(manifest_dir, c, scheme="numeric", seed=4, tokenizer=tok_dir)
    assert a.read_bytes() == b.read_bytes()
    ta, meta = read_ids(a)
    tc, _ = read_ids(c)
    ids = ta.column("identifier").to_pylist()
    assert sorted(ids, key=lambda x: int(x.replace(" ", ""))) == [
        " ".join(str(i)) for i in range(N_IMAGES)
    ]
    assert ids != [" ".join(str(i)) for i in range(N_IMAGES)]
    assert ids != tc.column("identifier").to_pylist()
    assert meta["seed"] == 3 and meta["tokenizer"] == str(tok_dir)
    tok = load_tokenizer(tok_dir)
    for ident, toks in zip(ids, ta.column("tokens").to_pylist(), strict=True):
        assert toks == tok(ident, add_special_tokens=False)["input_ids"]
    assert pq.read_schema(a).field("tokens").type.value_type == "int32"


@pytest.fixture
def tokdir_tmp(tok_dir, tmp_path):
    return tok_dir, tmp_path


def test_semantic_uses_captions_for_train_and_pseudo_queries_for_test(
    manifest_dir, pseudo_queries, tmp_path
):
    stats = build_ids(
        manifest_dir, tmp_path / "sem.parquet", scheme="semantic", pseudo_queries=pseudo_queries
    )
    t, meta = read_ids(tmp_path / "sem.parquet")
    many = t.column("identifiers").to_pylist()
    assert many[0] == captions(0)
    assert many[35] == ["query 35 about red", "star picture 35"]
    assert many[30][-1] == many[31][-1] == "a shared query"
    # the training identifier: one text per image, GRACE's `random.choice`, seeded (0), drawn
    # in row order
    rng = random.Random(0)
    assert t.column("identifier").to_pylist() == [rng.choice(texts) for texts in many]
    assert meta["params"]["choice_seed"] == 0
    # "a shared query" (images 30, 31), and "one {shape} that is {colour}" repeats every 20
    # images: train images i and i + 20 for i < 10 share it (10 texts, 20 images)
    assert stats["collisions"] == {"texts": 11, "images": 22}
    assert meta["stats"]["collisions"] == stats["collisions"]


def test_semantic_without_pseudo_queries_is_refused_for_test_images(manifest_dir, tmp_path):
    with pytest.raises(DataError, match=r"row 30 \(key 'img_030', split 'test'\)"):
        build_ids(manifest_dir, tmp_path / "x.parquet", scheme="semantic")
    assert not (tmp_path / "x.parquet").exists()


def test_structured_ids_shape_and_uniqueness():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(200, 6)).astype(np.float32)
    ids = structured_ids(emb, k=4, leaf_size=7, seed=1)
    assert len(set(ids)) == 200
    assert ids == structured_ids(emb, k=4, leaf_size=7, seed=1)
    for ident in ids:
        pieces = ident.split("-")
        assert [int(p.split("_")[0]) for p in pieces] == list(range(len(pieces)))
        assert all(re.fullmatch(r"\d+_\d+", p) for p in pieces)
        assert all(int(p.split("_")[1]) < 4 for p in pieces[:-1])
        assert int(pieces[-1].split("_")[1]) < 7  # a position (< leaf) or a cluster (< k)
    assert min(len(i.split("-")) for i in ids) >= 2  # 200 > 7: clustered at least once


def test_structured_single_image_cluster_ends_with_its_cluster_as_in_grace():
    # 4 points near the origin and one far away, k=2, leaf 2: the far one is a cluster of one
    # (GRACE: "0_c", no index piece); the four are clustered again (pairs -> positions)
    emb = np.array([[0, 0], [0, 0.1], [0.1, 0], [0.1, 0.1], [100, 100]], dtype=np.float32)
    ids = structured_ids(emb, k=2, leaf_size=2, seed=0)
    assert re.fullmatch(r"0_\d", ids[4])
    assert all(re.fullmatch(r"0_\d-1_\d-2_[01]", i) for i in ids[:4]), ids
    assert len(set(ids)) == 5
    assert structured_ids(emb[:1], k=2, leaf_size=2) == ["0_0"]  # a lone image at the root


def test_structured_survives_identical_embeddings():
    ids = structured_ids(np.ones((50, 4), np.float32), k=3, leaf_size=10, seed=0)
    assert len(set(ids)) == 50


def test_structured_add_tokens_makes_each_piece_one_token(
    manifest_dir, tok_dir, embeddings, tmp_path
):
    stats = build_ids(
        manifest_dir,
        tmp_path / "st.parquet",
        scheme="structured",
        embeddings=embeddings,
        k=3,
        leaf_size=4,
        seed=0,
        tokenizer=tok_dir,
        add_tokens=tmp_path / "tok2",
    )
    t, meta = read_ids(tmp_path / "st.parquet")
    tok = load_tokenizer(tmp_path / "tok2")
    assert meta["tokenizer"] == str(tmp_path / "tok2")
    assert meta["params"] == {
        "add_tokens": True,
        "embeddings": "emb.npy",
        "k": 3,
        "leaf_size": 4,
        "kmeans": "grace",
    }
    pieces = {p for i in t.column("identifier").to_pylist() for p in i.split("-")}
    assert stats["added_tokens"] == len(pieces)
    dash = tok("-", add_special_tokens=False)["input_ids"]
    pairs = zip(t.column("identifier").to_pylist(), t.column("tokens").to_pylist(), strict=True)
    for ident, toks in pairs:
        want = []
        for j, p in enumerate(ident.split("-")):
            want += (dash if j else []) + [tok.convert_tokens_to_ids(p)]
        assert toks == want
    # clusters follow the 4 embedding centres: images i and i + 4 share their first piece
    first = [i.split("-")[0] for i in t.column("identifier").to_pylist()]
    assert all(first[i] == first[i + 4] for i in range(N_IMAGES - 4))


def test_atomic_ids_are_single_new_tokens(manifest_dir, tok_dir, tmp_path):
    build_ids(
        manifest_dir,
        tmp_path / "a.parquet",
        scheme="atomic",
        tokenizer=tok_dir,
        add_tokens=tmp_path / "tok3",
    )
    t, _ = read_ids(tmp_path / "a.parquet")
    tok = load_tokenizer(tmp_path / "tok3")
    assert len(tok) == len(load_tokenizer(tok_dir)) + N_IMAGES
    pairs = zip(t.column("identifier").to_pylist(), t.column("tokens").to_pylist(), strict=True)
    for ident, toks in pairs:
        assert toks == [tok.convert_tokens_to_ids(ident)]
    with pytest.raises(DataError, match="--add-tokens"):
        build_ids(manifest_dir, tmp_path / "b.parquet", scheme="atomic", tokenizer=tok_dir)


def test_bad_inputs_name_the_problem(manifest_dir, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((3, 2), np.float32))
    with pytest.raises(DataError, match=r"shape \(3, 2\), expected \(40, dim\)"):
        build_ids(manifest_dir, tmp_path / "x.parquet", scheme="structured", embeddings=bad)
    with pytest.raises(DataError, match="needs --embeddings"):
        build_ids(manifest_dir, tmp_path / "x.parquet", scheme="structured")
    with pytest.raises(FileNotFoundError, match=f"no {layout.INDEX} or {layout.MANIFEST}"):
        build_ids(tmp_path, tmp_path / "x.parquet", scheme="numeric")


@pytest.mark.parametrize(
    "k, leaf, match",
    [(1, 30, "k must be at least 2"), (0, 30, "k must be at least 2"),
     (30, 0, "leaf size must be at least 1")],
)  # fmt: skip
def test_structured_parameters_are_checked(manifest_dir, embeddings, tmp_path, k, leaf, match):
    with pytest.raises(DataError, match=match):
        build_ids(manifest_dir, tmp_path / "x.parquet", scheme="structured",
                  embeddings=embeddings, k=k, leaf_size=leaf)  # fmt: skip


def test_nan_embeddings_name_the_row(manifest_dir, tmp_path):
    emb = np.ones((40, 3), np.float32)
    emb[7, 1] = np.nan
    emb[9, 0] = np.inf
    np.save(tmp_path / "nan.npy", emb)
    with pytest.raises(DataError, match=r"nan.npy: 2 rows hold NaN or infinity \(first: row 7"):
        build_ids(manifest_dir, tmp_path / "x.parquet", scheme="structured",
                  embeddings=tmp_path / "nan.npy")  # fmt: skip


def test_semantic_and_structured_reruns_are_byte_identical(
    manifest_dir, pseudo_queries, embeddings, tok_dir, tmp_path
):
    for scheme, extra in [
        ("semantic", {"pseudo_queries": pseudo_queries}),
        ("structured", {"embeddings": embeddings, "k": 3, "leaf_size": 4, "seed": 5}),
    ]:
        a, b = tmp_path / f"{scheme}-a.parquet", tmp_path / f"{scheme}-b.parquet"
        build_ids(manifest_dir, a, scheme=scheme, tokenizer=tok_dir, **extra)
        build_ids(manifest_dir, b, scheme=scheme, tokenizer=tok_dir, **extra)
        assert a.read_bytes() == b.read_bytes(), scheme


def test_batched_tokenization_equals_the_shared_rule(tok_dir):
    from vlmdata.ids.tokens import identifier_sequence, identifier_sequences

    tok = load_tokenizer(tok_dir)
    names = ["a red circle", "", "query 7", "3 9", "image_12"]
    want = [identifier_sequence(tok, s, prefix="id ") for s in names]
    for batch in (1, 2, 10):
        got = []
        for flat, lengths in identifier_sequences(tok, names, prefix="id ", batch_size=batch):
            got += [x.tolist() for x in np.split(flat, np.cumsum(lengths)[:-1])]
        assert got == want
