"""Recall@K against hand-worked rankings, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from vlmtrain.eval.metrics.recall import (
    positive_ranks,
    ranked_list_ranks,
    recall_at_k,
    recall_at_k_ranked,
)


def test_ranks_break_ties_pessimistically():
    scores = np.array(
        [
            [0.9, 0.1, 0.5, 0.3],  # positive 0 is best -> rank 1
            [0.5, 0.5, 0.2, 0.1],  # positive 1 ties negative 0 -> rank 2
            [0.2, 0.2, 0.2, 0.2],  # all tied: positive 3 ranks behind all 3 negatives -> 4
        ]
    )
    pos = np.zeros_like(scores, dtype=bool)
    pos[0, 0] = pos[1, 1] = pos[2, 3] = True
    assert positive_ranks(scores, pos).tolist() == [1, 2, 4]
    r = recall_at_k(scores, pos, ks=(1, 2, 3, 4))
    assert r == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: pytest.approx(2 / 3), 4: 1.0}


def test_any_positive_counts_and_other_positives_do_not_push_down():
    # image -> text: captions 0 and 1 belong to the image; caption 2 (a negative) scores highest
    scores = np.array([[0.8, 0.85, 0.9, 0.2]])
    pos = np.array([[True, True, False, False]])
    assert positive_ranks(scores, pos).tolist() == [2]
    assert recall_at_k(scores, pos, ks=(1, 2)) == {1: 0.0, 2: 1.0}


def test_query_without_positive_is_a_miss_and_empty_input_is_zero():
    scores = np.array([[0.3, 0.1], [0.5, 0.6]])
    pos = np.array([[True, False], [False, False]])
    assert positive_ranks(scores, pos).tolist() == [1, 0]
    assert recall_at_k(scores, pos, ks=(1, 2)) == {1: 0.5, 2: 0.5}
    empty = np.zeros((0, 3))
    assert recall_at_k(empty, empty.astype(bool), ks=(1,)) == {1: 0.0}


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        positive_ranks(np.zeros((2, 3)), np.zeros((3, 2), dtype=bool))


def test_ranked_lists_skip_duplicates_and_invalid_beams():
    ranked = [
        ["a", "a", None, "b"],  # duplicate and off-trie beam take no rank: b is 2nd distinct
        ["c"],  # target absent
        [],  # empty prediction
        ["é", "ü"],  # unicode identifiers compare as strings
    ]
    targets = ["b", "x", "y", "ü"]
    assert ranked_list_ranks(ranked, targets).tolist() == [2, 0, 0, 2]
    assert recall_at_k_ranked(ranked, targets, ks=(1, 2, 10)) == {1: 0.0, 2: 0.5, 10: 0.5}
    with pytest.raises(ValueError):
        ranked_list_ranks([["a"]], ["a", "b"])
