"""Captioning: image tokens -> LM, loss on the caption. Two shapes, by option:

ClipCap / the generative-image-to-text seed (image_attention "causal", the default):
  <s> <image>*n [PROMPT] | CAPTION </s>
one causal sequence; with vision_feature "pooled" and projector "mlp_tanh" the n image tokens
are the seed's MLP prefix (5 tokens), with "grid" they are its projected grid features.

`images_first: true` puts the image tokens before <s>, as the seed's `torch.cat([prefix,
tokens])` does (default: only in GIT mode).

GIT (image_attention "bidirectional"), laid out as GIT's `[image][CLS text SEP]`:
  <image>*n <s> [PROMPT] | CAPTION </s>
image tokens attend to each other both ways, text attends to every image token and causally to
text (vlmtrain.model.attention). GIT's other training choices are options too: label_smoothing
0.1 (GIT's KL form, recipes/losses.py) and max_text_tokens 40 (GIT's `max_text_len`: when prompt +
caption exceed it, the LAST 38 of those tokens are kept, between <s> and </s>: eos always stays).

VQA on the same recipe: a record with a `question` (VQAv2: one record per question, `texts` its
multiple_choice_answer) is prompted with `question_prompt` (default DEFAULT_QUESTION_PROMPT, the
prompt `vlmtrain eval vqa` decodes with) and supervised on its answer:
  <s> <image>*n "Question: Q Answer:" | ANSWER </s>
A question is never dropped: an empty or {question}-less question_prompt is refused.

`decoding` (beams, length_penalty, max_new_tokens) holds the defaults `vlmtrain eval caption`
and `eval vqa` decode with, so a config carries its model's decoding (the seed: beam 3;
GIT: beam 4, length penalty 0.6).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmtrain.errors import ConfigError
from vlmtrain.model.attention import IMAGE_ATTENTION
from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import pick_text

DEFAULT_QUESTION_PROMPT = "Question: {question} Answer:"
DECODING = {"beams": 1, "length_penalty": 1.0, "max_new_tokens": 30}


@dataclass(frozen=True)
class CaptionOptions:
    prompt: str = ""
    question_prompt: str = DEFAULT_QUESTION_PROMPT
    image_attention: str = "causal"
    label_smoothing: float = 0.0
    max_text_tokens: int | None = None
    decoding: dict[str, Any] | None = None  # over DECODING: what eval decodes with
    images_first: bool | None = None  # None: first when image_attention is bidirectional (GIT)

    def __post_init__(self) -> None:
        if "{question}" not in (self.question_prompt or ""):
            raise ConfigError(
                "caption recipe: question_prompt needs a {question} field (VQA records would "
                f"train without their question); the default is {DEFAULT_QUESTION_PROMPT!r}"
            )
        if self.image_attention not in IMAGE_ATTENTION:
            raise ConfigError(f"caption recipe: image_attention must be one of {IMAGE_ATTENTION}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError("caption recipe: label_smoothing must be in [0, 1)")
        if self.max_text_tokens is not None and self.max_text_tokens < 3:
            raise ConfigError("caption recipe: max_text_tokens must be at least 3 (<s> x </s>)")
        unknown = sorted(set(self.decoding or {}) - set(DECODING))
        if unknown:
            raise ConfigError(f"caption recipe: decoding has unknown key(s) {unknown}")


def git_text_cap(prompt: list[int], target: list[int], cap: int) -> tuple[list[int], list[int]]:
    """GIT's text cap (its train/inference `max_text_len` handling): each part cut to `cap`, and
    when prompt + target exceed `cap`, only their last cap - 2 tokens kept (bos and eos then
    make the text `cap` long)."""
    prompt, target = prompt[:cap], target[:cap]
    if len(prompt) + len(target) <= cap:
        return prompt, target
    drop = len(prompt) + len(target) - (cap - 2)
    from_prompt = min(drop, len(prompt))
    return prompt[from_prompt:], target[drop - from_prompt :]


class CaptionRecipe(Recipe):
    name = "caption"
    kinds = ("caption",)
    mix = {"caption": 1}
    columns = (("texts",),)

    Options = CaptionOptions

    def __init__(self, options: CaptionOptions | None = None, pack_length: int | None = None):
        super().__init__(options, pack_length)
        o = self.options
        self.prompt_text = o.prompt  # `prompt` is a method
        bidirectional = o.image_attention == "bidirectional"
        self.images_first = bidirectional if o.images_first is None else o.images_first
        self.decoding = {**DECODING, **(o.decoding or {})}
        self.packable = o.image_attention == "causal"  # packed rows take only the causal mask
        self.unpackable_reason = "GIT's image attention is not a packed row's mask"

    def start(self, ctx: RecipeContext) -> SequenceBuilder:
        """<s> and the image slots, in the recipe's order."""
        if not self.images_first:
            return SequenceBuilder(ctx).image()
        seq = SequenceBuilder(ctx, bos=False).image()
        bos = ctx.tokenizer.bos_token_id
        return seq.tokens([bos], train=False) if bos is not None else seq

    def prompt_ids(
        self, ctx: RecipeContext, question: str | None = None, question_prompt: str | None = None
    ) -> list[int]:
        """The prompt text's tokens: the question's prompt for a VQA record, else `prompt`."""
        if question:
            text = (question_prompt or self.question_prompt).format(question=question)
        else:
            text = self.prompt_text
        return ctx.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def prompt(
        self, ctx: RecipeContext, question: str | None = None, question_prompt: str | None = None
    ) -> SequenceBuilder:
        """The unsupervised part decoding starts from (bos, image slots, prompt text)."""
        ids = self.prompt_ids(ctx, question, question_prompt)
        cap = self.max_text_tokens
        if cap is not None and len(ids) > cap - 2:  # GIT's inference keeps the last cap - 2
            ids = ids[len(ids) - (cap - 2) :]
        return self.start(ctx).tokens(ids, train=False)

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        caption = pick_text(sample, ctx, text_index)
        if caption is None:
            return None
        question = (sample.get("meta") or {}).get("question")
        prompt = self.prompt_ids(ctx, question)
        target = ctx.tokenizer(caption, add_special_tokens=False)["input_ids"]
        if self.max_text_tokens is not None:
            prompt, target = git_text_cap(prompt, target, self.max_text_tokens)
        seq = self.start(ctx).tokens(prompt, train=False).tokens(target, train=True)
        seq.eos(train=True)
        return self.finish(seq, sample, ctx, kind, ctx.pixel_values(sample), truncate=True)

    def loss(self, model, batch: dict[str, Any]):
        """Next-token loss (label-smoothed when set) under the recipe's image attention."""
        from vlmtrain.recipes.losses import causal_lm_loss, smoothed_lm_loss

        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch.get("pixel_values"),
            position_ids=batch.get("position_ids"),
            image_attention=self.image_attention,
        )
        if self.label_smoothing:
            loss, n = smoothed_lm_loss(out.logits, batch["labels"], self.label_smoothing)
        else:
            loss, n = causal_lm_loss(out.logits, batch["labels"])
        return loss, {"loss": float(loss.detach()), "tokens": float(n)}
