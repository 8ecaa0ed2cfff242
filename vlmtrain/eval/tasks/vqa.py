"""`vlmtrain eval vqa`: VQAv2 accuracy on the official questions/annotations JSON.

Like the official `loadRes`, the predictions must answer exactly the annotated questions (a
partial results file would score a different benchmark, and an answer to a question without
annotation means the wrong files). Predictions come from a results JSON
([{"question_id", "answer"}]) or from the model: the question is put into --prompt and decoded
with the image found by its COCO `image_id` in the shards' records. `script` picks the version
of the official vqaEval.py ("2021", the current one, or "2016"); the report names it.
Questions and answers come from the official JSON pair, or, without it, from the records of
`vlmdata manifest vqav2` shards (one record per question: data_id = question_id, question,
answers = the ten human answers, answer_id 1..10; answer and question types are "unknown").

The official test-dev/test-std numbers come from EvalAI, which scores an uploaded answer file:
`write_submission` answers EVERY question of a questions file (or of a split's records),
annotated or not, and writes EvalAI's VQAv2 results format [{"question_id": int, "answer": str}]
(for test-dev, EvalAI expects the answers to all of test2015's questions). Scoring keeps
refusing unannotated questions.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import one_answer_source, read_json, read_records
from vlmtrain.eval.metrics.vqa import VQA_SCRIPTS, vqa_accuracy
from vlmtrain.eval.options import VqaOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle


def load_questions(questions: str | os.PathLike) -> dict:
    """{question_id: question record} from an official questions JSON (test-dev too)."""
    q = read_json(questions)
    if not isinstance(q, dict) or not isinstance(q.get("questions"), list):
        raise DataError("expected {'questions': [...]}", file=str(questions))
    out = {}
    for i, rec in enumerate(q["questions"], start=1):
        if not isinstance(rec, dict) or not {"question_id", "image_id", "question"} <= set(rec):
            raise DataError("question needs question_id, image_id and question",
                            file=str(questions), line=i)  # fmt: skip
        if rec["question_id"] in out:
            raise DataError(f"question_id {rec['question_id']} appears twice",
                            file=str(questions), line=i)  # fmt: skip
        out[rec["question_id"]] = rec
    return out


def load_vqa(questions: str | os.PathLike, annotations: str | os.PathLike):
    """(questions by id, annotation records) from the official VQAv2 JSON files."""
    qs = load_questions(questions)
    a = read_json(annotations)
    if not isinstance(a, dict) or "annotations" not in a:
        raise DataError("expected {'annotations': [...]}", file=str(annotations))
    anns = a["annotations"]
    seen = set()
    for i, ann in enumerate(anns, start=1):
        if "question_id" not in ann or not ann.get("answers"):
            raise DataError("annotation lacks question_id or answers", file=str(annotations),
                            line=i)  # fmt: skip
        if ann["question_id"] not in qs:
            raise DataError(f"question_id {ann['question_id']} has no question",
                            file=str(annotations), line=i)  # fmt: skip
        if ann["question_id"] in seen:
            raise DataError(f"question_id {ann['question_id']} is annotated twice",
                            file=str(annotations), line=i)  # fmt: skip
        seen.add(ann["question_id"])
        _check_answer_records(ann, str(annotations), i)
    return qs, anns


def _check_answer_records(ann: dict, path: str, line: int) -> None:
    """The official scripts leave one answer record out by dict comparison, so records must be
    told apart by more than their answer (the published ones carry answer_id 1..10)."""
    recs = ann["answers"]
    if not all(isinstance(r, dict) and isinstance(r.get("answer"), str) for r in recs):
        raise DataError(f"question_id {ann['question_id']}: answers must be records with an "
                        "'answer' string", file=path, line=line)  # fmt: skip
    ids = [tuple(sorted((k, repr(v)) for k, v in r.items() if k != "answer")) for r in recs]
    if len(recs) > 1 and len(set(ids)) != len(ids):
        raise DataError(f"question_id {ann['question_id']}: answer records need distinct "
                        "answer_id values (as the published annotations have)", file=path,
                        line=line)  # fmt: skip


def vqa_from_records(data_dir: str | os.PathLike, split: str, answered: bool = True):
    """(questions by id, annotation records) from VQAv2 shards' records of one split; with
    answered=False every question of the split (annotations of the answered ones)."""
    import json

    import polars as pl

    from vlmdata.shards import load_records

    df = load_records(data_dir)
    need = {"data_id", "image_id", "question", "split"} | ({"answers"} if answered else set())
    if not need <= set(df.columns):
        raise DataError(f"records lack {sorted(need - set(df.columns))} (not VQAv2 shards?)",
                        file=str(data_dir))  # fmt: skip
    if "answers" not in df.columns:
        df = df.with_columns(pl.lit(None, dtype=pl.String).alias("answers"))
    df = df.filter(pl.col("split") == split)
    if answered:
        df = df.filter(pl.col("answers").is_not_null())
    if df.height == 0:
        what = "answered records" if answered else "records"
        raise DataError(f"no {what} with split == {split!r}", file=str(data_dir))
    qs, anns = {}, []
    for r in df.select("data_id", "image_id", "question", "answers").iter_rows(named=True):
        qid = int(r["data_id"])
        qs[qid] = {"question_id": qid, "image_id": int(r["image_id"]), "question": r["question"]}
        if r["answers"] is None:
            continue
        answers = [
            {"answer": a, "answer_id": j + 1} for j, a in enumerate(json.loads(r["answers"]))
        ]
        anns.append({"question_id": qid, "answers": answers})
    return qs, anns


def read_vqa_predictions(path: str | os.PathLike) -> dict[int, str]:
    out: dict[int, str] = {}
    for line, rec in read_records(path):
        if "question_id" not in rec or "answer" not in rec:
            raise DataError("record needs question_id and answer", file=str(path), line=line)
        if rec["question_id"] in out:
            raise DataError(f"second answer to question {rec['question_id']}", file=str(path),
                            line=line)  # fmt: skip
        out[rec["question_id"]] = str(rec["answer"])
    return out


def answer_questions(
    checkpoint,
    data_dir,
    items: Sequence[tuple[int, dict]],
    *,
    prompt: str | None = None,
    max_new_tokens: int | None = None,
    beams: int | None = None,
    length_penalty: float | None = None,
    batch_size: int = 16,
    model_bundle: ModelBundle | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[int, str]:
    """{question_id: answer} for VQA questions ({image_id, question}).

    The caption recipe's checkpoints decode with its own question prompt (or `prompt`), image
    attention and `decoding` (unset options); other recipes put the question into `prompt`
    (default "Question: {question} Answer:"), greedy with 10 new tokens unless set.

    The image is the one a record with the question's `image_id` (COCO ids) points at: VQAv2
    shards hold one record per question, several per image, and each image once.
    """
    from vlmdata.shards import ShardReader, load_records
    from vlmtrain.eval.generation import load_model, recipe_of, unpack
    from vlmtrain.eval.tasks.prompts import decode_images, decoding_options, vqa_prompt
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    records = load_records(data_dir)
    if "image_id" not in records.columns:
        raise DataError(f"{data_dir}: records have no image_id column to find VQA images by")
    key_of = {
        str(i): k
        for i, k in zip(records["image_id"], records["image_key"], strict=True)
        if i is not None
    }
    samples, prompts = [], []
    for qid, q in items:
        key = key_of.get(str(q["image_id"]))
        if key is None:
            raise DataError(f"question {qid}: image_id {q['image_id']} is not in {data_dir}")
        samples.append(reader.get(key))
        prompts.append(vqa_prompt(recipe, ctx, q["question"], prompt))
    opts = decoding_options(recipe, beams=beams, length_penalty=length_penalty,
                            max_new_tokens=max_new_tokens, image_attention=None)  # fmt: skip
    if recipe.name != "caption" and max_new_tokens is None:
        opts["max_new_tokens"] = 10
    pixels = [ctx.pixel_values(s) for s in samples]
    texts = decode_images(model, tok, prompts, pixels, opts, batch_size=batch_size,
                          progress=progress)  # fmt: skip
    return {qid: t for (qid, _), t in zip(items, texts, strict=True)}


def _answer(o: VqaOptions, items: Sequence[tuple[int, dict]], model_bundle) -> dict[int, str]:
    """`answer_questions` with the decoding options of `o`."""
    return answer_questions(
        o.checkpoint, o.data_dir, items, prompt=o.prompt, max_new_tokens=o.max_new_tokens,
        beams=o.beams, length_penalty=o.length_penalty, batch_size=o.batch_size,
        model_bundle=model_bundle, device=o.device, progress=o.progress,
    )  # fmt: skip


def run_vqa(o: VqaOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Overall and per-answer-type accuracy (fractions; the official script prints 100x)."""
    check_options(o, VqaOptions, "run_vqa")
    one_answer_source(o.checkpoint, model_bundle, o.predictions)
    if o.script not in VQA_SCRIPTS:
        raise DataError(f"unknown --vqa-script {o.script!r}; choose from {sorted(VQA_SCRIPTS)}")
    if (o.questions is None) != (o.annotations is None):
        raise DataError("give --questions and --annotations together (or neither: records)")
    if o.questions is not None:
        qs, anns = load_vqa(o.questions, o.annotations)
    elif o.data_dir is not None:
        qs, anns = vqa_from_records(o.data_dir, o.split)
    else:
        raise DataError("give --questions and --annotations, or --data (VQAv2 shards)")
    annotated = {a["question_id"] for a in anns}
    if o.limit is not None:
        anns = anns[: o.limit]
    wanted = {a["question_id"] for a in anns}
    if o.predictions is not None:
        preds = read_vqa_predictions(o.predictions)
        extra = sorted(set(preds) - annotated, key=str)
        if extra:
            raise DataError(f"{len(extra)} answers to questions without annotation (e.g. "
                            f"question_id {extra[:3]}); the official loader refuses them too",
                            file=str(o.predictions))  # fmt: skip
        if o.limit is not None:
            preds = {k: v for k, v in preds.items() if k in wanted}
    else:
        if o.data_dir is None:
            raise DataError("--data (the shards holding the VQA images) is needed with a model")
        items = [(a["question_id"], qs[a["question_id"]]) for a in anns]
        preds = _answer(o, items, model_bundle)
    if o.save_predictions is not None:
        from vlmdata.core.atomic import write_json

        write_json(
            o.save_predictions, [{"question_id": k, "answer": preds[k]} for k in sorted(preds)]
        )
    missing = sorted(wanted - set(preds), key=str)
    if missing:
        raise DataError(f"{len(missing)} annotated questions have no answer (e.g. {missing[:3]})")
    res = vqa_accuracy(preds, anns, o.script)
    report = Report(
        task="vqa",
        config={"prompt": o.prompt if o.checkpoint else None, "limit": o.limit,
                "beams": o.beams, "length_penalty": o.length_penalty,
                "max_new_tokens": o.max_new_tokens,
                "predictions": str(o.predictions) if o.predictions else None,
                "questions": str(o.questions) if o.questions else None,
                "annotations": str(o.annotations) if o.annotations else None,
                "split": None if o.questions else o.split,
                "vqa_script": o.script, "vqa_script_source": VQA_SCRIPTS[o.script]},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir) if o.data_dir else None,
    )  # fmt: skip
    report.add("accuracy", res["overall"], res["count"])
    for ans_type, (acc, n) in res["per_answer_type"].items():
        report.add(f"accuracy/{ans_type}", acc, n)
    report.details["per_question_type"] = {
        k: {"accuracy": v, "count": n} for k, (v, n) in res["per_question_type"].items()
    }
    return report


def write_submission(o: VqaOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Answer every question (annotated or not) and write EvalAI's VQAv2 results JSON,
    [{"question_id": int, "answer": str}], sorted by question_id; nothing is scored."""
    check_options(o, VqaOptions, "write_submission")
    from vlmdata.core.atomic import write_json

    if o.submission is None:
        raise DataError("write_submission needs the submission file to write")
    if o.checkpoint is None and model_bundle is None:
        raise DataError("--submission answers with a model: give --checkpoint")
    qs = (
        load_questions(o.questions)
        if o.questions
        else vqa_from_records(o.data_dir, o.split, False)[0]
    )
    items = sorted(qs.items(), key=lambda kv: kv[0])[: o.limit]
    preds = _answer(o, items, model_bundle)
    write_json(o.submission, [{"question_id": int(q), "answer": preds[q]} for q, _ in items])
    report = Report(
        task="vqa-submission",
        config={
            "submission": str(o.submission),
            "questions": str(o.questions) if o.questions else None,
            "split": None if o.questions else o.split,
            "prompt": o.prompt,
            "beams": o.beams,
            "length_penalty": o.length_penalty,
            "max_new_tokens": o.max_new_tokens,
            "limit": o.limit,
        },
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir),
    )
    report.add("questions_answered", float(len(items)), len(items))
    return report
