"""`vlmtrain eval vqa --submission`: EvalAI's VQAv2 results file for questions without public
annotations, and the caption recipe's decoding options (GIT mode included) at eval time."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main

# The shape of v2_OpenEnded_mscoco_test-dev2015_questions.json (visualqa.org): no annotations
# file exists for test-dev; EvalAI takes [{"question_id": int, "answer": str}] for them.
TEST_DEV = {
    "info": {"description": "VQA v2 test-dev (shape)", "version": "2.0", "year": 2017},
    "task_type": "Open-Ended",
    "data_type": "mscoco",
    "license": {"name": "CC BY 4.0", "url": "https://creativecommons.org/licenses/by/4.0/"},
    "data_subtype": "test-dev2015",
    "questions": [
        {"image_id": 105, "question": "how many?", "question_id": 1050001},
        {"image_id": 102, "question": "what is it?", "question_id": 1020000},
        {"image_id": 102, "question": "is it red?", "question_id": 1020002},
    ],
}


def test_submission_answers_every_unannotated_question_in_evalai_format(
    tiny_bundle, shards_dir, tmp_path
):
    from vlmtrain.eval.options import VqaOptions
    from vlmtrain.eval.tasks.vqa import answer_questions, write_submission

    (tmp_path / "q.json").write_text(json.dumps(TEST_DEV))
    bundle = tiny_bundle("caption", {"decoding": {"max_new_tokens": 3}})
    out = tmp_path / "sub" / "results.json"
    out.parent.mkdir()
    opts = VqaOptions(submission=out, data_dir=shards_dir, questions=tmp_path / "q.json")
    rep = write_submission(opts, model_bundle=bundle)
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and len(rows) == 3
    assert [r["question_id"] for r in rows] == [1020000, 1020002, 1050001]
    assert all(set(r) == {"question_id", "answer"} for r in rows)
    assert all(isinstance(r["question_id"], int) and isinstance(r["answer"], str) for r in rows)
    items = [(q["question_id"], q) for q in TEST_DEV["questions"]]
    direct = answer_questions(None, shards_dir, items, model_bundle=bundle)
    assert {r["question_id"]: r["answer"] for r in rows} == direct
    assert rep.task == "vqa-submission" and rep.value("questions_answered") == 3


def test_scoring_still_refuses_unannotated_questions(tmp_path):
    (tmp_path / "q.json").write_text(json.dumps(TEST_DEV))
    answers = [{"answer": "a", "answer_id": i} for i in range(1, 11)]
    anns = {"annotations": [{"question_id": 1020000, "answer_type": "other", "answers": answers}]}
    (tmp_path / "a.json").write_text(json.dumps(anns))
    preds = [{"question_id": q["question_id"], "answer": "a"} for q in TEST_DEV["questions"]]
    (tmp_path / "p.json").write_text(json.dumps(preds))
    args = ["eval", "vqa", "--predictions", str(tmp_path / "p.json"), "--questions",
            str(tmp_path / "q.json"), "--annotations", str(tmp_path / "a.json")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "without annotation" in res.output
    sub = ["eval", "vqa", "--submission", str(tmp_path / "s.json"), "--questions",
           str(tmp_path / "q.json"), "--annotations", str(tmp_path / "a.json"), "--data",
           str(tmp_path)]  # fmt: skip
    res = CliRunner().invoke(main, sub)
    assert res.exit_code == 2 and "scores nothing" in res.output
    assert not (tmp_path / "s.json").exists()


@pytest.mark.parametrize("attention", ["causal", "bidirectional"])
def test_caption_decoding_defaults_come_from_the_recipe(tiny_bundle, shards_dir, attention):
    from vlmtrain.eval.tasks.caption import caption_images, load_index

    options = {"image_attention": attention, "decoding": {"beams": 2, "max_new_tokens": 2,
                                                          "length_penalty": 0.6}}  # fmt: skip
    git = {"vision_feature": "tokens", "projector": "linear_ln", "num_visual_tokens": None}
    bundle = tiny_bundle("caption", options, **(git if attention != "causal" else {}))
    keys = load_index(shards_dir, "test")["key"].to_list()
    caps = caption_images(None, shards_dir, keys, model_bundle=bundle)
    assert sorted(caps) == sorted(keys)
    assert all(len(c.split()) <= 2 for c in caps.values())  # 2 byte-level BPE tokens at most
    longer = caption_images(None, shards_dir, keys, model_bundle=bundle, max_new_tokens=6)
    assert longer != caps  # the option given overrides the recipe's


def test_git_mode_answers_do_not_depend_on_batching(tiny_bundle, shards_dir):
    """Questions of different lengths share a left-padded batch: padding must change nothing."""
    from vlmtrain.eval.generation import recipe_of
    from vlmtrain.eval.tasks.prompts import image_prompt
    from vlmtrain.eval.tasks.vqa import answer_questions
    from vlmtrain.recipes import RecipeContext

    options = {"image_attention": "bidirectional", "decoding": {"beams": 2, "max_new_tokens": 3}}
    bundle = tiny_bundle("caption", options, vision_feature="tokens", projector="linear_ln",
                         num_visual_tokens=None)  # fmt: skip
    questions = ["how many?", "what colour is the thing on the left of the red circle?", "red?"]
    items = [(i, {"image_id": 102 + i, "question": q}) for i, q in enumerate(questions)]
    lengths = {len(bundle.tokenizer(q)["input_ids"]) for q in questions}
    assert len(lengths) == 3
    together = answer_questions(None, shards_dir, items, model_bundle=bundle, batch_size=3)
    alone = answer_questions(None, shards_dir, items, model_bundle=bundle, batch_size=1)
    assert together == alone
    ctx = RecipeContext.for_model(bundle.model)
    recipe_prompt = image_prompt(recipe_of(bundle.cfg), ctx, "hi")
    n = bundle.model.num_image_tokens
    assert recipe_prompt[:n] == [bundle.model.image_token_id] * n  # GIT's layout: images first
    assert recipe_prompt[n] == bundle.tokenizer.bos_token_id


def test_submission_through_the_cli_from_an_exported_checkpoint(tiny_bundle, shards_dir, tmp_path):
    from vlmtrain.eval.tasks.vqa import answer_questions
    from vlmtrain.train.checkpoint import export_names, write_export

    bundle = tiny_bundle("caption", {"decoding": {"max_new_tokens": 3}})
    model, tok, cfg = bundle.model, bundle.tokenizer, bundle.cfg
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if n in names}
    export = write_export(tmp_path / "export", state, cfg, tok, {"step": 1})
    (tmp_path / "q.json").write_text(json.dumps(TEST_DEV))
    out = tmp_path / "results.json"
    args = ["eval", "vqa", "--checkpoint", str(export), "--data", str(shards_dir),
            "--questions", str(tmp_path / "q.json"), "--submission", str(out), "--device", "cpu",
            "-q"]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = json.loads(out.read_text())
    items = [(q["question_id"], q) for q in TEST_DEV["questions"]]
    want = answer_questions(None, shards_dir, items, model_bundle=bundle)
    assert {r["question_id"]: r["answer"] for r in rows} == want and len(rows) == 3


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_eval_caption_cli_decodes_a_git_checkpoint_as_its_recipe_says(
    tiny_bundle, shards_dir, tmp_path
):
    from vlmtrain.eval.tasks.caption import caption_images, load_index
    from vlmtrain.train.checkpoint import export_names, write_export

    options = {"image_attention": "bidirectional", "decoding": {"beams": 2, "max_new_tokens": 4,
                                                                "length_penalty": 0.6}}  # fmt: skip
    bundle = tiny_bundle("caption", options, vision_feature="tokens", projector="linear_ln",
                         num_visual_tokens=None)  # fmt: skip
    model, tok, cfg = bundle.model, bundle.tokenizer, bundle.cfg
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if n in names}
    export = write_export(tmp_path / "export", state, cfg, tok, {"step": 1})
    keys = load_index(shards_dir, "test")["key"].to_list()
    for extra, kwargs in (([], {}), (["--image-attention", "causal", "--beams", "1"],
                                     {"image_attention": "causal", "beams": 1})):  # fmt: skip
        saved = tmp_path / f"caps{len(extra)}.json"
        args = ["eval", "caption", "--checkpoint", str(export), "--data", str(shards_dir),
                "--split", "test", "--metrics", "BLEU-1", "--save-predictions", str(saved),
                "--device", "cpu", "-q", *extra]  # fmt: skip
        res = CliRunner().invoke(main, args)
        assert res.exit_code == 0, res.output
        got = {r["key"]: r["caption"] for r in json.loads(saved.read_text())}
        assert got == caption_images(None, shards_dir, keys, model_bundle=bundle, **kwargs)
    first, second = (json.loads((tmp_path / f"caps{n}.json").read_text()) for n in (0, 4))
    assert first != second  # the options reached decoding
