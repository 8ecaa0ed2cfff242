"""Recall@K against hand-worked rankings, ties included."""

from __future__ import annotations

import numpy as np
import pytest

from vlmtrain.eval.metrics.recall import (
    grace_counting_recall,
    positive_ranks,
    ranked_indices,
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


def test_saved_top_lists_order_ties_as_the_ranks_count_them():
    """--save-predictions writes these lists: the first positive's position is its rank."""
    scores = np.array([[0.5, 0.9, 0.9, 0.1], [0.2, 0.2, 0.2, 0.2], [0.3, 0.8, 0.8, 0.8]])
    pos = np.array([[0, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], dtype=bool)
    # by hand: row 0 the tied negative 2 before positive 1; row 1 negatives 0, 1 before the
    # positives; row 2 negative 1 ahead of the tied positives 2, 3, then negative 0
    assert ranked_indices(scores, pos, 3).tolist() == [[2, 1, 0], [0, 1, 2], [1, 2, 3]]
    assert positive_ranks(scores, pos).tolist() == [2, 3, 2]
    assert ranked_indices(scores, pos, 9).shape == (3, 4)  # never more than the items


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


def test_grace_counting_as_its_evaluate_t2id_counts():
    """Hand-worked from GRACE's evaluate_t2id (open_flamingo/eval/evaluate.py): predictions
    keyed by image_id + "#" + caption; a predicted id missing from id2image_name_dict raises and
    the query is skipped; `hits[i] += 1` for every position i whose id equals the gold, no break;
    recall@K = sum(hits[:K]) / num."""
    ranked = [
        ["b", "a", "a"],  # q0 (gold a): hits at positions 2 and 3, no break: counts twice
        ["a", "b", "c"],  # q1 (gold b): hit at position 2
        ["x", None, "c"],  # q2 (gold c): an unmappable beam: skipped, not a miss
        ["c", "d", "e"],  # q3 (gold c): hit at position 1
        ["c", "d", "e"],  # q3 again (same image, same caption): one dict entry, counted once
        ["a", "a", "b"],  # q5 (gold b): position 3; the project ranks it 2nd distinct
    ]
    targets = ["a", "b", "c", "c", "c", "b"]
    texts = ["t0", "t1", "t2", "t3", "t3", "t5"]
    recall, counted = grace_counting_recall(ranked, targets, texts, ks=(1, 2, 3))
    # hits by position: [1 (q3), 2 (q0, q1), 2 (q0, q5)] over 4 kept queries
    assert recall == {1: 0.25, 2: 0.75, 3: 1.25}
    assert counted == {"queries": 4, "skipped_unmappable": 1, "repeated_queries": 1}
    # the project's own counting of the same beams: rank among distinct images, every query
    # counted once (ranks 2, 2, 2, 1, 1, 2)
    assert recall_at_k_ranked(ranked, targets, ks=(1, 2, 3)) == {1: 2 / 6, 2: 1.0, 3: 1.0}
    # semantic ids: GRACE breaks after the first hit and maps nothing (no skipping): first hits
    # at positions 2 (q0), 2 (q1), 3 (q2), 1 (q3), 3 (q5) over 5 queries
    recall, counted = grace_counting_recall(ranked, targets, texts, ks=(1, 2, 3), semantic=True)
    assert recall == {1: 0.2, 2: 0.6, 3: 1.0}
    assert counted == {"queries": 5, "skipped_unmappable": 0, "repeated_queries": 1}
    with pytest.raises(ValueError):
        grace_counting_recall([["a"]], ["a"], [])
