"""FROMAGe: a frozen LM and a frozen CLIP tower, tied together by trained linear maps.

The objective as FROMAGe's code defines it (kohjingyu/fromage: `main.py`'s train loop,
`models.py`'s two modes, `data.py`'s tokenization of "caption[RET]" to max_len):
  captioning:  <image>*n <s> CAPTION        next-token loss on <s> (from the image) and the
               caption; [RET] is in FROMAGe's input but masked and nothing after it is
               supervised, so it is left out here (the same loss). With probability
               `concat_captions_prob` (0.5) per step the batch's rows are joined in pairs,
               `<image1> <s> CAPTION1 <image2> <s> CAPTION2`, as FROMAGe's `concat_captions`.
  text-only:   <s> CAPTION [RET]            next-token loss on the caption and [RET], x
               retrieval_weight (FROMAGe's ret_loss_scale);
  contrastive: the projected [RET] hidden state of that same pass vs the projected CLIP image
               vector, symmetric InfoNCE over the batch (every rank's rows), x retrieval_weight.
After every optimizer step the [RET] input row is rescaled to the mean norm of the other rows
(`after_step`). Candidates per InfoNCE = data.batch_size x ranks: FROMAGe's 180 come from one
pass of 180 (`grad_accum` would split them; the shipped config does not).
Trainable (model.train): ["projector", "new_tokens", "heads"].
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from vlmdata.core.tokenizer import pad_id
from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.errors import ConfigError
from vlmtrain.recipes.base import (
    Example,
    Recipe,
    RecipeContext,
    Sample,
    pad_sequences,
    sample_texts,
)
from vlmtrain.recipes.losses import MAX_LOGIT_SCALE, causal_lm_loss, info_nce

__all__ = [
    "MAX_LOGIT_SCALE",
    "FromageRecipe",
    "concat_caption_pairs",
    "pick_text",
    "require_ret",
]


def require_ret(ctx: RecipeContext, recipe: str) -> int:
    if ctx.ret_token_id is None:
        raise ConfigError(f"recipe {recipe} needs model.ret_token (e.g. '[RET]')")
    return ctx.ret_token_id


def pick_text(sample: Sample, ctx: RecipeContext, text_index: int | None) -> str | None:
    """The caption at `text_index`, or one drawn by the context's rng; None when there is none."""
    texts = sample_texts(sample)
    if not texts:
        ctx.skipped["no_caption"] += 1
        return None
    return texts[ctx.rng_for(sample).randrange(len(texts)) if text_index is None else text_index]


def concat_caption_pairs(batch: dict[str, Any], pad: int) -> dict[str, Any]:
    """Rows 2i and 2i+1 joined into one (real tokens of the first, then of the second, then
    padding), as FROMAGe's `concat_captions`; an odd last row stays alone (FROMAGe asserts an
    even batch). Images keep their order, so placeholders still match them one to one."""
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    lengths = mask.sum(1).tolist()
    rows_ids, rows_labels = [], []
    for i in range(0, len(lengths), 2):
        pair = [j for j in (i, i + 1) if j < len(lengths)]
        rows_ids.append(sum((ids[j, : lengths[j]].tolist() for j in pair), []))
        rows_labels.append(sum((labels[j, : lengths[j]].tolist() for j in pair), []))
    out = dict(batch)
    out["input_ids"] = pad_sequences(rows_ids, pad).to(ids.device)
    out["labels"] = pad_sequences(rows_labels, IGNORE_INDEX).to(ids.device)
    out["attention_mask"] = pad_sequences([[1] * len(r) for r in rows_ids], 0).to(ids.device)
    return out


@dataclass(frozen=True)
class FromageOptions:
    """caption_weight / retrieval_weight: FROMAGe's cap_loss_scale / ret_loss_scale;
    concat_captions_prob: FROMAGe's --concat-captions-prob (0.5); ret_norm: rescale the
    [RET] row after every step; contrastive_batch: the InfoNCE candidates a step must have
    (FROMAGe: 180), an error otherwise; seed: with the batch's keys, the concatenation coin
    (no state: a resumed run tosses the coins the uninterrupted one tossed)."""

    caption_weight: float = 1.0
    retrieval_weight: float = 1.0
    concat_captions_prob: float = 0.5
    ret_norm: bool = True
    contrastive_batch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        p = self.concat_captions_prob
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"concat_captions_prob must be in [0, 1], got {p}")


class FromageRecipe(Recipe):
    name = "fromage"
    kinds = ("caption",)
    mix = {"caption": 1}
    packable = False  # retrieval reads each row's [RET] hidden state
    columns = (("texts",),)

    Options = FromageOptions

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        ret = require_ret(ctx, self.name)
        caption = pick_text(sample, ctx, text_index)
        if caption is None:
            return None
        bos = ctx.tokenizer.bos_token_id
        words = ctx.tokenizer(caption, add_special_tokens=False)["input_ids"]
        # FROMAGe: "<s> caption[RET]" truncated to max_len with [RET] kept as the last token
        text = ([] if bos is None else [bos]) + words
        text = text[: max(ctx.max_length - 1, 1)]
        image = [ctx.image_token_id] * ctx.num_image_tokens
        return {
            "key": sample["key"],
            "kind": kind,
            "input_ids": image + text,
            "labels": [IGNORE_INDEX] * len(image) + text,  # the image predicts <s>, as FROMAGe
            "pixel_values": ctx.pixel_values(sample),
            "pad_id": pad_id(ctx.tokenizer),
            "ret_input_ids": text + [ret],
            "ret_labels": text + [ret],  # position 0 predicts nothing (the loss shifts by one)
        }

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        concat = self.concat_coin(batch["key"])
        cap_batch = concat_caption_pairs(batch, pad_id(model.tokenizer)) if concat else batch
        cap_out = model(
            input_ids=cap_batch["input_ids"],
            attention_mask=cap_batch["attention_mask"],
            pixel_values=cap_batch["pixel_values"],
        )
        cap_loss, n_tokens = causal_lm_loss(cap_out.logits, cap_batch["labels"])
        ids, mask = batch["ret_input_ids"], batch["ret_attention_mask"]
        out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        text_loss, _ = causal_lm_loss(out.logits, batch["ret_labels"])
        texts = model.ret_embeddings(out.hidden_states[-1], ids, mask)
        candidates = len(texts) * _world()
        if self.contrastive_batch is not None and candidates != self.contrastive_batch:
            raise ConfigError(
                f"recipe.options.contrastive_batch is {self.contrastive_batch} but this InfoNCE "
                f"has {candidates} candidates (data.batch_size x ranks; grad_accum does not add "
                "candidates)"
            )
        images = model.encode_images(batch["pixel_values"])
        nce = info_nce(texts, images, model.heads())  # heads(): ZeRO-3-safe temperature
        ret_loss = text_loss + nce
        loss = self.caption_weight * cap_loss + self.retrieval_weight * ret_loss
        with torch.no_grad():
            hits = (texts @ images.T).argmax(1) == torch.arange(len(texts), device=texts.device)
        return loss, {
            "loss": float(loss.detach()),
            "tokens": float(n_tokens),
            "caption_loss": float(cap_loss.detach()),
            "text_loss": float(text_loss.detach()),
            "contrastive_loss": float(nce.detach()),
            "retrieval_loss": float(ret_loss.detach()),
            "retrieval_acc": float(hits.float().mean()),
            "retrieval_candidates": float(candidates),
            "concat_captions": float(concat),
        }

    def concat_coin(self, keys: list[str]) -> bool:
        """Whether this batch's captions are joined in pairs (probability concat_captions_prob),
        drawn from the seed and the batch's keys (a str seed hashes the same in every process)."""
        draw = random.Random(f"{self.seed}:" + "|".join(map(str, keys))).random()
        return draw < self.concat_captions_prob

    def after_step(self, engine) -> None:
        """FROMAGe's [RET] row rescale to the mean embedding norm (after every step)."""
        if self.ret_norm:
            from vlmtrain.model.tokens import rescale_to_mean_norm

            model = getattr(engine, "module", engine)
            optimizer = getattr(engine, "optimizer", None)
            rescale_to_mean_norm(model.embed_tokens, model.ret_token_id, optimizer)


def _world() -> int:
    from vlmtrain.recipes.losses import world_size

    return world_size()
