"""`vlmtrain eval caption`: COCO caption metrics on a test split, from a model or a file.

References are the test images' texts in OUT/index/index.parquet (COCO Karpathy test: 5,000 images,
about five captions each). Predictions come from decoding the caption recipe's prompt
(the recipe's decoding: greedy, or beam search with a length penalty; GIT's image attention
for a recipe trained with it; each overridable: --beams, --length-penalty, --max-new-tokens,
--image-attention) or from a COCO results file
([{"image_id": ..., "caption": ...}], image_id matched to the index's `image_id` column, or
"key" matched to the sample key).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import load_index, one_answer_source, read_records
from vlmtrain.eval.metrics.captioning import caption_scores, require_java
from vlmtrain.eval.options import CaptionOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle


def read_caption_predictions(
    path: str | os.PathLike, data_dir: str | os.PathLike, split: str = "test"
) -> dict[str, str]:
    """{sample key: caption} from a COCO results JSON/JSONL (image_id or key per record)."""
    df = load_index(data_dir, split)
    by_image_id: dict[str, str] = {}
    if "image_id" in df.columns:
        by_image_id = {
            str(i): k for i, k in zip(df["image_id"], df["key"], strict=True) if i is not None
        }
    keys = set(df["key"])
    out: dict[str, str] = {}
    for line, rec in read_records(path):
        if "caption" not in rec or not ("key" in rec or "image_id" in rec):
            raise DataError("record needs caption and key or image_id", file=str(path), line=line)
        if "key" in rec:
            key = rec["key"] if rec["key"] in keys else None
        else:
            key = by_image_id.get(str(rec["image_id"]))
        if key is None:
            ident = rec.get("key", rec.get("image_id"))
            raise DataError(f"{ident!r} is not a {split} image of {data_dir}", file=str(path),
                            line=line)  # fmt: skip
        if key in out:
            raise DataError(f"second prediction for {key!r}", file=str(path), line=line)
        out[key] = str(rec["caption"])
    return out


def run_caption(o: CaptionOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Score captions of the `split` images; exactly one of checkpoint/predictions. Unset
    decoding options take the checkpoint's caption recipe's (`decoding`, `image_attention`)."""
    check_options(o, CaptionOptions, "run_caption")
    one_answer_source(o.checkpoint, model_bundle, o.predictions)
    require_java()  # fail before minutes of decoding, not after
    df = load_index(o.data_dir, o.split, columns=None)
    if o.limit is not None:
        df = df.head(o.limit)
    refs = {
        k: list(t or []) for k, t in zip(df["key"].to_list(), df["texts"].to_list(), strict=True)
    }
    if o.predictions is not None:
        preds = read_caption_predictions(o.predictions, o.data_dir, o.split)
        if o.limit is not None:
            preds = {k: v for k, v in preds.items() if k in refs}
    else:
        preds = caption_images(
            o.checkpoint, o.data_dir, list(refs), beams=o.beams, max_new_tokens=o.max_new_tokens,
            length_penalty=o.length_penalty, image_attention=o.image_attention,
            batch_size=o.batch_size, model_bundle=model_bundle, device=o.device,
            progress=o.progress,
        )  # fmt: skip
    if o.save_predictions is not None:
        _write_predictions(o.save_predictions, preds, df)
    scores = caption_scores(preds, refs, o.metrics)
    report = Report(
        task="caption",
        config={"split": o.split, "beams": o.beams, "max_new_tokens": o.max_new_tokens,
                "length_penalty": o.length_penalty, "image_attention": o.image_attention,
                "limit": o.limit, "predictions": str(o.predictions) if o.predictions else None},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir),
    )  # fmt: skip
    for name in o.metrics:
        report.add(
            name, scores[name], len(preds), unit="score" if name == "CIDEr-D" else "fraction"
        )
    return report


def caption_images(
    checkpoint,
    data_dir,
    keys: Sequence[str],
    *,
    beams: int | None = None,
    max_new_tokens: int | None = None,
    length_penalty: float | None = None,
    image_attention: str | None = None,
    batch_size: int = 16,
    model_bundle: ModelBundle | None = None,
    device: str | None = None,
    progress: bool = False,
) -> dict[str, str]:
    """{key: caption} by greedy (beams=1) or beam decoding of the recipe's caption prompt;
    unset options take the recipe's (`decoding_options`)."""
    from vlmdata.shards import ShardReader
    from vlmtrain.eval.generation import load_model, recipe_of, unpack
    from vlmtrain.eval.tasks.prompts import decode_images, decoding_options, image_prompt
    from vlmtrain.recipes.base import RecipeContext

    model, tok, cfg = unpack(model_bundle or load_model(checkpoint, device))
    recipe = recipe_of(cfg)
    ctx = RecipeContext.for_model(model)
    reader = ShardReader(data_dir)
    samples = [reader.get(k) for k in keys]
    prompts = [image_prompt(recipe, ctx) for _ in samples]
    opts = decoding_options(
        recipe, beams=beams, max_new_tokens=max_new_tokens, length_penalty=length_penalty,
        image_attention=image_attention,
    )  # fmt: skip
    pixels = [ctx.pixel_values(s) for s in samples]
    texts = decode_images(model, tok, prompts, pixels, opts, batch_size=batch_size,
                          progress=progress)  # fmt: skip
    return dict(zip(keys, texts, strict=True))


def _write_predictions(path: str | os.PathLike, preds: dict[str, str], df) -> None:
    """COCO results format, with the original image_id when the index has one."""
    from vlmdata.core.atomic import write_json

    ids = dict(zip(df["key"], df["image_id"], strict=True)) if "image_id" in df.columns else {}
    rows = []
    for key in sorted(preds):
        rec = {"key": key, "caption": preds[key]}
        if ids.get(key) is not None:
            rec["image_id"] = ids[key]
        rows.append(rec)
    write_json(path, rows)
