"""VQAv2 accuracy: official normalisation cases and hand-computed leave-one-out scores."""

from __future__ import annotations

import pytest

from vlmtrain.eval.metrics.vqa import (
    normalize_answer,
    process_punctuation,
    question_accuracy,
    vqa_accuracy,
)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Two dogs.", "2 dogs"),  # number word, trailing period
        ("the cat", "cat"),  # article
        ("An Apple", "apple"),  # article, case
        ("dont", "don't"),  # contraction restored
        ("yes!", "yes"),  # '!' not next to a space -> space, then split
        ("hello , world", "hello world"),  # ' ,' touches a space -> removed
        ("black/white", "black white"),
        ("1,000", "1000"),  # digit,digit -> every mark removed
        ("3.5", "3.5"),  # a period before a digit stays
        ("  ten\tfeet\n", "10 feet"),
        ("café", "café"),  # unicode passes through
        ("", ""),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_only_leaves_articles_and_numbers():
    # a mark touching a space is removed; one inside a word becomes a space
    assert process_punctuation("the two (red) cars") == "the two red cars"
    assert process_punctuation("red(ish)") == "red ish "


@pytest.mark.parametrize(
    "agree, expected",
    [
        (0, 0.0),
        (1, 0.3),  # 9 subsets keep the one match: 9 * 1/3 / 10
        (2, 0.6),  # 2 subsets x 1/3 + 8 subsets x 2/3, over 10
        (3, 0.9),  # 3 subsets x 2/3 + 7 subsets x 1, over 10
        (4, 1.0),
        (10, 1.0),
    ],
)
def test_leave_one_out_accuracy(agree, expected):
    humans = ["yes"] * agree + ["no"] * (10 - agree)
    assert question_accuracy("yes", humans) == pytest.approx(expected)


def test_prediction_is_normalised_but_unanimous_humans_are_not():
    assert question_accuracy("Two", ["2"] * 10) == 1.0
    # the official quirk: identical human answers skip normalisation, so "yes." never matches
    assert question_accuracy("yes.", ["yes."] * 10) == 0.0
    # disagreeing humans are punctuation-normalised: "yes." -> "yes"
    assert question_accuracy("yes", ["yes."] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert question_accuracy("", ["yes"] * 10) == 0.0


def test_vqa_accuracy_breakdown_and_missing_prediction():
    anns = [
        {"question_id": 1, "answers": [{"answer": "yes"}] * 10, "answer_type": "yes/no",
         "question_type": "is the"},
        {"question_id": 2, "answers": [{"answer": "2"}] * 2 + [{"answer": "3"}] * 8,
         "answer_type": "number", "question_type": "how many"},
        {"question_id": 3, "answers": [{"answer": "red"}] * 10, "answer_type": "other",
         "question_type": "what color"},
    ]  # fmt: skip
    res = vqa_accuracy({1: "yes", 2: "two", 3: "blue"}, anns)
    assert res["overall"] == pytest.approx((1.0 + 0.6 + 0.0) / 3)
    assert res["count"] == 3
    assert res["per_answer_type"]["number"] == (pytest.approx(0.6), 1)
    assert res["per_answer_type"]["yes/no"] == (1.0, 1)
    assert res["per_question"] == {1: 1.0, 2: pytest.approx(0.6), 3: 0.0}
    with pytest.raises(KeyError, match="question_id 3"):
        vqa_accuracy({1: "yes", 2: "2"}, anns)
