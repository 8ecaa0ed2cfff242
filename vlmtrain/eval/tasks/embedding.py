"""`vlmtrain eval retrieval-embedding`: Recall@K from embeddings, text->image and image->text.

Encoders: the checkpoint's own (`VLM.encode_images` / `encode_texts`, FROMAGe's projected CLIP
embedding and projected [RET] hidden state, the text formatted as the fromage recipe trains it:
"<s> CAPTION [RET]"), or an open_clip model as the CLIP baseline. Each text is a query for
its own image; image->text is a hit when ANY of the image's texts is in the top K.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from vlmdata.core.errors import DataError
from vlmdata.core.tokenizer import pad_id
from vlmtrain.eval.data import load_index
from vlmtrain.eval.metrics.recall import DEFAULT_KS, recall_at_k
from vlmtrain.eval.options import EmbeddingRetrievalOptions, check_options
from vlmtrain.eval.report import TOP_K, Report, spread

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle


def relevance(text_keys: Sequence[str], image_keys: Sequence[str]) -> np.ndarray:
    """(T, N) bool: text t describes image n."""
    return (
        np.asarray(text_keys, dtype=object)[:, None] == np.asarray(image_keys, dtype=object)[None]
    )


def retrieval_recalls(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    text_keys: Sequence[str],
    image_keys: Sequence[str],
    ks: Sequence[int] = DEFAULT_KS,
) -> dict[str, dict[int, float]]:
    """{'t2i': {K: recall}, 'i2t': {K: recall}} from L2-normalised embeddings (cosine scores)."""
    scores = np.asarray(text_emb, np.float64) @ np.asarray(image_emb, np.float64).T
    pos = relevance(text_keys, image_keys)
    return {"t2i": recall_at_k(scores, pos, ks), "i2t": recall_at_k(scores.T, pos.T, ks)}


def _t2i_examples(text_emb, image_emb, texts, text_keys, image_keys) -> list[dict]:
    """A few text->image queries with their top images (highest cosine first, ties by index)."""
    picks = spread(len(texts))
    scores = np.asarray(text_emb, np.float64)[picks] @ np.asarray(image_emb, np.float64).T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_K].tolist()
    return [
        {"query": texts[i], "answers": [text_keys[i]], "ranked": [image_keys[j] for j in row]}
        for i, row in zip(picks, order, strict=True)
    ]


def load_split(data_dir: str | os.PathLike, split: str, limit: int | None):
    """(image samples, texts, text keys) of a split: images in index order, texts image-major."""
    import polars as pl

    from vlmdata.shards import ShardReader
    from vlmtrain.recipes.base import sample_texts

    load_index(data_dir, split, columns=["split"])  # no such split: names those there are
    reader = ShardReader(data_dir, filter=pl.col("split") == split)
    if len(reader) == 0:
        raise DataError(f"no {split} images in {data_dir}")
    n = len(reader) if limit is None else min(limit, len(reader))
    samples = [reader[i] for i in range(n)]
    texts, text_keys = [], []
    for s in samples:
        for t in sample_texts(s):
            texts.append(t)
            text_keys.append(s["key"])
    if not texts:
        raise DataError(f"the {split} images of {data_dir} have no texts")
    return samples, texts, text_keys


def _batched(fn, items, batch_size: int, progress: bool, desc: str) -> np.ndarray:
    import torch

    out = []
    steps = range(0, len(items), batch_size)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=desc, unit="batch")
    with torch.no_grad():
        for i in steps:
            out.append(fn(items[i : i + batch_size]).float().cpu().numpy())
    return np.concatenate(out)


def model_encoders(model):
    """(images -> emb, texts -> emb) from a VLM with retrieval heads (FROMAGe)."""
    import torch

    from vlmtrain.data.transforms import decode_image
    from vlmtrain.recipes.base import RecipeContext, SequenceBuilder, pad_sequences
    from vlmtrain.recipes.fromage import require_ret

    ctx = RecipeContext.for_model(model)
    ret = require_ret(ctx, "fromage")
    transform = model.image_transform
    pad = pad_id(model.tokenizer)
    dev = next(model.parameters()).device

    def images(samples):
        pixels = torch.stack([transform(decode_image(s["image"])) for s in samples])
        return model.encode_images(pixels.to(dev))

    def texts(batch):
        seqs = [SequenceBuilder(ctx).text(t).input_ids[: ctx.max_length - 1] + [ret] for t in batch]
        ids = pad_sequences(seqs, pad).to(dev)
        mask = pad_sequences([[1] * len(s) for s in seqs], 0).to(dev)
        return model.encode_texts(ids, mask)

    return images, texts


def clip_encoders(name: str, pretrained: str | None, device: str | None = None):
    """open_clip baseline, named by the one rule of vlmdata.core.clip_source (local weights, a
    local-dir folder, a JSON config for a tiny CLIP in tests, or random:NAME asked for)."""
    import torch
    import torch.nn.functional as F

    from vlmdata.core.clip_source import clip_tokenizer, create_clip, resolve_clip
    from vlmtrain.data.transforms import decode_image
    from vlmtrain.eval.generation import pick_device

    dev = pick_device(device)
    source = resolve_clip(name, pretrained)
    model, preprocess = create_clip(source, str(dev))
    tokenizer = clip_tokenizer(source, model)

    def images(samples):
        pixels = torch.stack([preprocess(decode_image(s["image"])) for s in samples])
        return F.normalize(model.encode_image(pixels.to(dev)), dim=-1)

    def texts(batch):
        return F.normalize(model.encode_text(tokenizer(list(batch)).to(dev)), dim=-1)

    return images, texts


def run_embedding_retrieval(
    o: EmbeddingRetrievalOptions, *, model_bundle: ModelBundle | None = None
) -> Report:
    """Recall@K both ways on the `split` images (limit: first N images); `save_predictions`:
    each query's top max(ks) as JSONL (vlmtrain.eval.ranked_predictions)."""
    check_options(o, EmbeddingRetrievalOptions, "run_embedding_retrieval")
    samples, texts, text_keys = load_split(o.data_dir, o.split, o.limit)  # bad data before a model
    if o.encoder == "model":
        if model_bundle is None:
            from vlmtrain.eval.generation import load_model

            model_bundle = load_model(o.checkpoint, o.device)
        enc_images, enc_texts = model_encoders(model_bundle.model)
    elif o.encoder == "clip":
        enc_images, enc_texts = clip_encoders(o.clip_model, o.clip_pretrained, o.device)
    else:
        raise DataError(f"unknown encoder {o.encoder!r} (model or clip)")
    img = _batched(enc_images, samples, o.batch_size, o.progress, "images")
    txt = _batched(enc_texts, texts, o.batch_size, o.progress, "texts")
    image_keys = [s["key"] for s in samples]
    rec = retrieval_recalls(txt, img, text_keys, image_keys, o.ks)
    if o.save_predictions is not None:
        from vlmtrain.eval.ranked_predictions import embedding_rows, write_ranked_predictions

        rows = embedding_rows(txt, img, texts, text_keys, image_keys, max(o.ks))
        write_ranked_predictions(o.save_predictions, rows)
    report = Report(
        task="retrieval-embedding",
        config={"split": o.split, "encoder": o.encoder, "limit": o.limit,
                "clip_model": o.clip_model if o.encoder == "clip" else None},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.data_dir),
    )  # fmt: skip
    for k in o.ks:
        report.add(f"t2i_recall@{k}", rec["t2i"][k], len(texts))
    for k in o.ks:
        report.add(f"i2t_recall@{k}", rec["i2t"][k], len(samples))
    report.details = {"images": len(samples), "texts": len(texts)}
    report.examples = _t2i_examples(txt, img, texts, text_keys, image_keys)
    return report
