"""`vlmtrain eval llava`: answers in LLaVA's `model_vqa` JSONL format, accuracy where known.

Input: LLaVA's questions JSONL ({question_id, image, text[, category]}), images under
--image-folder or in shards (--data: the image whose record `path` is the question's `image`,
one read through the index); or, without a questions file, the shards' LLaVA records of one
split (question = the first human turn, reference = the first answer). Output, one line per
question as `llava/eval/model_vqa.py` writes it: {question_id, prompt, text, answer_id,
model_id, metadata}. `answer_id` is a hash of the question, model and answer instead of a
random shortuuid, so reruns are byte-identical. Questions that carry a reference (`answer`,
`gt_answer` or `label`) are scored by exact match after VQA answer normalisation; the rest
(open-ended, GPT-judged benchmarks) are only answered.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import iter_jsonl, require
from vlmtrain.eval.metrics.vqa import normalize_answer
from vlmtrain.eval.options import LlavaOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle

REFERENCE_FIELDS = ("answer", "gt_answer", "label")


def resolve_image(image_folder: str | os.PathLike, rel: str, path, line: int) -> Path:
    """`image_folder/rel`, refused (DataError naming file and record) if it leaves the folder
    or is not a file."""
    root = Path(image_folder).resolve()
    image = (root / rel).resolve()
    if root not in image.parents:
        raise DataError(f"image path {rel!r} leaves the image folder", file=str(path), line=line)
    if not image.is_file():
        raise DataError(f"image {rel!r} not found in {root}", file=str(path), line=line)
    return image


def read_questions(
    path: str | os.PathLike, image_folder: str | os.PathLike | None, limit=None, data_dir=None
):
    """Question records, each checked for fields and for its image: inside `image_folder`, or
    (with `data_dir`) a shard image whose record `path` equals the question's `image`."""
    keys = _image_keys_by_path(data_dir) if data_dir is not None else None
    out = []
    for line, rec in iter_jsonl(path):
        require(rec, ("question_id", "image", "text"), path, line)
        if keys is not None:
            if rec["image"] not in keys:
                raise DataError(f"image {rec['image']!r} is no record's path in {data_dir}",
                                file=str(path), line=line)  # fmt: skip
            out.append({**rec, "_image_key": keys[rec["image"]]})
        else:
            out.append({**rec, "_image_path": resolve_image(image_folder, rec["image"], path,
                                                            line)})  # fmt: skip
        if limit is not None and len(out) >= limit:
            break
    return out


def _image_keys_by_path(data_dir) -> dict[str, str]:
    from vlmdata.shards import load_records

    records = load_records(data_dir, columns=["path", "image_key"]).drop_nulls("path")
    return dict(zip(records["path"], records["image_key"], strict=True))


def questions_from_records(data_dir, split: str, limit=None) -> list[dict]:
    """LLaVA records of one split as questions: the first human turn (without `<image>`),
    the first answer as the reference, the record key as question_id."""
    import polars as pl

    from vlmdata.shards import load_records
    from vlmtrain.recipes.llava_template import parse_conversation

    df = load_records(data_dir)
    if "conversations" not in df.columns:
        raise DataError("records have no conversations (not LLaVA shards?)", file=str(data_dir))
    have = df.filter(pl.col("conversations").is_not_null())
    df = have.filter(pl.col("split") == split)
    if df.is_empty():
        splits = sorted(set(have["split"].to_list()))
        raise DataError(f"no LLaVA questions in split {split!r}: the records' splits are "
                        f"{splits[:8]} (`manifest llava` puts every record in train): pass "
                        "--split with one of them, or --questions", file=str(data_dir))  # fmt: skip
    out = []
    for r in df.head(limit).iter_rows(named=True) if limit else df.iter_rows(named=True):
        pairs = parse_conversation(r["conversations"], r["key"])
        question = pairs[0][1].replace("<image>", "").strip()
        out.append({"question_id": r["key"], "image": r["path"], "text": question,
                    "answer": pairs[1][1], "_image_key": r["image_key"]})  # fmt: skip
    return out


def reference_of(rec: dict) -> str | None:
    for name in REFERENCE_FIELDS:
        if rec.get(name) not in (None, ""):
            return str(rec[name])
    return None


def answer_id(question_id, model_id: str, text: str) -> str:
    digest = hashlib.sha256(f"{question_id}\0{model_id}\0{text}".encode()).hexdigest()
    return digest[:22]


def answer_record(rec: dict, text: str, model_id: str) -> dict:
    """One line of model_vqa output."""
    return {
        "question_id": rec["question_id"],
        "prompt": rec["text"],
        "text": text,
        "answer_id": answer_id(rec["question_id"], model_id, text),
        "model_id": model_id,
        "metadata": {},
    }


def exact_match(prediction: str, reference: str) -> bool:
    return normalize_answer(prediction) == normalize_answer(reference)


def generate_answers(
    model, recipe, questions, *, max_new_tokens, batch_size, progress, data_dir=None
):
    """Greedy answers with the recipe's chat prompt (llava stage 2) or image + question."""
    from vlmtrain.data.transforms import decode_image
    from vlmtrain.eval.generation import decode_text, generate_tokens
    from vlmtrain.eval.tasks.prompts import question_prompt
    from vlmtrain.recipes.base import RecipeContext

    ctx = RecipeContext.for_model(model)
    reader = None
    if data_dir is not None:
        from vlmdata.shards import ShardReader

        reader = ShardReader(data_dir)
    prompts, pixels = [], []
    for q in questions:
        prompts.append(question_prompt(recipe, ctx, q["text"]))
        if "_image_key" in q:
            data = reader.get(q["_image_key"])["image"]
        else:
            data = q["_image_path"].read_bytes()
        pixels.append(model.image_transform(decode_image(data)))
    outs = generate_tokens(
        model, prompts, images=pixels, batch_size=batch_size, progress=progress, num_beams=1,
        do_sample=False, max_new_tokens=max_new_tokens,
        image_attention=getattr(recipe, "image_attention", "causal"),  # a GIT-mode captioner
    )  # fmt: skip
    return [decode_text(model.tokenizer, o[0]) for o in outs]


def run_llava(o: LlavaOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Write the answers JSONL (atomically) and report accuracy on the referenced questions."""
    check_options(o, LlavaOptions, "run_llava")
    from vlmdata.core.atomic import atomic_open
    from vlmtrain.eval.generation import load_model, recipe_of

    if o.questions is None and o.data_dir is None:
        raise DataError("give --questions (with --image-folder or --data), or --data")
    if o.questions is not None and o.image_folder is None and o.data_dir is None:
        raise DataError("--questions needs --image-folder or --data for the images")
    if o.questions is not None:
        qs = read_questions(o.questions, o.image_folder, o.limit, data_dir=o.data_dir)
    else:
        qs = questions_from_records(o.data_dir, o.split, o.limit)
    if not qs:
        raise DataError("no questions", file=str(o.questions or o.data_dir))
    bundle = model_bundle or load_model(o.checkpoint, o.device)
    model_id = o.model_id or (Path(str(o.checkpoint)).name if o.checkpoint else "model")
    texts = generate_answers(
        bundle.model, recipe_of(bundle.cfg), qs, max_new_tokens=o.max_new_tokens,
        batch_size=o.batch_size, progress=o.progress, data_dir=o.data_dir,
    )  # fmt: skip
    with atomic_open(o.answers_file, "w", encoding="utf-8") as f:
        for q, text in zip(qs, texts, strict=True):
            f.write(json.dumps(answer_record(q, text, model_id), ensure_ascii=False) + "\n")
    scored = [(t, reference_of(q)) for q, t in zip(qs, texts, strict=True) if reference_of(q)]
    report = Report(
        task="llava",
        config={"questions": str(o.questions) if o.questions else None,
                "split": None if o.questions else o.split, "answers": str(o.answers_file),
                "model_id": model_id, "max_new_tokens": o.max_new_tokens, "limit": o.limit},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir or o.image_folder),
    )  # fmt: skip
    report.add("answered", len(qs), len(qs), unit="count")
    if scored:
        hits = sum(exact_match(t, r) for t, r in scored)
        report.add("accuracy", hits / len(scored), len(scored))
    return report
