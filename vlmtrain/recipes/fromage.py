"""FROMAGe: a frozen LM and a frozen CLIP tower, tied together by trained linear maps.

Two losses per example, as in the paper:
  captioning: <s> <image>*n | CAPTION [RET]          next-token loss on the caption and [RET]
  retrieval:  <s> CAPTION [RET] (text only)          the projected [RET] hidden state vs the
              projected CLIP image embedding, symmetric InfoNCE over the global batch.
Trainable (model.train): ["projector", "new_tokens", "heads"] (the [RET] row, the image->LM map,
the two retrieval maps and the temperature); model.ret_token must be "[RET]" (or similar).
"""

from __future__ import annotations

from typing import Any

import torch

from vlmtrain.recipes.base import (
    Example,
    Recipe,
    RecipeContext,
    Sample,
    SequenceBuilder,
    lm_loss,
    sample_texts,
)
from vlmtrain.recipes.losses import MAX_LOGIT_SCALE, info_nce

__all__ = ["MAX_LOGIT_SCALE", "FromageRecipe", "pick_text", "require_ret"]


def require_ret(ctx: RecipeContext, recipe: str) -> int:
    if ctx.ret_token_id is None:
        raise ValueError(f"recipe {recipe} needs model.ret_token (e.g. '[RET]')")
    return ctx.ret_token_id


def pick_text(sample: Sample, ctx: RecipeContext, text_index: int | None) -> str | None:
    """The caption at `text_index`, or one drawn by the context's rng; None when there is none."""
    texts = sample_texts(sample)
    if not texts:
        ctx.skipped["no_caption"] += 1
        return None
    return texts[ctx.rng_for(sample).randrange(len(texts)) if text_index is None else text_index]


class FromageRecipe(Recipe):
    name = "fromage"
    kinds = ("caption",)
    mix = {"caption": 1}
    packable = False  # retrieval reads each row's [RET] hidden state
    columns = (("texts",),)

    def __init__(self, caption_weight: float = 1.0, retrieval_weight: float = 1.0):
        self.caption_weight, self.retrieval_weight = caption_weight, retrieval_weight

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        ret = require_ret(ctx, self.name)
        caption = pick_text(sample, ctx, text_index)
        if caption is None:
            return None
        seq = SequenceBuilder(ctx).image().text(caption, train=True).tokens([ret], train=True)
        text = SequenceBuilder(ctx).text(caption).input_ids[: ctx.max_length - 1] + [ret]
        return self.finish(
            seq, sample, ctx, kind, ctx.pixel_values(sample), truncate=True, ret_input_ids=text
        )

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        cap_loss, metrics = lm_loss(model, batch)
        images = model.encode_images(batch["pixel_values"])
        texts = model.encode_texts(batch["ret_input_ids"], batch["ret_attention_mask"])
        ret_loss = info_nce(texts, images, model.heads())  # heads(): ZeRO-3-safe temperature
        loss = self.caption_weight * cap_loss + self.retrieval_weight * ret_loss
        with torch.no_grad():
            hits = (texts @ images.T).argmax(1) == torch.arange(len(texts), device=texts.device)
        metrics.update(
            loss=float(loss.detach()),
            caption_loss=float(cap_loss.detach()),
            retrieval_loss=float(ret_loss.detach()),
            retrieval_acc=float(hits.float().mean()),
        )
        return loss, metrics
