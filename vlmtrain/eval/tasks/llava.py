"""`vlmtrain eval llava`: answers in LLaVA's `model_vqa` JSONL format, accuracy where known.

Input: LLaVA's questions JSONL ({question_id, image, text[, category]}), images under
--image-folder. Output, one line per question as `llava/eval/model_vqa.py` writes it:
{question_id, prompt, text, answer_id, model_id, metadata}. `answer_id` is a hash of the
question, model and answer instead of a random shortuuid, so reruns are byte-identical.
Questions that carry a reference (`answer`, `gt_answer` or `label`) are scored by exact match
after VQA answer normalisation; the rest (open-ended, GPT-judged benchmarks) are only answered.
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


def read_questions(path: str | os.PathLike, image_folder: str | os.PathLike, limit=None):
    """Question records, each checked for fields and for an image inside `image_folder`."""
    out = []
    for line, rec in iter_jsonl(path):
        require(rec, ("question_id", "image", "text"), path, line)
        image = resolve_image(image_folder, rec["image"], path, line)
        out.append({**rec, "_image_path": image})
        if limit is not None and len(out) >= limit:
            break
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


def generate_answers(model, recipe, questions, *, max_new_tokens, batch_size, progress):
    """Greedy answers with the recipe's chat prompt (llava stage 2) or image + question."""
    from vlmtrain.data.transforms import decode_image
    from vlmtrain.eval.generation import decode_text, generate_tokens, image_prompt, llava_prompt
    from vlmtrain.recipes.base import RecipeContext

    ctx = RecipeContext.for_model(model)
    prompts, pixels = [], []
    for q in questions:
        if recipe.name == "llava" and getattr(recipe, "stage", 1) == 2:
            prompts.append(llava_prompt(recipe, ctx, q["text"]))
        else:
            prompts.append(image_prompt(recipe, ctx, q["text"]))
        pixels.append(model.image_transform(decode_image(q["_image_path"].read_bytes())))
    outs = generate_tokens(
        model, prompts, images=pixels, batch_size=batch_size, progress=progress, num_beams=1,
        do_sample=False, max_new_tokens=max_new_tokens,
    )  # fmt: skip
    return [decode_text(model.tokenizer, o[0]) for o in outs]


def run_llava(
    *,
    checkpoint: str | os.PathLike | None,
    questions: str | os.PathLike,
    image_folder: str | os.PathLike,
    answers_file: str | os.PathLike,
    model_id: str | None = None,
    max_new_tokens: int = 128,
    batch_size: int = 8,
    limit: int | None = None,
    model_bundle: ModelBundle | None = None,
    device: str | None = None,
    progress: bool = False,
) -> Report:
    """Write the answers JSONL (atomically) and report accuracy on the referenced questions."""
    from vlmdata.core.atomic import atomic_open
    from vlmtrain.eval.generation import load_model, recipe_of

    qs = read_questions(questions, image_folder, limit)
    if not qs:
        raise DataError("no questions", file=str(questions))
    bundle = model_bundle or load_model(checkpoint, device)
    model_id = model_id or (Path(str(checkpoint)).name if checkpoint else "model")
    texts = generate_answers(
        bundle.model, recipe_of(bundle.cfg), qs, max_new_tokens=max_new_tokens,
        batch_size=batch_size, progress=progress,
    )  # fmt: skip
    with atomic_open(answers_file, "w", encoding="utf-8") as f:
        for q, text in zip(qs, texts, strict=True):
            f.write(json.dumps(answer_record(q, text, model_id), ensure_ascii=False) + "\n")
    scored = [(t, reference_of(q)) for q, t in zip(qs, texts, strict=True) if reference_of(q)]
    report = Report(
        task="llava",
        config={"questions": str(questions), "answers": str(answers_file), "model_id": model_id,
                "max_new_tokens": max_new_tokens, "limit": limit},
        checkpoint=str(checkpoint) if checkpoint else None,
        data=str(image_folder),
    )  # fmt: skip
    report.add("answered", len(qs), len(qs))
    if scored:
        hits = sum(exact_match(t, r) for t, r in scored)
        report.add("accuracy", hits / len(scored), len(scored))
    return report
