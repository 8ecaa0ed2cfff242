"""Text-rich VQA metrics (the LLaVAR row): TextVQA accuracy, ANLS, containment accuracy.

- TextVQA accuracy: the VQA accuracy over the ten human answers, as TextVQA's authors compute it
  (MMF/M4C `TextVQAAccuracyEvaluator`, which LLaVA's `m4c_evaluator.py` copies): prediction and
  every answer go through the EvalAI answer processor (lower-case, drop "," and "?", "'s" ->
  " 's", then the VQA punctuation and digit/article/contraction rules, always, for both sides),
  and the score is the mean over the ten leave-one-out subsets of min(#matches / 3, 1).
- ANLS (ST-VQA, DocVQA): per question 1 - min over ground truths of the normalised Levenshtein
  distance, 0 when that is below the threshold (0.5); the mean over questions. As the official
  RRC script (DocVQA / InfographicVQA `evaluate_method`) computes it: the distance is taken
  between stripped, lower-cased, whitespace-collapsed strings, but divided by the longer of the
  two RAW lengths (`len(s.upper())`), and a similarity of exactly 0.5 is kept.
- Containment (LLaVAR, after MultimodalOCR's `VQAEval.evaluate`): a hit when some ground truth,
  VQA-normalised, occurs in the VQA-normalised generated answer as a whole word sequence
  (regex `\\b` + answer + `\\b`), for instruction-following models whose answers are sentences.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from vlmtrain.eval.metrics.vqa import (
    clean,
    leave_one_out,
    normalize_answer,
    process_digit_article,
    process_punctuation,
)

ANLS_THRESHOLD = 0.5
TEXTVQA_ANSWERS = 10


def evalai_normalize(text: str) -> str:
    """The EvalAI answer processor (MMF `EvalAIAnswerProcessor.__call__`).

    Its comma rule differs from vqaEval.py's (`(?<=\\d)(\\,)+(?=\\d)`), but commas are gone
    before it runs, so neither rule can ever fire and `process_punctuation` serves for both
    (with Python 3's Unicode `\\d`, as MMF runs it).
    """
    text = text.lower().replace(",", "").replace("?", "").replace("'s", " 's").strip()
    return process_digit_article(process_punctuation(clean(text), unicode_digits=True))


def textvqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """One TextVQA question: leave-one-out VQA accuracy over its ten processed answers."""
    if len(answers) != TEXTVQA_ANSWERS:
        raise ValueError(f"TextVQA questions have {TEXTVQA_ANSWERS} answers, got {len(answers)}")
    return leave_one_out(evalai_normalize(prediction), [evalai_normalize(a) for a in answers])


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert, delete, substitute: cost 1 each), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        cur = [i]
        for j, cb in enumerate(b, start=1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def anls(prediction: str, answers: Sequence[str], threshold: float = ANLS_THRESHOLD) -> float:
    """One question's ANLS score against its ground truths (see the module docstring)."""
    if not answers:
        raise ValueError("ANLS needs at least one ground-truth answer")
    pred = " ".join(prediction.strip().lower().split())
    distances = []
    for answer in answers:
        gt = " ".join(answer.strip().lower().split())
        length = max(len(answer.upper()), len(prediction.upper()))
        distances.append(0.0 if length == 0 else levenshtein(gt, pred) / length)
    score = 1.0 - min(distances)
    return 0.0 if score < threshold else score


def contains_answer(prediction: str, answers: Sequence[str]) -> bool:
    """Containment: some normalised ground truth occurs, word-bounded, in the normalised answer."""
    pred = normalize_answer(prediction, unicode_digits=True)
    for answer in answers:
        gt = normalize_answer(answer, unicode_digits=True)
        if re.search(r"\b" + re.escape(gt) + r"\b", pred):
            return True
    return False


METRICS = {
    "accuracy": textvqa_accuracy,
    "anls": anls,
    "containment": lambda p, a: float(contains_answer(p, a)),
}


def text_vqa_scores(predictions: dict, answers: dict, metrics: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over the questions; `predictions` and `answers` share their keys."""
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown text-VQA metrics {unknown}; choose from {sorted(METRICS)}")
    if set(predictions) != set(answers):
        raise ValueError("predictions and answers must cover the same questions")
    if not answers:
        raise ValueError("no questions to score")
    return {
        m: sum(METRICS[m](predictions[q], answers[q]) for q in answers) / len(answers)
        for m in metrics
    }
