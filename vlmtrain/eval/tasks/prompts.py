"""What a checkpoint is asked, by the recipe it trained with: the task side of decoding.

Generic decoding (vlmtrain.eval.generation) never looks at a recipe's name; the choices made
per recipe live here, once: the caption recipe's own prompt and decoding settings, LLaVA stage
2's chat template, and "image then text" for every other recipe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DEFAULT_VQA_PROMPT = "Question: {question} Answer:"


def image_prompt(recipe, ctx, text: str = "") -> list[int]:
    """Prompt ids for an image (+ text): the caption recipe's own prompt (or its <s> and image
    slots, in its order, then the text), else image then text."""
    from vlmtrain.recipes.base import SequenceBuilder

    if recipe.name == "caption":
        return (recipe.start(ctx).text(text) if text else recipe.prompt(ctx)).input_ids
    seq = SequenceBuilder(ctx).image()
    return (seq.text(text) if text else seq).input_ids


def question_prompt(recipe, ctx, question: str, text: str | None = None) -> list[int]:
    """Prompt ids for an image and a question: LLaVA stage 2's chat prompt of the question,
    else `image_prompt` of `text` (default: the question itself)."""
    if recipe.name == "llava" and getattr(recipe, "stage", 1) == 2:
        return llava_prompt(recipe, ctx, question)
    return image_prompt(recipe, ctx, question if text is None else text)


def vqa_prompt(recipe, ctx, question: str, prompt: str | None) -> list[int]:
    """A VQA question's prompt ids: the caption recipe's question prompt (or `prompt`), else
    `question_prompt` with the question put into `prompt` (default DEFAULT_VQA_PROMPT)."""
    if recipe.name == "caption":
        return recipe.prompt(ctx, question, prompt).input_ids
    text = (prompt or DEFAULT_VQA_PROMPT).format(question=question)
    return question_prompt(recipe, ctx, question, text)


def llava_prompt(recipe, ctx, question: str) -> list[int]:
    """Stage-2 Vicuna prompt ids with the `<image>` mark expanded to the model's slots."""
    from vlmtrain.recipes.base import SequenceBuilder

    image_str = ctx.tokenizer.convert_ids_to_tokens(ctx.image_token_id)
    if image_str not in question:
        question = f"{image_str}\n{question}"
    ids = ctx.tokenizer(recipe.prompt_text(question), add_special_tokens=False)["input_ids"]
    if ids.count(ctx.image_token_id) != 1:
        from vlmdata.core.errors import DataError

        n = ids.count(ctx.image_token_id)
        raise DataError(f"question {question[:80]!r} holds {n} image marks {image_str!r}; a "
                        "LLaVA question has one (or none: it is added)")  # fmt: skip
    seq = SequenceBuilder(ctx)
    for t in ids:
        if t == ctx.image_token_id:
            seq.image()
        else:
            seq.tokens([t], train=False)
    return seq.input_ids


def decoding_options(recipe, **given: Any) -> dict[str, Any]:
    """Decoding settings: those given (not None), else the caption recipe's `decoding` and
    `image_attention`, else the defaults (greedy, 30 new tokens, causal)."""
    from vlmtrain.recipes.caption import DECODING

    base = {**DECODING, "image_attention": "causal"}
    if recipe.name == "caption":
        base = {**recipe.decoding, "image_attention": recipe.image_attention}
    return {k: (v if v is not None else base[k]) for k, v in given.items()}


def decode_images(model, tokenizer, prompts: Sequence[list[int]], pixels, opts: dict[str, Any],
                  *, batch_size: int, progress: bool) -> list[str]:  # fmt: skip
    """One text per prompt and image, decoded with `decoding_options`' settings (no sampling)."""
    from vlmtrain.eval.generation import decode_text, generate_tokens

    outs = generate_tokens(
        model, prompts, images=pixels, batch_size=batch_size, progress=progress,
        num_beams=opts["beams"], do_sample=False, max_new_tokens=opts["max_new_tokens"],
        length_penalty=opts["length_penalty"], image_attention=opts["image_attention"],
    )  # fmt: skip
    return [decode_text(tokenizer, o[0]) for o in outs]
