"""`vlmtrain eval visdial`: FROMAGe's VisDial image retrieval from a dialog (Table 2).

Protocol of kohjingyu/fromage `evals/eval_visdial_retrieval.py` on `visdial_1.0_val.json`
({"version", "split": "val2018", "data": {"questions": [str], "answers": [str], "dialogs":
[{"image_id", "caption", "dialog": [{"question": i, "answer": j, ...}]}]}}): each dialog's
context is "Q: {question}? A: {answer}." over all its rounds, joined by spaces, then [RET] (the
caption is not used); each image is VisualDialog_{split}_{image_id:012d}.jpg, squashed to the
tower's size; every dialog is scored against every image. Scoring: see
vlmtrain.eval.metrics.context_retrieval (`recall@K` = the script's figure, `t2i_recall@K`).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import read_json
from vlmtrain.eval.metrics.context_retrieval import visdial_recall
from vlmtrain.eval.options import VisdialOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle


def read_dialogs(path: str | os.PathLike) -> tuple[str, list[tuple[int, str]]]:
    """(split, [(image_id, context)]) of a VisDial 1.0 file, dialogs in file order."""
    data = read_json(path)
    body = data.get("data") if isinstance(data, dict) else None
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), list) for k in ("questions", "answers", "dialogs")
    ):
        raise DataError(
            "not a VisDial 1.0 file: no data.{questions,answers,dialogs}", file=str(path)
        )
    questions, answers = body["questions"], body["answers"]
    out = []
    for n, dialog in enumerate(body["dialogs"], start=1):
        if not isinstance(dialog, dict) or "image_id" not in dialog or "dialog" not in dialog:
            raise DataError(f"dialog {n} lacks image_id or dialog", file=str(path))
        parts = []
        for r, turn in enumerate(dialog["dialog"], start=1):
            try:
                parts += [f"Q: {questions[turn['question']]}?", f"A: {answers[turn['answer']]}."]
            except (KeyError, IndexError, TypeError) as e:
                raise DataError(f"dialog {n} round {r}: bad question/answer ({e})",
                                file=str(path)) from e  # fmt: skip
        out.append((int(dialog["image_id"]), " ".join(parts)))
    if not out:
        raise DataError("no dialogs", file=str(path))
    return str(data.get("split", "val2018")), out


def image_name(split: str, image_id: int) -> str:
    """The stem of a VisDial image file (VisualDialog_val2018_000000185565.jpg)."""
    return f"VisualDialog_{split}_{image_id:012d}"


def run_visdial(o: VisdialOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Recall@K over the dialogs (limit: the first N); every dialog's image must be there."""
    check_options(o, VisdialOptions, "run_visdial")
    from vlmtrain.eval.generation import load_model
    from vlmtrain.eval.tasks.interleaved import (
        image_embeddings,
        image_files,
        load_for_tower,
        ret_embeddings,
    )

    split, dialogs = read_dialogs(o.dialogs_path)
    dialogs = dialogs[: o.limit]
    model = (model_bundle or load_model(o.checkpoint, o.device)).model
    files = image_files(o.images_dir)
    images = []
    for image_id, _ in dialogs:
        path = files.get(image_name(split, image_id)) or files.get(str(image_id))
        im = None if path is None else load_for_tower(model, path)
        if im is None:
            raise DataError(f"image {image_name(split, image_id)}.jpg missing or unreadable",
                            file=str(o.images_dir))  # fmt: skip
        images.append(im)
    image_emb = image_embeddings(model, images, o.batch_size)
    text_emb = ret_embeddings(model, [[ctx] for _, ctx in dialogs], o.progress, "dialog")
    rec = visdial_recall(text_emb, image_emb, o.ks)
    report = Report(
        task="visdial",
        config={"limit": o.limit, "split": split},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.dialogs_path),
    )
    for k in o.ks:
        report.add(f"recall@{k}", rec["script"][k], len(dialogs))
    for k in o.ks:
        report.add(f"t2i_recall@{k}", rec["t2i"][k], len(dialogs))
    report.details = {"dialogs": len(dialogs)}
    return report
