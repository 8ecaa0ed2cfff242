"""Caption metrics (pycocoevalcap) against hand-computed BLEU and CIDEr-D on tiny corpora."""

from __future__ import annotations

import shutil

import pytest

from vlmdata.core.errors import DataError
from vlmtrain.eval.metrics.captioning import caption_scores, ptb_tokenize

NO_JAVA = shutil.which("java") is None


def test_bleu4_by_hand():
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty
    res = caption_scores(
        {"img": "the cat sat on the mat"},
        {"img": ["the cat sat on a mat"]},
        metrics=["BLEU-1", "BLEU-4"],
        tokenize=False,
    )
    assert res["BLEU-1"] == pytest.approx(5 / 6, abs=1e-6)
    assert res["BLEU-4"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25, abs=1e-6)


def test_bleu_brevity_penalty_by_hand():
    # 3-word candidate, 6-word reference: every n-gram matches; BP = exp(1 - 6/3)
    import math

    res = caption_scores({"i": "the cat sat"}, {"i": ["the cat sat on a mat"]}, ["BLEU-1"], False)
    assert res["BLEU-1"] == pytest.approx(math.exp(-1), abs=1e-6)


def test_cider_d_by_hand():
    # two images, one reference each: idf of an n-gram found in one of the two = log 2, of one
    # found in both = 0. Identical 2-word caption: cosine 1 for n=1,2, 0 for n=3,4 (no such
    # n-grams) -> 10 * (1 + 1 + 0 + 0) / 4 = 5. "x b" vs "x a": the only n-grams with weight
    # ("b", "x b") are absent from the reference -> 0. Corpus mean (0 + 5) / 2 = 2.5.
    refs = {"1": ["x a"], "2": ["x b"]}
    assert caption_scores({"1": "x b", "2": "x b"}, refs, ["CIDEr-D"], False) == {
        "CIDEr-D": pytest.approx(2.5)
    }
    assert caption_scores({"1": "x a", "2": "x b"}, refs, ["CIDEr-D"], False)[
        "CIDEr-D"
    ] == pytest.approx(5.0)
    # three-word identical captions cover n = 1, 2, 3 -> 10 * 3/4
    refs3 = {"1": ["a b c"], "2": ["d e f"]}
    assert caption_scores({"1": "a b c", "2": "d e f"}, refs3, ["CIDEr-D"], False)[
        "CIDEr-D"
    ] == pytest.approx(7.5)


def test_empty_prediction_scores_zero_not_crash():
    res = caption_scores(
        {"1": "", "2": "d e f"}, {"1": ["a b c"], "2": ["d e f"]}, ["ROUGE-L", "CIDEr-D"], False
    )
    assert res["ROUGE-L"] == pytest.approx(0.5)  # (0 + 1) / 2
    assert res["CIDEr-D"] == pytest.approx(3.75)  # (0 + 7.5) / 2


def test_key_mismatch_and_unknown_metric_are_errors():
    with pytest.raises(DataError, match="1 images without a prediction"):
        caption_scores({"1": "a"}, {"1": ["a"], "2": ["b"]}, ["BLEU-4"], False)
    with pytest.raises(ValueError, match="unknown caption metrics"):
        caption_scores({"1": "a"}, {"1": ["a"]}, ["SPICE"], False)


def test_missing_java_gives_clear_error(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="need Java"):
        caption_scores({"1": "a"}, {"1": ["a"]}, ["BLEU-4"])


@pytest.mark.skipif(NO_JAVA, reason="java not installed")
def test_ptb_tokenizer_lowercases_strips_punctuation_keeps_unicode_and_empties():
    out = ptb_tokenize({"a": ["A Dog, running!", ""], "b": ["Café au lait."]})
    assert out == {"a": ["a dog running", ""], "b": ["café au lait"]}


@pytest.mark.slow
@pytest.mark.skipif(NO_JAVA, reason="java not installed")
def test_identity_scores_perfect_with_full_pipeline():
    refs = {"a": ["A dog runs on the grass.", "a dog running"], "b": ["Two cats sleep on a bed."]}
    preds = {"a": "a dog runs on the grass", "b": "two cats sleep on a bed"}
    res = caption_scores(preds, refs)  # PTB tokenizer + METEOR on the JVM
    assert res["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert res["METEOR"] == pytest.approx(1.0, abs=1e-6)
    assert res["ROUGE-L"] == pytest.approx(1.0)
    assert res["CIDEr-D"] > 0


@pytest.mark.skipif(NO_JAVA, reason="java not installed")
@pytest.mark.parametrize("brk", ["\r", "\r\n", "\x0b", "\x0c", "\u2028", "\u2029"])
def test_caption_with_a_line_break_stays_on_its_own_image(brk):
    # pycocoevalcap alone gives b: ['on a mat'] here: its output lines shift by one per break
    out = ptb_tokenize({"a": [f"a dog{brk}on a mat"], "b": ["a cat"], "c": ["x y"]})
    assert out == {"a": ["a dog on a mat"], "b": ["a cat"], "c": ["x y"]}


@pytest.mark.skipif(NO_JAVA, reason="java not installed")
def test_caption_with_carriage_return_is_scored_on_its_own_image():
    refs = {"a": ["a dog on a mat"], "b": ["a cat on a sofa"], "c": ["two birds in a tree"]}
    preds = {"a": "a dog\ron a mat", "b": "a cat on a sofa", "c": "two birds in a tree"}
    clean = {k: v.replace("\r", " ") for k, v in preds.items()}
    # every prediction equals its reference once tokenised: BLEU-1 1.0 (a misaligned corpus
    # would pair "on a mat" with image b and score far lower)
    assert caption_scores(preds, refs, ["BLEU-1", "CIDEr-D"]) == caption_scores(
        clean, refs, ["BLEU-1", "CIDEr-D"]
    )
    assert caption_scores(preds, refs, ["BLEU-1"])["BLEU-1"] == pytest.approx(1.0, abs=1e-6)
