"""Captioning (ClipCap / GIT style): image prefix tokens -> LM, loss on the caption.

  <s> <image>*n [PROMPT] | CAPTION </s>
With model.vision_feature "pooled", projector "mlp2x_gelu" and num_visual_tokens 10 this is
ClipCap's MLP mapping of the CLIP embedding to a 10-token prefix; with patch features it is a
GIT/LLaVA-style captioner. `prompt()` is the decoding prompt for evaluation (CIDEr, BLEU).

VQA fine-tuning on the same recipe (option `question_prompt`, e.g. "Question: {question}
Answer:", the prompt `vlmtrain eval vqa` decodes with): a record with a `question` (VQAv2
records, one per question, several per image) is prompted with it and supervised on its answer
(`texts`: VQAv2's multiple_choice_answer):
  <s> <image>*n "Question: Q Answer:" | ANSWER </s>
"""

from __future__ import annotations

from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import pick_text


class CaptionRecipe(Recipe):
    name = "caption"
    kinds = ("caption",)
    mix = {"caption": 1}
    columns = (("texts",),)

    def __init__(self, prompt: str = "", question_prompt: str = ""):
        if question_prompt and "{question}" not in question_prompt:
            raise ValueError("caption recipe: question_prompt needs a {question} field")
        self.prompt_text, self.question_prompt = prompt, question_prompt

    def prompt(self, ctx: RecipeContext, question: str | None = None) -> SequenceBuilder:
        """The unsupervised part: bos, image placeholders, the prompt text (the question's
        prompt for a VQA record)."""
        seq = SequenceBuilder(ctx).image()
        if question and self.question_prompt:
            text = self.question_prompt.format(question=question)
        else:
            text = self.prompt_text
        return seq.text(text) if text else seq

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        caption = pick_text(sample, ctx, text_index)
        if caption is None:
            return None
        question = (sample.get("meta") or {}).get("question")
        seq = self.prompt(ctx, question).text(caption, train=True).eos(train=True)
        return self.finish(seq, sample, ctx, kind, ctx.pixel_values(sample), truncate=True)
