"""VQAv2 accuracy: both official vqaEval.py versions on hand-worked cases that tell them apart.

Expected values are worked out by hand from the two scripts' text (GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py at 458a8b2 = "2016" and a013f00 = "2021").
"""

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
    # re.UNICODE (32) passed as `count`: only the first 32 periods go
    assert process_punctuation("a." * 40) == "a" * 32 + "a." * 8


@pytest.mark.parametrize("script", ["2016", "2021"])
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
def test_leave_one_out_accuracy(script, agree, expected):
    humans = ["yes"] * agree + ["no"] * (10 - agree)
    assert question_accuracy("yes", humans, script) == pytest.approx(expected)


# (prediction, human answers, 2016 score, 2021 score), each worked by hand:
SEPARATING = [
    # The first case. 2016: unanimous raw humans "yes " are never stripped, the
    # prediction is, so nothing matches. 2021: humans stripped to "yes", all match.
    ("yes", ["yes "] * 10, 0.0, 1.0),
    # The second case. 2016: humans disagree, so punctuation only: " yes" stays " yes";
    # 2 real matches -> 2 x 1/3 + 8 x 2/3 over 10 = 0.6. 2021: stripped, 4 matches -> 1.0.
    ("yes", [" yes"] * 2 + ["yes"] * 2 + ["no"] * 6, 0.6, 1.0),
    # Unanimity rule, 2021: unanimous humans are compared with the only-stripped prediction,
    # so "Yes" != "yes". 2016 normalises the prediction always: "yes" == "yes".
    ("Yes", ["yes"] * 10, 1.0, 0.0),
    ("two", ["two"] * 10, 0.0, 1.0),  # 2016: prediction -> "2", raw humans "two"
    ("the cat", ["the cat"] * 10, 0.0, 1.0),  # 2016: article dropped from the prediction only
    # Disagreeing humans: 2016 gives them punctuation only ("two" stays, 3 x "2" match: 3
    # subsets x 2/3 + 7 x 1 = 0.9); 2021 normalises them fully (10 x "2" -> 1.0).
    ("2", ["two"] * 7 + ["2"] * 3, 0.9, 1.0),
    # Both normalise disagreeing humans' punctuation: "yes." -> "yes" (3 of 10: 0.9).
    ("yes", ["yes."] * 3 + ["no"] * 7, 0.9, 0.9),
    # Unanimous "yes." humans: 2016 keeps them raw, the prediction loses its period; 2021
    # compares "yes." with "yes." (no normalisation on either side).
    ("yes.", ["yes."] * 10, 0.0, 1.0),
    ("", ["yes"] * 10, 0.0, 0.0),
    # Tabs and newlines in humans: 2021 turns them into spaces and strips; 2016 leaves raw.
    ("red", ["red\n"] * 10, 0.0, 1.0),
]


@pytest.mark.parametrize("pred, humans, v2016, v2021", SEPARATING)
def test_the_two_script_versions(pred, humans, v2016, v2021):
    assert question_accuracy(pred, humans, "2016") == pytest.approx(v2016)
    assert question_accuracy(pred, humans, "2021") == pytest.approx(v2021)


def test_default_is_the_current_script():
    assert question_accuracy("yes", ["yes "] * 10) == 1.0
    with pytest.raises(ValueError, match="unknown VQA script"):
        question_accuracy("yes", ["yes"], "2017")


def _answers(*texts):
    """Answer records as the published annotations hold them (answer_id 1..10)."""
    return [{"answer": t, "answer_confidence": "yes", "answer_id": i}
            for i, t in enumerate(texts, start=1)]  # fmt: skip


ANNS = [
    {"question_id": 1, "answers": _answers(*["yes"] * 10), "answer_type": "yes/no",
     "question_type": "is the"},
    {"question_id": 2, "answers": _answers(*["2"] * 2, *["3"] * 8), "answer_type": "number",
     "question_type": "how many"},
    {"question_id": 3, "answers": _answers(*["red"] * 10), "answer_type": "other",
     "question_type": "what color"},
]  # fmt: skip


def test_vqa_accuracy_breakdown():
    res = vqa_accuracy({1: "yes", 2: "2", 3: "blue"}, ANNS)
    assert res["overall"] == pytest.approx((1.0 + 0.6 + 0.0) / 3)
    assert res["count"] == 3 and res["script"] == "2021"
    assert res["per_answer_type"]["number"] == (pytest.approx(0.6), 1)
    assert res["per_answer_type"]["yes/no"] == (1.0, 1)
    assert res["per_question"] == {1: 1.0, 2: pytest.approx(0.6), 3: 0.0}
    # "two" vs humans "2"/"3": 2021 normalises both sides (0.6), 2016 the prediction (0.6)
    assert vqa_accuracy({1: "yes", 2: "two", 3: "red"}, ANNS, "2016")["overall"] == (
        pytest.approx((1.0 + 0.6 + 1.0) / 3)
    )


def test_answers_must_match_annotated_questions_exactly():
    with pytest.raises(ValueError, match=r"1 annotated questions without an answer.*\[3\]"):
        vqa_accuracy({1: "yes", 2: "2"}, ANNS)
    with pytest.raises(ValueError, match=r"1 answers to questions without annotation.*\[4\]"):
        vqa_accuracy({1: "yes", 2: "2", 3: "red", 4: "no"}, ANNS)


def test_answer_records_without_distinct_ids_are_refused():
    # the scripts leave a record out by dict comparison: ten equal dicts would leave out all
    bad = [{"question_id": 9, "answers": [{"answer": "yes"}] * 10}]
    with pytest.raises(ValueError, match="distinct answer_id"):
        vqa_accuracy({9: "yes"}, bad)


def test_digits_are_ascii_as_in_the_python2_scripts():
    # Python 2's `\d` without re.UNICODE is [0-9]: a period before an Arabic-Indic digit goes
    assert process_punctuation("٣.٥") == "٣٥"
    assert process_punctuation("3.5") == "3.5"
    # the Python 3 ports (EvalAI processor, MultimodalOCR) keep it
    assert process_punctuation("٣.٥", unicode_digits=True) == "٣.٥"
