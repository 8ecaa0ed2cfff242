"""`vlmtrain eval text-vqa`: TextVQA, ST-VQA, DocVQA and OCR-VQA from their published JSON.

Annotation files (the first three `{"data": [...]}`, as published):
- TextVQA (TextVQA_0.5.1_val.json): {question_id, question, image_id, answers: [10 strings]};
  the image is IMAGE_FOLDER/{image_id}.jpg.
- ST-VQA (train_task_3.json and the like): {question_id, question, answers, file_path}; the
  image is IMAGE_FOLDER/{file_path}.
- DocVQA (val_v1.0.json): {questionId, question, answers, image}; the image is
  IMAGE_FOLDER/{image}.
- OCR-VQA (dataset.json): {image_id: {imageURL, questions: [...], answers: [...], split: 1|2|3,
  ...}}, one answer per question; question ids are "{image_id}_{index}" (the data set has
  none), the image is IMAGE_FOLDER/{image_id}{extension of imageURL} (as its loadDataset.py
  saves it); `split` picks train (1), val (2) or test (3).
Predictions are each challenge's submission file, a JSON list (or JSONL) of {question_id,
answer} ({questionId, answer} for DocVQA), or come from a checkpoint: the question goes into
--prompt and is answered greedily, as `vlmtrain eval vqa` and `llava` do. Like the official
scripts, the answered questions must be exactly the annotated ones.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import one_answer_source, read_json, read_records
from vlmtrain.eval.metrics.textvqa import ANLS_THRESHOLD, TEXTVQA_ANSWERS, text_vqa_scores
from vlmtrain.eval.options import TextVqaOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle

DATASETS = {
    # name: (question id field, image field, default metrics)
    "textvqa": ("question_id", "image_id", ("accuracy", "containment")),
    "stvqa": ("question_id", "file_path", ("anls", "containment")),
    "docvqa": ("questionId", "image", ("anls", "containment")),
    "ocrvqa": ("question_id", "imageURL", ("containment",)),
}
OCRVQA_SPLITS = {"train": 1, "val": 2, "test": 3}


@dataclass(frozen=True)
class TextQuestion:
    qid: int | str
    question: str
    answers: list[str]
    image: str  # path relative to the image folder
    line: int  # record number in the annotation file (for messages)


def load_questions(
    path: str | os.PathLike, dataset: str, split: str = "test"
) -> list[TextQuestion]:
    """The annotated questions of a published annotation file, each checked for its fields
    (`split`: OCR-VQA's, the others are one split a file)."""
    if dataset not in DATASETS:
        raise DataError(f"unknown text-VQA data set {dataset!r}; choose from {sorted(DATASETS)}")
    id_field, image_field, _ = DATASETS[dataset]
    obj = read_json(path)
    if dataset == "ocrvqa":
        return _load_ocrvqa(obj, path, split)
    if not isinstance(obj, dict) or not isinstance(obj.get("data"), list):
        raise DataError('expected {"data": [...]} (the published annotation file)', file=str(path))
    out, seen = [], set()
    for i, rec in enumerate(obj["data"], start=1):
        where = {"file": str(path), "line": i}
        missing = [f for f in (id_field, "question", "answers", image_field) if f not in rec]
        if missing:
            raise DataError(f"question record {i} lacks {missing} (no ground truth?)", **where)
        answers = rec["answers"]
        if (
            not isinstance(answers, list)
            or not answers
            or not all(isinstance(a, str) for a in answers)
        ):
            raise DataError(f"question {rec[id_field]}: answers must be a non-empty list", **where)
        if dataset == "textvqa" and len(answers) != TEXTVQA_ANSWERS:
            raise DataError(f"question {rec[id_field]}: {len(answers)} answers, TextVQA has "
                            f"{TEXTVQA_ANSWERS}", **where)  # fmt: skip
        if rec[id_field] in seen:
            raise DataError(f"question {rec[id_field]} appears twice", **where)
        seen.add(rec[id_field])
        image = f"{rec[image_field]}.jpg" if dataset == "textvqa" else str(rec[image_field])
        out.append(TextQuestion(rec[id_field], str(rec["question"]), list(answers), image, i))
    if not out:
        raise DataError("no questions", file=str(path))
    return out


def _load_ocrvqa(obj, path, split: str) -> list[TextQuestion]:
    """OCR-VQA's dataset.json: per image parallel questions/answers lists and a split code."""
    if split not in OCRVQA_SPLITS:
        raise DataError(f"unknown OCR-VQA split {split!r}; choose from {sorted(OCRVQA_SPLITS)}")
    if not isinstance(obj, dict):
        raise DataError("expected {image_id: {questions, answers, ...}} (dataset.json)",
                        file=str(path))  # fmt: skip
    out = []
    for i, (image_id, rec) in enumerate(obj.items(), start=1):
        where = {"file": str(path), "line": i}
        qs, ans = rec.get("questions"), rec.get("answers")
        if not isinstance(qs, list) or not isinstance(ans, list) or len(qs) != len(ans):
            raise DataError(f"image {image_id}: questions and answers must be lists of one "
                            "length", **where)  # fmt: skip
        if rec.get("split") != OCRVQA_SPLITS[split]:
            continue
        ext = os.path.splitext(str(rec.get("imageURL", "")))[1] or ".jpg"
        for j, (q, a) in enumerate(zip(qs, ans, strict=True)):
            out.append(TextQuestion(f"{image_id}_{j}", str(q), [str(a)], f"{image_id}{ext}", i))
    if not out:
        raise DataError(f"no {split} questions", file=str(path))
    return out


def read_answers(path: str | os.PathLike, dataset: str) -> dict:
    """{question id: answer} from a submission file ([{question_id|questionId, answer}])."""
    id_field = DATASETS[dataset][0]
    out: dict = {}
    for line, rec in read_records(path):
        qid = rec.get(id_field, rec.get("question_id", rec.get("questionId")))
        if qid is None or "answer" not in rec:
            raise DataError(f"record needs {id_field} and answer", file=str(path), line=line)
        if not isinstance(rec["answer"], str):
            raise DataError("answer must be a single string", file=str(path), line=line)
        if qid in out:
            raise DataError(f"second answer to question {qid}", file=str(path), line=line)
        out[qid] = rec["answer"]
    return out


def check_coverage(preds: dict, questions: list[TextQuestion], source: str) -> None:
    """The answered questions must be exactly the annotated ones (as the official scripts)."""
    wanted = {q.qid for q in questions}
    missing = sorted(wanted - set(preds), key=str)
    extra = sorted(set(preds) - wanted, key=str)
    if missing or extra:
        raise DataError(
            f"{len(missing)} annotated questions without an answer (e.g. {missing[:3]}), "
            f"{len(extra)} answers to questions without annotation (e.g. {extra[:3]})",
            file=source,
        )


def model_answers(questions: list[TextQuestion], o: TextVqaOptions, model_bundle) -> dict:
    """{qid: answer} decoded greedily from each image and the question put into `o.prompt`
    (for the llava stage-2 recipe, that text inside its chat template)."""
    from vlmtrain.eval.generation import load_model, recipe_of
    from vlmtrain.eval.tasks.llava import generate_answers, resolve_image

    records = [
        {"text": o.prompt.format(question=q.question),
         "_image_path": resolve_image(o.image_folder, q.image, o.annotations, q.line)}
        for q in questions
    ]  # fmt: skip
    bundle = model_bundle or load_model(o.checkpoint, o.device)
    texts = generate_answers(
        bundle.model, recipe_of(bundle.cfg), records, max_new_tokens=o.max_new_tokens,
        batch_size=o.batch_size, progress=o.progress,
    )  # fmt: skip
    return {q.qid: t for q, t in zip(questions, texts, strict=True)}


def run_text_vqa(o: TextVqaOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """TextVQA accuracy / ANLS / containment of an answers file or a checkpoint's answers."""
    check_options(o, TextVqaOptions, "run_text_vqa")
    one_answer_source(o.checkpoint, model_bundle, o.predictions)
    questions = load_questions(o.annotations, o.dataset, o.split)
    metrics = tuple(o.metrics or DATASETS[o.dataset][2])
    if "accuracy" in metrics and o.dataset != "textvqa":
        raise DataError("accuracy is TextVQA's ten-answer metric: use anls or containment")
    if o.predictions is not None:
        preds = read_answers(o.predictions, o.dataset)
        check_coverage(preds, questions, str(o.predictions))
    if o.limit is not None:
        questions = questions[: o.limit]
    if o.predictions is not None:
        preds = {q.qid: preds[q.qid] for q in questions}
    else:
        if o.image_folder is None:
            raise DataError("--image-folder (the data set's images) is needed with a model")
        preds = model_answers(questions, o, model_bundle)
    if o.save_predictions is not None:
        _write_submission(o.save_predictions, preds, DATASETS[o.dataset][0])
    scores = text_vqa_scores(preds, {q.qid: q.answers for q in questions}, metrics)
    report = Report(
        task="text-vqa",
        config={"dataset": o.dataset, "annotations": str(o.annotations), "metrics": list(metrics),
                "split": o.split if o.dataset == "ocrvqa" else None,
                "anls_threshold": ANLS_THRESHOLD, "limit": o.limit,
                "predictions": str(o.predictions) if o.predictions else None,
                "prompt": None if o.predictions else o.prompt},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.image_folder) if o.image_folder else None,
    )  # fmt: skip
    for name in metrics:
        report.add(name, scores[name], len(questions))
    return report


def _write_submission(path: str | os.PathLike, preds: dict, id_field: str) -> None:
    from vlmdata.core.atomic import write_json

    write_json(path, [{id_field: k, "answer": preds[k]} for k in sorted(preds, key=str)])
