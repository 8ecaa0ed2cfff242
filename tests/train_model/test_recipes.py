"""fromage, caption, llava, autover: label masks token by token, mismatch check, falling loss."""

from __future__ import annotations

import json

import pytest
import torch

from vlmdata.core.errors import DataError
from vlmtrain.recipes import RecipeContext, get_recipe
from vlmtrain.recipes.llava_template import SYSTEM

M = -100
CONV = [
    {"from": "human", "value": "<image>\nwhat is shown here?"},
    {"from": "gpt", "value": "a red circle"},
    {"from": "human", "value": "describe the image."},
    {"from": "gpt", "value": "It shows a red circle on a blue background."},
]


def enc(tok, text):
    return tok(text, add_special_tokens=False)["input_ids"]


def fromage_model(build):
    return build(
        vision_feature="pooled",
        projector="linear",
        num_visual_tokens=1,
        new_tokens=["[RET]"],
        ret_token="[RET]",
        retrieval_dim=16,
        train=["projector", "new_tokens", "heads"],
    )


def autover_model(build, train=("projector", "lm", "heads")):
    return build(new_tokens=["<ret>"], ret_token="<ret>", retrieval_dim=16, train=list(train))


def test_caption_masks_and_truncation(build, tokenizer, samples):
    model = build(vision_feature="pooled", num_visual_tokens=3)
    recipe = get_recipe("caption", prompt="a photo of")
    s = dict(samples[2], meta={k: v for k, v in samples[2]["meta"].items() if k != "question"})
    ex = recipe.make(s, RecipeContext.for_model(model), "caption", text_index=0)
    cap = enc(tokenizer, s["meta"]["texts"][0])
    prompt = [tokenizer.bos_token_id] + [model.image_token_id] * 3 + enc(tokenizer, "a photo of")
    assert ex["input_ids"] == prompt + cap + [tokenizer.eos_token_id]
    assert ex["labels"] == [M] * len(prompt) + cap + [tokenizer.eos_token_id]
    short = RecipeContext.for_model(model, max_length=len(prompt) + 2)
    cut = recipe.make(s, short, "caption", text_index=0)
    assert cut["input_ids"] == prompt + cap[:2] and cut["labels"] == [M] * len(prompt) + cap[:2]
    tiny = RecipeContext.for_model(model, max_length=3)  # would cut the image: skipped
    assert recipe.make(s, tiny, "caption") is None and tiny.skipped == {"too_long": 1}


def test_llava_stage2_masks_human_turns(build, tokenizer, samples):
    model = build()
    s = dict(samples[0], meta=dict(samples[0]["meta"], conversations=json.dumps(CONV)))
    ex = get_recipe("llava", stage=2).make(s, RecipeContext.for_model(model), "conversation")
    t = lambda x: enc(tokenizer, x)  # noqa: E731
    eos, img = tokenizer.eos_token_id, [model.image_token_id] * model.num_image_tokens
    pieces = [  # (tokens, supervised) from the template pieces, tokenized apart
        ([tokenizer.bos_token_id] + t(SYSTEM + " USER: ") + img, False),
        (t("\nwhat is shown here? ASSISTANT:"), False),
        (t(" a red circle") + [eos], True),
        (t("USER: describe the image. ASSISTANT:"), False),
        (t(" It shows a red circle on a blue background.") + [eos], True),
    ]
    assert ex["input_ids"] == [x for p, _ in pieces for x in p]
    assert ex["labels"] == [x if sup else M for p, sup in pieces for x in p]


def test_llava_stage1_plain_uses_the_answer(build, tokenizer, samples):
    model = build(train=["projector"])
    conv = [{"from": "human", "value": "<image>\n"}, {"from": "gpt", "value": "a calm lake"}]
    s = dict(samples[4], meta=dict(samples[4]["meta"], conversations=json.dumps(conv)))
    ex = get_recipe("llava", stage=1).make(s, RecipeContext.for_model(model), "plain")
    prompt = [tokenizer.bos_token_id] + [model.image_token_id] * model.num_image_tokens
    target = enc(tokenizer, "a calm lake") + [tokenizer.eos_token_id]
    assert ex["input_ids"] == prompt + target
    assert ex["labels"] == [M] * len(prompt) + target


def _merging_tokenizer(tmp_path):
    """A BPE without a pre-tokenizer: its merges cross the 'ASSISTANT:' / answer boundary."""
    from tokenizers import Tokenizer, models, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer = trainers.BpeTrainer(
        vocab_size=200,
        special_tokens=["<s>", "</s>", "<pad>", "<unk>", "<image>"],
        show_progress=False,
    )
    tok.train_from_iterator(["USER: hi ASSISTANT: yes yes"] * 50, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
    )


def test_llava_tokenization_mismatch_raises(tmp_path, samples):
    tok = _merging_tokenizer(tmp_path)
    ctx = RecipeContext(
        tokenizer=tok,
        image_transform=None,
        num_image_tokens=2,
        image_token_id=tok.convert_tokens_to_ids("<image>"),
    )
    conv = [{"from": "human", "value": "<image>\nhi"}, {"from": "gpt", "value": "yes yes"}]
    s = dict(samples[3], meta={"conversations": json.dumps(conv)})
    with pytest.raises(DataError, match=r"sample s003: tokenization mismatch"):
        get_recipe("llava", stage=2).make(s, ctx, "conversation")


def test_llava_bad_conversations_raise(build, samples):
    ctx = RecipeContext.for_model(build())
    recipe = get_recipe("llava", stage=2)
    for conv, msg in [
        ("not json", "bad conversations"),
        (json.dumps(CONV[:1]), "no final assistant"),
        (json.dumps([CONV[0], CONV[2], CONV[1]]), "roles must alternate"),
        (json.dumps([CONV[0], CONV[1], dict(CONV[0]), CONV[3]]), "2 <image> marks"),
    ]:
        s = dict(samples[0], meta={"conversations": conv})
        with pytest.raises(DataError, match=f"sample s000: .*{msg}"):
            recipe.make(s, ctx, "conversation")


def test_autover_masks(build, tokenizer, samples):
    from vlmdata.ids.tokens import identifier_sequence

    model = autover_model(build)
    recipe = get_recipe("autover", contrastive=True)
    s = samples[1]
    ex = recipe.make(s, RecipeContext.for_model(model), "entity")
    ret = model.ret_token_id
    prompt = (
        [tokenizer.bos_token_id]
        + [model.image_token_id] * model.num_image_tokens
        + enc(tokenizer, "question: what is shown here? answer:")
    )
    name = identifier_sequence(tokenizer, s["meta"]["entity_name"], prefix="", eos=True)
    assert ex["input_ids"] == prompt + [ret] + name
    assert ex["labels"] == [M] * len(prompt) + [ret] + name
    assert ex["entity_input_ids"] == [tokenizer.bos_token_id] + enc(
        tokenizer, "entity: " + s["meta"]["entity_name"]
    ) + [ret]
    assert recipe.prompt(RecipeContext.for_model(model), "what is shown here?").input_ids == (
        prompt + [ret]
    )


def _train(model, recipe, ctx, samples, steps, lr):
    items = [e for s in samples for e in recipe.examples(s, ctx)]
    batch = recipe.collate(items)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss, metrics = recipe.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics)
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fromage", "caption", "llava1", "llava2", "autover"])
def test_recipe_loss_falls(name, build, samples):
    torch.manual_seed(0)
    if name == "fromage":
        model, recipe = fromage_model(build), get_recipe("fromage")
    elif name == "caption":
        model = build(vision_feature="pooled", num_visual_tokens=3, train=["projector", "lm"])
        recipe = get_recipe("caption")
    elif name == "llava1":
        model, recipe = build(train=["projector"]), get_recipe("llava", stage=1)
    elif name == "llava2":
        model, recipe = build(train=["projector", "lm"]), get_recipe("llava", stage=2)
        samples = [dict(s, meta=dict(s["meta"], conversations=json.dumps(CONV))) for s in samples]
    else:
        # the project's InfoNCE variant: these samples repeat entities, which AutoVER's objective
        # skips (tested in test_autover_objective.py)
        model = autover_model(build)
        recipe = get_recipe("autover", contrastive=True, objective="infonce")
    frozen_lm = "lm" not in model.trainable_parts  # only the projector/new rows/heads learn
    lr = 3e-2 if frozen_lm else 3e-3
    hist = _train(model, recipe, RecipeContext.for_model(model), samples, steps=10, lr=lr)
    first, last = hist[0], hist[-1]
    # a frozen random LM leaves the projector little to fit: a smaller, still steady fall
    assert last["loss"] < (0.98 if frozen_lm else 0.8) * first["loss"], [h["loss"] for h in hist]
    if name == "fromage":
        assert last["retrieval_loss"] < first["retrieval_loss"]
        assert last["caption_loss"] < first["caption_loss"]
    if name == "autover":
        assert last["contrastive_loss"] < first["contrastive_loss"]
