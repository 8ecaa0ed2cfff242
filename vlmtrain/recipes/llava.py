"""LLaVA / LLaVAR: stage 1 aligns the projector on captions, stage 2 instruction-tunes.

  stage 1 (plain):  <s> <image>*n | CAPTION </s>
  stage 2 (chat):   <s> SYS USER: <image>*n\\nQ1 ASSISTANT:| A1</s>|USER: Q2 ASSISTANT:| A2</s>|
Only the answers (with their </s>) are supervised; the system prompt and human turns are masked.
Model stages (model.train): stage 1 ["projector"], stage 2 ["projector", "lm"].
The conversation comes from the manifest's `conversations` column (JSON text, LLaVA format).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmdata.core.errors import DataError
from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.errors import ConfigError
from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import pick_text
from vlmtrain.recipes.llava_template import SYSTEM, answer_mask, parse_conversation, render

PLAIN, CONVERSATION = "plain", "conversation"


@dataclass(frozen=True)
class LlavaOptions:
    stage: int = 2
    system: str = SYSTEM

    def __post_init__(self) -> None:
        if self.stage not in (1, 2):
            raise ConfigError(f"llava stage must be 1 or 2, got {self.stage!r}")


class LlavaRecipe(Recipe):
    name = "llava"

    Options = LlavaOptions

    def __init__(self, options: LlavaOptions | None = None, pack_length: int | None = None):
        super().__init__(options, pack_length)
        stage = self.stage
        kind = PLAIN if stage == 1 else CONVERSATION
        self.kinds, self.mix = (kind,), {kind: 1}
        # stage 1 reads a caption (LCS-558K's one-turn chats, or texts); stage 2 a conversation
        self.columns = (("conversations", "texts"),) if stage == 1 else (("conversations",),)

    def make(self, sample: Sample, ctx: RecipeContext, kind: str, **_) -> Example | None:
        if kind == PLAIN:
            return self._plain(sample, ctx)
        return self._conversation(sample, ctx)

    def _plain(self, sample: Sample, ctx: RecipeContext) -> Example | None:
        raw = (sample.get("meta") or {}).get("conversations")
        caption = None
        if raw:  # LLaVA's pretraining data: the caption is the answer of a one-turn chat
            caption = parse_conversation(raw, sample["key"])[1][1]
        caption = caption or pick_text(sample, ctx, None)
        if caption is None:
            return None
        seq = SequenceBuilder(ctx).image().text(caption, train=True).eos(train=True)
        return self.finish(seq, sample, ctx, PLAIN, ctx.pixel_values(sample), truncate=True)

    def prompt_text(self, question: str) -> str:
        """The stage-2 generation prompt for one question (with the `<image>` marker)."""
        return render([("USER", question), ("ASSISTANT", "")], "", self.system)[0][:-1]

    def _conversation(self, sample: Sample, ctx: RecipeContext) -> Example | None:
        key = sample["key"]
        raw = (sample.get("meta") or {}).get("conversations")
        if not raw:
            ctx.skipped["no_conversation"] += 1
            return None
        pairs = parse_conversation(raw, key)
        image_str = ctx.tokenizer.convert_ids_to_tokens(ctx.image_token_id)
        if not any(image_str in text for _, text in pairs):
            pairs[0] = (pairs[0][0], f"{image_str}\n{pairs[0][1]}")
        text, spans = render(pairs, ctx.tokenizer.eos_token, self.system)
        ids, labels = tokenize_with_mask(ctx, text, spans, key)
        if ids.count(ctx.image_token_id) != 1:
            raise DataError(f"sample {key}: {ids.count(ctx.image_token_id)} <image> marks, 1 image")
        seq = SequenceBuilder(ctx)
        for tok, label in zip(ids, labels, strict=True):
            if tok == ctx.image_token_id:
                seq.image()
            else:
                seq.tokens([tok], train=label != IGNORE_INDEX)
        return self.finish(seq, sample, ctx, CONVERSATION, ctx.pixel_values(sample), truncate=True)


def tokenize_with_mask(
    ctx: RecipeContext, text: str, spans: list[tuple[int, int]], key: str
) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and labels (-100 outside the answer spans)."""
    enc = ctx.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    mask = answer_mask(offsets, spans, text, key)
    return ids, [t if m else IGNORE_INDEX for t, m in zip(ids, mask, strict=True)]
