"""Captioning (ClipCap / GIT style): image prefix tokens -> LM, loss on the caption.

  <s> <image>*n [PROMPT] | CAPTION </s>
With model.vision_feature "pooled", projector "mlp2x_gelu" and num_visual_tokens 10 this is
ClipCap's MLP mapping of the CLIP embedding to a 10-token prefix; with patch features it is a
GIT/LLaVA-style captioner. `prompt()` is the decoding prompt for evaluation (CIDEr, BLEU).
"""

from __future__ import annotations

from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import pick_text


class CaptionRecipe(Recipe):
    name = "caption"
    kinds = ("caption",)
    mix = {"caption": 1}

    def __init__(self, prompt: str = ""):
        self.prompt_text = prompt

    def prompt(self, ctx: RecipeContext) -> SequenceBuilder:
        """The unsupervised part: bos, image placeholders, optional prompt text."""
        seq = SequenceBuilder(ctx).image()
        return seq.text(self.prompt_text) if self.prompt_text else seq

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        caption = pick_text(sample, ctx, text_index)
        if caption is None:
            return None
        seq = self.prompt(ctx).text(caption, train=True).eos(train=True)
        return self.finish(seq, sample, ctx, kind, ctx.pixel_values(sample), truncate=True)
