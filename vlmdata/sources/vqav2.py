"""VQAv2: the official questions + annotations pair (`v2_OpenEnded_mscoco_train2014_questions.json`
with `v2_mscoco_train2014_annotations.json`; test files have questions only).

questions: `{"info", "task_type", "data_type", "data_subtype", "license", "questions":
[{image_id, question, question_id}]}`; annotations: `{..., "annotations": [{question_id,
image_id, question_type, answer_type, multiple_choice_answer, answers: [{answer,
answer_confidence, answer_id}] x 10}]}`. One manifest row per QUESTION (a record): key
`vqav2_{question_id}`, data_id = question_id, image_id, question, texts =
[multiple_choice_answer] ([question] without an annotation, e.g. test2015), answers = the ten
human answers as JSON text, path = `{subtype}/COCO_{subtype}_{image_id:012d}.jpg` (COCO's
layout) and image_key from that path,
so the ~5 questions of an image share one stored image. Annotations are joined by question_id
(held in memory: ~443k small entries for train2014); files are streamed.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.sources.fields import (
    RowError,
    nonempty_text,
    path_stem,
    printable,
    require,
    split_from_name,
)
from vlmdata.sources.jsonstream import iter_object_arrays

_SUBTYPE = re.compile(r"(train|val|test)(?:-dev)?(\d{4})")


def subtype(path: Path) -> str:
    """COCO image folder named in a VQA file name: `..._val2014_...` -> `val2014`
    (test-dev2015 questions use the test2015 images)."""
    m = _SUBTYPE.search(path.name)
    if m is None:
        raise DataError("cannot tell the COCO image folder (train2014, val2014, test2015) "
                        "from the file name", file=str(path))  # fmt: skip
    return f"{m.group(1)}{m.group(2)}"


def _kind(path: Path) -> str:
    """ "questions" or "annotations": the member the file's top-level object holds."""
    for key, _, _ in iter_object_arrays(path, stream=("questions", "annotations")):
        if key in ("questions", "annotations"):
            return key
    raise DataError("neither a 'questions' nor an 'annotations' list", file=str(path))


def _answers(ann: dict[str, Any]) -> tuple[str, list[str]]:
    best = nonempty_text(require(ann, "multiple_choice_answer"), "multiple_choice_answer")
    answers = require(ann, "answers", list)
    texts = []
    for j, a in enumerate(answers):
        if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
            raise RowError("wrong_type", f"answers[{j}] is not an object with 'answer'")
        texts.append(a["answer"])
    return best, texts


def _load_annotations(path: Path, sink: ManifestSink, table: dict[int, tuple]) -> None:
    for key, i, ann in iter_object_arrays(path, stream=("annotations",)):
        if key != "annotations":
            continue
        try:
            qid = require(ann, "question_id", int)
            if qid in table:
                raise RowError("duplicate_key", f"question_id {qid} annotated twice")
            table[qid] = (str(path), i, *_answers(ann))
        except RowError as e:
            detail = f"annotations[{i}]: {e.detail}"
            sink.reject(e.reason, file=str(path), line=i, detail=detail, record=printable(ann))


def question_row(q: dict[str, Any], folder: str, split: str, ann: tuple | None) -> dict:
    qid = require(q, "question_id", int)
    image_id = require(q, "image_id", int)
    question = nonempty_text(require(q, "question"), "question")
    path = f"{folder}/COCO_{folder}_{image_id:012d}.jpg"
    row = {
        "key": make_key("vqav2", qid),
        "source": "vqav2",
        "split": split,
        "url": None,
        "path": path,
        "texts": [question],  # a test question has no answer: its text is the question
        "image_id": str(image_id),
        "data_id": str(qid),
        "question": question,
        "image_key": make_key(path_stem(path)),
    }
    if ann is not None:
        best, answers = ann[2], ann[3]
        row["texts"] = [best]
        row["answers"] = json.dumps(answers, ensure_ascii=False)
    return row


def read(inputs: list[Path], sink: ManifestSink, split: str | None = None) -> dict[str, int]:
    """Questions files joined with every annotations file given (by question_id)."""
    kinds = {p: _kind(p) for p in inputs}
    annotations: dict[int, tuple] = {}
    for p in (p for p in inputs if kinds[p] == "annotations"):
        _load_annotations(p, sink, annotations)
    used: set[int] = set()
    unanswered = 0
    for p in (p for p in inputs if kinds[p] == "questions"):
        folder, row_split = subtype(p), split_from_name(p.name, split)
        for key, i, q in iter_object_arrays(p, stream=("questions",)):
            if key != "questions":
                continue
            try:
                qid = q.get("question_id") if isinstance(q, dict) else None
                ann = annotations.get(qid) if isinstance(qid, int) else None
                row = question_row(q, folder, row_split, ann)
            except RowError as e:
                detail = f"questions[{i}]: {e.detail}"
                sink.reject(e.reason, file=str(p), line=i, detail=detail, record=printable(q))
                continue
            if ann is None:
                unanswered += 1
            else:
                used.add(qid)
            sink.keep(row, file=str(p), line=i)
    for qid in sorted(annotations.keys() - used):
        file, i, best, _ = annotations[qid]
        detail = f"annotations[{i}]: question_id {qid} is in no questions file given"
        sink.reject("unknown_question", file=file, line=i, detail=detail,
                    record={"question_id": qid, "multiple_choice_answer": best})  # fmt: skip
    return {"no_answer": unanswered} if unanswered else {}
