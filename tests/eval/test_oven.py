"""OVEN split accuracies and harmonic means, worked by hand."""

from __future__ import annotations

import pytest

from vlmdata.core.errors import DataError
from vlmtrain.eval.metrics.oven import harmonic_mean, oven_scores, split_accuracy


def _refs(split, n, prefix):
    return [
        {"data_id": f"{prefix}{i}", "entity_id": f"Q{i}", "data_split": split} for i in range(n)
    ]


def test_harmonic_mean_by_hand():
    assert harmonic_mean(75.0, 50.0) == pytest.approx(60.0)  # 2 / (1/75 + 1/50)
    assert harmonic_mean(0.0, 50.0) == pytest.approx(2e-12)  # zero -> 1e-12, no crash


def test_oven_scores_by_hand():
    q = _refs("query_val_seen", 4, "qs") + _refs("query_val_unseen", 2, "qu")
    e = _refs("entity_val_seen", 2, "es") + _refs("entity_val_unseen", 3, "eu")
    qp = {"qs0": "Q0", "qs1": "Q1", "qs2": "Q2", "qs3": "wrong", "qu0": "Q0", "qu1": "x"}
    ep = {"es0": "Q0", "es1": "Q1", "eu0": "Q0", "eu1": "x", "eu2": "y"}
    res = oven_scores(q, e, qp, ep)
    assert res["query_result"]["seen"]["accuracy"] == 75.0
    assert res["query_result"]["unseen"]["accuracy"] == 50.0
    assert res["entity_result"]["unseen"]["accuracy"] == 33.33  # rounded before the mean
    assert res["query_score"] == 60.0
    # 2 / (1/100 + 1/33.33) = 49.99625..., final 2 / (1/60 + 1/49.99625) = 54.5432...
    assert res["entity_score"] == 50.0
    assert res["final_score"] == 54.54


def test_missing_predictions_are_counted_not_scored():
    refs = _refs("entity_val_seen", 3, "s")
    res = split_accuracy(refs, {"s0": "Q0", "s1": "nope"})
    assert res == {"seen": {"accuracy": 50.0, "count": 2, "missing": 1}}


def test_unseen_side_must_exist():
    q = _refs("query_val_seen", 1, "a")
    with pytest.raises(DataError, match="unseen"):
        oven_scores(q, q, {"a0": "Q0"}, {"a0": "Q0"})


def test_prediction_for_an_unknown_data_id_is_refused():
    from vlmtrain.eval.tasks.oven import score_oven

    refs = _refs("query_val_seen", 2, "qs") + _refs("query_val_unseen", 1, "qu")
    preds = {"qs0": "Q0", "qs1": "Q1", "qu0": "Q0"}
    res, _rows = score_oven(refs, preds)
    assert res["query_score"] == 100.0
    with pytest.raises(DataError, match=r"1 predictions have a data_id that no reference.*zz9"):
        score_oven(refs, {**preds, "zz9": "Q0"})
