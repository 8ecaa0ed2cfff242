"""Bad input to `vlmtrain eval` that used to surface as a crash (a bare ValueError: traceback,
exit 3) is a one-line error naming the file (and line) and the reason, exit 2.

Fixture shapes: OVEN references as published by edchengg/oven_eval ({data_id, entity_id,
data_split}); the export as `vlmtrain launch` writes it (vlmtrain.train.checkpoint.write_export).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main
from tests.eval.conftest import TINY_LM, TINY_VISION


def _eval(*args: str):
    return CliRunner().invoke(main, ["eval", *map(str, args)])


def test_an_oven_split_without_seen_or_unseen_names_the_file_and_line(tmp_path):
    refs, preds = tmp_path / "oven_query_val.jsonl", tmp_path / "preds.jsonl"
    rows = [{"data_id": "d0", "entity_id": "Q1", "data_split": "query_val_seen"},
            {"data_id": "d1", "entity_id": "Q2", "data_split": "query_val"}]  # fmt: skip
    refs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds.write_text(json.dumps({"data_id": "d0", "pred_entity_id": "Q1"}) + "\n")
    res = _eval("oven", "--references", refs, "--predictions", preds)
    assert res.exit_code == 2, res.output
    assert f"{refs}:2: data_split 'query_val' is neither seen nor unseen" in res.output
    assert "Traceback" not in res.output


def test_more_returns_than_beams_is_refused_before_any_file_is_read(tmp_path):
    """Beam search keeps `beams` sequences: --returns 11 of 10 beams is a usage mistake, refused
    before the trie (here not a trie at all) or the model is opened."""
    junk = tmp_path / "junk.json"
    junk.write_text("[]")
    res = _eval("retrieval-generative", "--checkpoint", tmp_path, "--data", tmp_path,
                "--trie", junk, "--ids", junk, "--returns", "11")  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "--returns 11 is more than --beams 10" in res.output


@pytest.mark.parametrize(
    ("model", "reason"),
    [({"projector": "mlp9x"}, "model.projector must be one of"),
     ({"lm_config": None}, "model needs `lm` (a local path) or `lm_config`"),
     ({"projector": "linear_ln"}, "model.projector linear_ln normalises each token")],
)  # fmt: skip
def test_an_export_whose_config_cannot_build_its_model(tokenizer_dir, shards_dir, tmp_path,
                                                       model, reason):  # fmt: skip
    """An export's config.yaml (edited, or from another version) that no model can be built
    from: exit 2 naming that config.yaml and the key, not a traceback."""
    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.model.vlm import ModelConfig
    from vlmtrain.train.checkpoint import write_export
    from vlmtrain.train.config import RecipeConfig, TrainConfig

    fields = dict(vision="tiny", vision_config=TINY_VISION, lm_config=dict(TINY_LM),
                  vision_feature="pooled", num_visual_tokens=1, projector="linear")  # fmt: skip
    cfg = TrainConfig(model=ModelConfig(**{**fields, **model}), recipe=RecipeConfig("fromage"))
    export = write_export(tmp_path / "export", {}, cfg, load_tokenizer(tokenizer_dir), {})
    res = _eval(
        "retrieval-embedding", "--checkpoint", export, "--data", shards_dir, "--split", "test"
    )
    assert res.exit_code == 2, res.output
    assert f"{export / 'config.yaml'}: " in res.output and reason in res.output
    assert "Traceback" not in res.output


@pytest.mark.parametrize(
    ("task", "flag", "value"),
    [("text-vqa", "--limit", "0"), ("text-vqa", "--limit", "-1"),
     ("text-vqa", "--batch-size", "0"), ("text-vqa", "--max-new-tokens", "0"),
     ("vqa", "--limit", "0"), ("retrieval-generative", "--beams", "0")],
)  # fmt: skip
def test_a_count_below_one_is_a_usage_error(tmp_path, task, flag, value):
    """--limit 0 scored nothing (text-vqa: a ValueError crash; vqa: accuracy 0 of 0) and
    --limit -1 sliced off the last question; counts are now checked at parse time."""
    f = tmp_path / "f.json"
    f.write_text("{}")
    need = {"text-vqa": ["--dataset", "textvqa", "--annotations", f, "--predictions", f],
            "vqa": ["--questions", f, "--annotations", f, "--predictions", f],
            "retrieval-generative": ["--checkpoint", tmp_path, "--data", tmp_path, "--trie", f,
                                     "--ids", f]}[task]  # fmt: skip
    res = _eval(task, *need, flag, value)
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '{flag}': {value} is not in the range x>=1" in res.output


def test_a_question_holding_the_image_placeholder_is_named(grace_export, shards_dir, tmp_path):
    """A question whose text holds `<image>` itself gave the model two image slots for one image:
    a ValueError deep in the forward pass (exit 3). Now: exit 2 naming the text."""
    qs = {"questions": [{"question_id": 7, "image_id": 102, "question": "is <image> a dog?"}]}
    answers = [{"answer": "no", "answer_id": i} for i in range(1, 11)]
    anns = {"annotations": [{"question_id": 7, "answer_type": "yes/no", "question_type": "is",
                             "answers": answers}]}  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps(qs))
    (tmp_path / "a.json").write_text(json.dumps(anns))
    res = _eval("vqa", "--checkpoint", grace_export, "--data", shards_dir, "--questions",
                tmp_path / "q.json", "--annotations", tmp_path / "a.json", "-q")  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "'Question: is <image> a dog? Answer:' holds the image placeholder '<image>'" in (
        res.output
    )


def test_a_llava_question_with_two_image_marks_is_refused(tiny_bundle):
    """LLaVA questions carry one `<image>` mark (or none, then it is added); two would ask for
    two images of a one-image question."""
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.generation import recipe_of
    from vlmtrain.eval.tasks.prompts import llava_prompt
    from vlmtrain.recipes.base import RecipeContext

    bundle = tiny_bundle("llava", {"stage": 2})
    recipe, ctx = recipe_of(bundle.cfg), RecipeContext.for_model(bundle.model)
    assert llava_prompt(recipe, ctx, "<image>\nwhat colour?").count(ctx.image_token_id) == 1
    with pytest.raises(DataError, match="holds 2 image marks '<image>'"):
        llava_prompt(recipe, ctx, "<image>\nwhat colour is <image>?")
