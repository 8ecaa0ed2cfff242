"""VQAv2 accuracy exactly as the official evaluation (GT-Vision-Lab/VQA, vqaEval.py) computes it.

Two versions of the official script are in use and published numbers come from both, so both are
reproduced, quirks included (`--vqa-script`):

- "2021" (commit a013f00, "Fixed processing answers bug", the default): the human answers and
  the prediction get newlines/tabs turned into spaces and are stripped; only when the humans
  disagree are humans AND prediction fully normalised (punctuation, then digits, articles and
  contractions). Unanimous humans are compared with the merely stripped prediction.
- "2016" (commit 458a8b2): the prediction is always fully normalised; the human answers are
  compared raw (not even stripped) for unanimity, and get punctuation normalisation only, and
  only when they disagree.

Shared by both: the period-stripping regex has a typo'd lookbehind (`(?!<=\\d)`) and is applied
with `count=re.UNICODE` (= 32), so at most 32 periods are removed; both scripts run on Python 2,
where `\\d` in a pattern compiled without re.UNICODE is [0-9] only (re.ASCII here; the Python 3
ports of these rules, MMF's EvalAI processor and MultimodalOCR's, match any Unicode digit).
Accuracy per question = mean over the leave-one-out subsets of min(#matches / 3, 1), where "the
others" are the answer records that differ from the left-out one (dict comparison: with the
published annotations, whose answer_ids are distinct, that is every other position). Per
answer-type (and question-type) averages are means of the per-question accuracies, as in both
scripts.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

VQA_SCRIPTS = {
    "2021": "GT-Vision-Lab/VQA vqaEval.py @ a013f00 (2021, current)",
    "2016": "GT-Vision-Lab/VQA vqaEval.py @ 458a8b2 (2016)",
}
DEFAULT_SCRIPT = "2021"

# Number words and articles (processDigitArticle).
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip
ARTICLES = frozenset({"a", "an", "the"})

# Contractions missing their apostrophes -> canonical form (the official table, ASCII quotes,
# its "somebody'd" -> "somebodyd" slip included; identical in both versions).
_CONTRACTIONS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's
whove=who've whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS = dict(pair.split("=", 1) for pair in _CONTRACTIONS.split())

PUNCT = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@",
         "`", ",", "?", "!"]  # fmt: skip
_PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)", re.ASCII)
_COMMA_STRIP = re.compile(r"(\d)(,)(\d)", re.ASCII)
_PERIOD_STRIP_PY3 = re.compile(r"(?!<=\d)(\.)(?!\d)")
_COMMA_STRIP_PY3 = re.compile(r"(\d)(,)(\d)")


def process_punctuation(text: str, unicode_digits: bool = False) -> str:
    """Drop or space out punctuation; a mark touching a space (or any 1,000-style number) is
    dropped, otherwise replaced by a space; then periods not followed by a digit go.

    `unicode_digits`: digits as Python 3 ports see them (any Unicode digit) instead of the
    official Python 2 script's [0-9]."""
    period = _PERIOD_STRIP_PY3 if unicode_digits else _PERIOD_STRIP
    comma = _COMMA_STRIP_PY3 if unicode_digits else _COMMA_STRIP
    out = text
    number_comma = comma.search(text) is not None
    for p in PUNCT:
        if (p + " " in text or " " + p in text) or number_comma:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    # the official script passes re.UNICODE (== 32) as the positional `count`
    return period.sub("", out, count=int(re.UNICODE))


def process_digit_article(text: str) -> str:
    """Lower-case, number words to digits, drop articles, restore contraction apostrophes."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def clean(text: str) -> str:
    """Newlines and tabs to spaces, then strip (the first step of both scripts)."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def normalize_answer(text: str, unicode_digits: bool = False) -> str:
    """Full normalisation: clean, punctuation, digits/articles/contractions."""
    return process_digit_article(process_punctuation(clean(text), unicode_digits))


def check_script(script: str) -> str:
    if script not in VQA_SCRIPTS:
        raise ValueError(f"unknown VQA script {script!r}; choose from {sorted(VQA_SCRIPTS)}")
    return script


def question_accuracy(
    prediction: str, human_answers: Sequence[str], script: str = DEFAULT_SCRIPT
) -> float:
    """One question's accuracy under the `script` version ("2021" or "2016").

    The leave-one-out drops one position at a time: what the scripts' dict comparison does for
    answer records with distinct answer_ids (`vqa_accuracy` checks that they are).
    """
    check_script(script)
    if not human_answers:
        raise ValueError("a question needs at least one human answer")
    if script == "2021":
        pred = clean(prediction)
        gts = [clean(a) for a in human_answers]
        if len(set(gts)) > 1:
            gts = [normalize_answer(a) for a in gts]
            pred = normalize_answer(pred)
    else:
        pred = normalize_answer(prediction)
        gts = list(human_answers)
        if len(set(gts)) > 1:
            gts = [process_punctuation(a) for a in gts]
    return leave_one_out(pred, gts)


def leave_one_out(pred: str, gts: Sequence[str]) -> float:
    """Mean over each left-out position of min(#other answers equal to `pred` / 3, 1)."""
    hits = sum(1 for a in gts if a == pred)
    total = 0.0
    for a in gts:
        matches = hits - (1 if a == pred else 0)
        total += min(1.0, matches / 3.0)
    return total / len(gts)


def _answer_strings(ann: Mapping) -> list[str]:
    """The answer strings of one annotation, after checking its records are told apart by
    something besides the answer (answer_id): the scripts leave a record out by dict
    comparison, so two records equal in every field would drop out of each other's subsets."""
    records = ann["answers"]
    keys = [tuple(sorted((k, repr(v)) for k, v in r.items() if k != "answer")) for r in records]
    if len(records) > 1 and len(set(keys)) != len(keys):
        raise ValueError(
            f"question_id {ann['question_id']}: answer records must carry distinct answer_id "
            "values (as the published annotations do)"
        )
    return [r["answer"] for r in records]


def vqa_accuracy(
    predictions: Mapping[int, str],
    annotations: Iterable[Mapping],
    script: str = DEFAULT_SCRIPT,
) -> dict[str, object]:
    """Score predictions {question_id: answer} against VQAv2 annotation records.

    Annotation records are the official `annotations` entries (question_id, answers[{answer,
    answer_id, ...}], answer_type, question_type). Like the official `loadRes`, the answered
    questions must be exactly the annotated ones: a missing answer or an answer to a question
    without annotation is a ValueError naming the ids.
    Returns fractions in [0, 1] (the official script prints 100x, rounded to 2 places).
    """
    check_script(script)
    annotations = list(annotations)
    annotated = {ann["question_id"] for ann in annotations}
    missing = sorted(annotated - set(predictions), key=str)
    extra = sorted(set(predictions) - annotated, key=str)
    if missing or extra:
        raise ValueError(
            f"answers and annotations disagree: {len(missing)} annotated questions without an "
            f"answer (e.g. question_id {missing[:3]}), {len(extra)} answers to questions without "
            f"annotation (e.g. question_id {extra[:3]})"
        )
    per_q: dict[int, float] = {}
    by_answer_type: dict[str, list[float]] = defaultdict(list)
    by_question_type: dict[str, list[float]] = defaultdict(list)
    for ann in annotations:
        qid = ann["question_id"]
        acc = question_accuracy(predictions[qid], _answer_strings(ann), script)
        per_q[qid] = acc
        by_answer_type[ann.get("answer_type", "unknown")].append(acc)
        by_question_type[ann.get("question_type", "unknown")].append(acc)
    mean = sum(per_q.values()) / len(per_q) if per_q else 0.0
    return {
        "overall": mean,
        "count": len(per_q),
        "script": script,
        "per_answer_type": {
            k: (sum(v) / len(v), len(v)) for k, v in sorted(by_answer_type.items())
        },
        "per_question_type": {
            k: (sum(v) / len(v), len(v)) for k, v in sorted(by_question_type.items())
        },
        "per_question": per_q,
    }
