"""`vlmtrain eval` from prediction files: VQA, OVEN and caption reports through the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main
from vlmtrain.eval.report import load_report


def _run(args):
    return CliRunner().invoke(main, ["eval", *args])


def _vqa_files(tmp_path, answers):
    questions = {"questions": [{"question_id": q, "image_id": 1, "question": "?"} for q in (1, 2)]}
    annotations = {
        "annotations": [
            {"question_id": 1, "answer_type": "yes/no", "question_type": "is",
             "answers": [{"answer": "yes", "answer_id": i} for i in range(10)]},
            {"question_id": 2, "answer_type": "number", "question_type": "how many",
             "answers": [{"answer": a, "answer_id": i}
                         for i, a in enumerate(["2", "2"] + ["3"] * 8)]},
        ]
    }  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps(questions))
    (tmp_path / "a.json").write_text(json.dumps(annotations))
    (tmp_path / "p.json").write_text(json.dumps(answers))
    return ["--questions", str(tmp_path / "q.json"), "--annotations", str(tmp_path / "a.json"),
            "--predictions", str(tmp_path / "p.json")]  # fmt: skip


def test_vqa_report_and_byte_identical_rerun(tmp_path):
    args = _vqa_files(tmp_path, [{"question_id": 1, "answer": "Yes"},
                                 {"question_id": 2, "answer": "two"}])  # fmt: skip
    out = tmp_path / "vqa.json"
    res = _run(["vqa", *args, "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "accuracy/number" in res.output
    rep = load_report(out)
    assert rep["task"] == "vqa" and rep["config"]["vqa_script"] == "2021"
    # 2021: unanimous "yes" humans meet the merely stripped "Yes" (0); "two" vs disagreeing
    # humans: both sides normalised, "2" twice -> 0.6
    assert rep["metrics"] == [
        {"metric": "accuracy", "value": pytest.approx(0.3), "count": 2},
        {"metric": "accuracy/number", "value": pytest.approx(0.6), "count": 1},
        {"metric": "accuracy/yes/no", "value": 0.0, "count": 1},
    ]
    first = out.read_bytes()
    assert _run(["vqa", *args, "-o", str(out)]).exit_code == 0
    assert out.read_bytes() == first


def test_vqa_2016_script_on_the_same_files(tmp_path):
    args = _vqa_files(tmp_path, [{"question_id": 1, "answer": "Yes"},
                                 {"question_id": 2, "answer": "two"}])  # fmt: skip
    out = tmp_path / "vqa2016.json"
    assert _run(["vqa", *args, "--vqa-script", "2016", "-o", str(out)]).exit_code == 0
    rep = load_report(out)
    assert rep["config"]["vqa_script"] == "2016"
    assert "458a8b2" in rep["config"]["vqa_script_source"]
    # 2016: the answer is always normalised ("Yes" -> "yes", "two" -> "2"): (1 + 0.6) / 2
    assert rep["metrics"][0] == {"metric": "accuracy", "value": pytest.approx(0.8), "count": 2}


def test_vqa_missing_answer_is_a_clear_error(tmp_path):
    res = _run(["vqa", *_vqa_files(tmp_path, [{"question_id": 1, "answer": "yes"}])])
    assert res.exit_code == 2
    assert "1 annotated questions have no answer" in res.output


def test_vqa_answer_to_an_unannotated_question_is_refused(tmp_path):
    answers = [{"question_id": q, "answer": "yes"} for q in (1, 2, 3)]
    args = _vqa_files(tmp_path, answers)
    # question 3 exists in the questions file but has no annotation
    qs = [{"question_id": q, "image_id": 1, "question": "?"} for q in (1, 2, 3)]
    (tmp_path / "q.json").write_text(json.dumps({"questions": qs}))
    res = _run(["vqa", *args])
    assert res.exit_code == 2
    assert "1 answers to questions without annotation (e.g. question_id [3])" in res.output


def test_oven_report_from_jsonl(tmp_path):
    refs = [("q1", "Q1", "query_val_seen"), ("q2", "Q2", "query_val_unseen"),
            ("e1", "Q3", "entity_val_seen"), ("e2", "Q4", "entity_val_unseen"),
            ("e3", "Q5", "entity_val_unseen")]  # fmt: skip
    preds = {"q1": "Q1", "q2": "Q2", "e1": "Q3", "e2": "Q4", "e3": "no"}
    (tmp_path / "ref.jsonl").write_text(
        "".join(
            json.dumps({"data_id": d, "entity_id": e, "data_split": s}) + "\n" for d, e, s in refs
        )  # fmt: skip
    )
    (tmp_path / "pred.jsonl").write_text(
        "".join(json.dumps({"data_id": d, "pred_entity_id": p}) + "\n" for d, p in preds.items())
    )
    out = tmp_path / "oven.json"
    res = _run(["oven", "--references", str(tmp_path / "ref.jsonl"),
                "--predictions", str(tmp_path / "pred.jsonl"), "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    values = {m["metric"]: m["value"] for m in load_report(out)["metrics"]}
    # query: 100 / 100 -> 100; entity: 100 / 50 -> 2/(1/100 + 1/50) = 66.67; final 2/(1/100+1/66.67)
    assert values["query_score"] == 100.0
    assert values["entity_score"] == 66.67
    assert values["entity_unseen_accuracy"] == 50.0
    assert values["final_score"] == 80.0


@pytest.mark.skipif(shutil.which("java") is None, reason="java not installed")
def test_caption_from_predictions_on_real_shards(shards_dir, tmp_path):
    from vlmtrain.eval.data import references_by_key

    refs = references_by_key(shards_dir, "test")
    # COCO results format: the index's image_id, first reference as the prediction
    preds = [{"image_id": int(k[2:]) + 100, "caption": texts[0]} for k, texts in refs.items()]
    (tmp_path / "pred.json").write_text(json.dumps(preds))
    out = tmp_path / "cap.json"
    res = _run(["caption", "--predictions", str(tmp_path / "pred.json"), "--data",
                str(shards_dir), "--split", "test", "--metrics", "BLEU-4,ROUGE-L",
                "-o", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    rep = load_report(out)
    assert [m["metric"] for m in rep["metrics"]] == ["BLEU-4", "ROUGE-L"]
    assert rep["metrics"][0]["value"] == pytest.approx(1.0, abs=1e-6)  # each equals a reference
    assert rep["metrics"][1]["value"] == pytest.approx(1.0)
    assert rep["metrics"][0]["count"] == 6


def test_caption_unknown_image_names_file_and_record(shards_dir, tmp_path):
    (tmp_path / "pred.json").write_text(json.dumps([{"image_id": 999, "caption": "x"}]))
    res = _run(["caption", "--predictions", str(tmp_path / "pred.json"), "--data",
                str(shards_dir), "--split", "test", "--metrics", "BLEU-4"])  # fmt: skip
    assert res.exit_code == 2
    assert "pred.json:1:" in res.output and "999" in res.output


def test_caption_without_java_fails_before_work(shards_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (tmp_path / "pred.json").write_text("[]")
    res = _run(["caption", "--predictions", str(tmp_path / "pred.json"), "--data",
                str(shards_dir)])  # fmt: skip
    assert res.exit_code == 2
    assert "need Java" in res.output


def test_task_needs_its_inputs():
    res = _run(["retrieval-embedding", "--encoder", "model"])
    assert res.exit_code == 2
    assert "--data" in res.output


def test_every_eval_split_defaults_to_val():
    """One --split default across eval tasks: val (a paper's test figure is asked for by name)."""
    from cli.train_eval import eval_cmd

    defaults = {
        name: p.default
        for name, cmd in eval_cmd.commands.items()
        for p in cmd.params
        if "--split" in p.opts
    }
    assert set(defaults) == {"retrieval-generative", "retrieval-embedding", "caption", "vqa",
                             "text-vqa", "oven", "llava"}  # fmt: skip
    assert set(defaults.values()) == {"val"}
    page = CliRunner().invoke(main, ["eval", "--help"]).output
    assert "--split defaults to val on every task" in " ".join(page.split())


def test_the_default_split_missing_from_the_shards_names_those_there_are(shards_dir, tmp_path):
    """The eval fixture's shards hold train and test only (tests/eval/conftest.py)."""
    res = _run(["retrieval-embedding", "--encoder", "clip", "--clip-model", "random:ViT-B-32",
                "--data", str(shards_dir)])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "no rows with split == 'val' (the index has ['test', 'train'])" in res.output
    assert "pass --split with one of them" in res.output
