"""Text-rich VQA (the LLaVAR row): ANLS, TextVQA accuracy and containment by hand, and the task
on annotation files in the published shapes.

Fixture shapes: TextVQA_0.5.1_val.json (textvqa.org: {"dataset_type", "dataset_name",
"dataset_version", "data": [{"question", "image_id", "image_classes", "flickr_original_url",
"flickr_300k_url", "image_width", "image_height", "answers" (10), "question_tokens",
"question_id", "set_name"}]}); ST-VQA train_task_3.json (rrc.cvc.uab.es, challenge 11: {"data":
[{"dataset", "file_name", "file_path", "question_id", "question", "answers", "question_tokens",
"set_name"}]}); DocVQA val_v1.0.json (rrc.cvc.uab.es, challenge 17: {"dataset_name",
"dataset_split", "dataset_version", "data": [{"questionId", "question", "question_types",
"image", "docId", "ucsf_document_id", "ucsf_document_page_no", "answers", "data_split"}]});
OCR-VQA dataset.json (ocr-vqa.github.io: {image_id: {"imageURL", "questions", "answers",
"title", "authorName", "genre", "genreID", "split" (1 train, 2 val, 3 test)}}).
"""

from __future__ import annotations

import json

import pytest

from vlmdata.core.errors import DataError
from vlmtrain.eval.metrics.textvqa import (
    anls,
    contains_answer,
    evalai_normalize,
    levenshtein,
    textvqa_accuracy,
)
from vlmtrain.eval.options import TextVqaOptions


@pytest.mark.parametrize(
    "a, b, d", [("", "", 0), ("abc", "", 3), ("kitten", "sitting", 3), ("flaw", "lawn", 2)]
)
def test_levenshtein(a, b, d):
    assert levenshtein(a, b) == d == levenshtein(b, a)


@pytest.mark.parametrize(
    "pred, gts, expected",
    [
        ("Hello", ["hello"], 1.0),  # exact after lower-casing
        ("new   york ", ["New York"], 1.0),  # whitespace collapsed and stripped
        ("hellp", ["hello"], 0.8),  # 1 edit / 5 -> similarity 0.8
        ("hxllx", ["hello"], 0.6),  # 2 / 5 -> 0.6, over the threshold
        ("hexxx", ["hello"], 0.0),  # 3 / 5 -> 0.4, under 0.5 -> 0
        ("abxx", ["abcd"], 0.5),  # exactly 0.5 is kept (the script tests `< 0.5`)
        ("hellp", ["xyz", "hello", "help me"], 0.8),  # best ground truth counts
        ("", ["abc"], 0.0),  # empty answer: 3 edits / 3
        ("", [""], 1.0),  # both empty: distance 0 by definition
        # raw lengths in the denominator: "abc   " counts 6 characters, the distance is
        # between stripped strings (1), so 1 - 1/6 (the paper's formula would give 2/3)
        ("abd", ["abc   "], 1 - 1 / 6),
    ],
)
def test_anls_by_hand(pred, gts, expected):
    assert anls(pred, gts) == pytest.approx(expected)


def test_evalai_processor():
    assert evalai_normalize("Coca-Cola") == "coca cola"  # '-' inside a word -> space
    assert evalai_normalize("Joe's Diner?") == "joe 's diner"  # "'s" split off, "?" dropped
    assert evalai_normalize("1,000 Miles.") == "1000 miles"
    assert evalai_normalize("The TWO") == "2"


@pytest.mark.parametrize(
    "pred, answers, expected",
    [
        ("coke", ["coca cola"] * 3 + ["coke"] * 7, 1.0),
        ("Coca-Cola", ["coca cola"] * 3 + ["coke"] * 7, 0.9),  # 3 subsets x 2/3 + 7 x 1
        ("pepsi", ["coca cola"] * 3 + ["coke"] * 7, 0.0),
        # unlike VQAv2's current script, unanimous answers are normalised too
        ("COKE.", ["coke"] * 10, 1.0),
        ("Joe's", ["joe's"] * 9 + ["joes"], 1.0),
        ("joes", ["joe's"] * 9 + ["joes"], 0.3),  # one match, kept by 9 of 10 subsets
    ],
)
def test_textvqa_accuracy_by_hand(pred, answers, expected):
    assert textvqa_accuracy(pred, answers) == pytest.approx(expected)


def test_textvqa_needs_ten_answers():
    with pytest.raises(ValueError, match="10 answers"):
        textvqa_accuracy("a", ["a"] * 9)


@pytest.mark.parametrize(
    "pred, gts, hit",
    [
        ("The sign says STOP.", ["stop"], True),  # normalised, found as a word
        ("stopping now", ["stop"], False),  # inside a longer word: no
        ("It costs 2 dollars", ["two dollars"], True),  # number words on both sides
        ("nothing", ["xyz", "Nothing"], True),  # any ground truth
        ("", ["a b"], False),
    ],
)
def test_containment_by_hand(pred, gts, hit):
    assert contains_answer(pred, gts) is hit


# ---- the task, on files in the published shapes --------------------------------------------


def _textvqa(tmp_path):
    def rec(qid, image_id, answers):
        return {"question": "what brand is this?", "image_id": image_id,
                "image_classes": ["Bottle"], "flickr_original_url": "https://x/o.jpg",
                "flickr_300k_url": "https://x/s.jpg", "image_width": 1024, "image_height": 768,
                "answers": answers, "question_tokens": ["what", "brand", "is", "this"],
                "question_id": qid, "set_name": "val"}  # fmt: skip

    obj = {"dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1",
           "data": [rec(34602, "003a8ae2ef43b901", ["coca cola"] * 3 + ["coke"] * 7),
                    rec(34603, "0054c91397f2fe05", ["stop"] * 10)]}  # fmt: skip
    path = tmp_path / "TextVQA_0.5.1_val.json"
    path.write_text(json.dumps(obj))
    return path


def _docvqa(tmp_path):
    def rec(qid, answers):
        return {"questionId": qid, "question": "What is the total?",
                "question_types": ["table/list"], "image": f"documents/doc{qid}_1.png",
                "docId": 14465, "ucsf_document_id": "pybv0228", "ucsf_document_page_no": "81",
                "answers": answers, "data_split": "val"}  # fmt: skip

    obj = {"dataset_name": "docvqa", "dataset_split": "val", "dataset_version": "1.0",
           "data": [rec(49153, ["0.28"]), rec(49154, ["hello", "hello world"])]}  # fmt: skip
    path = tmp_path / "val_v1.0.json"
    path.write_text(json.dumps(obj))
    return path


def test_textvqa_report_from_a_submission_file(tmp_path):
    from vlmtrain.eval.report import load_report
    from vlmtrain.eval.tasks.textvqa import run_text_vqa

    ann = _textvqa(tmp_path)
    sub = tmp_path / "answers.json"
    answers = [{"question_id": 34602, "answer": "Coca-Cola"},
               {"question_id": 34603, "answer": "The sign says stop"}]  # fmt: skip
    sub.write_text(json.dumps(answers))
    rep = run_text_vqa(TextVqaOptions(dataset="textvqa", annotations=ann, predictions=sub))
    assert rep.value("accuracy") == pytest.approx((0.9 + 0.0) / 2)
    assert rep.value("containment") == pytest.approx((1 + 1) / 2)
    assert [m["count"] for m in rep.metrics] == [2, 2]
    rep.write(tmp_path / "r.json")
    loaded = load_report(tmp_path / "r.json")
    assert loaded["task"] == "text-vqa" and loaded["config"]["dataset"] == "textvqa"


def test_docvqa_anls_and_coverage_checks(tmp_path):
    from vlmtrain.eval.tasks.textvqa import run_text_vqa

    ann = _docvqa(tmp_path)
    sub = tmp_path / "docvqa_answers.json"
    sub.write_text(json.dumps([{"questionId": 49153, "answer": "0.28"},
                               {"questionId": 49154, "answer": "hellp"}]))  # fmt: skip
    rep = run_text_vqa(TextVqaOptions(dataset="docvqa", annotations=ann, predictions=sub))
    assert rep.value("anls") == pytest.approx((1.0 + 0.8) / 2)
    sub.write_text(json.dumps([{"questionId": 49153, "answer": "0.28"},
                               {"questionId": 7, "answer": "x"}]))  # fmt: skip
    with pytest.raises(DataError, match=r"1 annotated questions without an answer.*\[49154\]"):
        run_text_vqa(TextVqaOptions(dataset="docvqa", annotations=ann, predictions=sub))
    with pytest.raises(DataError, match="accuracy is TextVQA"):
        run_text_vqa(
            TextVqaOptions(
                dataset="docvqa", annotations=ann, predictions=sub, metrics=("accuracy",)
            )
        )


def _stvqa(tmp_path):
    def rec(qid, path, answers):
        return {"dataset": "coco-text", "file_name": path.split("/")[-1], "file_path": path,
                "question_id": qid, "question": "what does the sign say?", "answers": answers,
                "question_tokens": ["what", "does", "the", "sign", "say", "?"],
                "set_name": "train"}  # fmt: skip

    obj = {"dataset_name": "ST-VQA", "dataset_version": "1.0",
           "data": [rec(1, "coco-text/COCO_train2014_000000000001.jpg", ["stop", "stop sign"]),
                    rec(2, "coco-text/COCO_train2014_000000000002.jpg", ["exit"])]}  # fmt: skip
    path = tmp_path / "train_task_3.json"
    path.write_text(json.dumps(obj))
    return path


def test_stvqa_through_the_cli_and_byte_identical_rerun(tmp_path):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.eval.report import load_report

    ann = _stvqa(tmp_path)
    sub = tmp_path / "stvqa_answers.json"
    # q1: "stop sig" is 1 edit from "stop sign" (9 chars): 1 - 1/9; q2: "exits" -> 1 - 1/5
    sub.write_text(json.dumps([{"question_id": 1, "answer": "Stop sig"},
                               {"question_id": 2, "answer": "exits"}]))  # fmt: skip
    out = tmp_path / "stvqa.json"
    args = ["eval", "text-vqa", "--dataset", "stvqa", "--annotations", str(ann),
            "--predictions", str(sub), "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rep = load_report(out)
    assert rep["metrics"] == [
        {"metric": "anls", "value": pytest.approx((8 / 9 + 4 / 5) / 2), "count": 2},
        {"metric": "containment", "value": 0.5, "count": 2},  # "stop" in "stop sig"; no "exit"
    ]
    first = out.read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_bytes() == first
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"question_id": 1, "answer": ["a", "b"]}]))
    res = CliRunner().invoke(main, [*args[:6], "--predictions", str(bad)])
    assert res.exit_code == 2 and "answer must be a single string" in res.output


def test_model_answers_are_what_is_scored(tiny_bundle, tmp_path):
    from tests.eval.conftest import png_bytes
    from vlmtrain.eval.tasks.textvqa import run_text_vqa

    ann = _textvqa(tmp_path)
    images = tmp_path / "train_images"
    images.mkdir()
    for i, image_id in enumerate(["003a8ae2ef43b901", "0054c91397f2fe05"]):
        (images / f"{image_id}.jpg").write_bytes(png_bytes(i))
    saved = tmp_path / "answers.json"
    opts = TextVqaOptions(dataset="textvqa", annotations=ann, image_folder=images, max_new_tokens=4,
                          save_predictions=saved)  # fmt: skip
    rep = run_text_vqa(opts, model_bundle=tiny_bundle("caption"))
    rows = json.loads(saved.read_text())
    assert [r["question_id"] for r in rows] == [34602, 34603]
    again = run_text_vqa(TextVqaOptions(dataset="textvqa", annotations=ann, predictions=saved))
    assert [m["value"] for m in rep.metrics] == [m["value"] for m in again.metrics]
    assert rep.config["prompt"] == "Question: {question} Answer:"
    (images / "0054c91397f2fe05.jpg").unlink()
    with pytest.raises(DataError, match="0054c91397f2fe05.jpg' not found"):
        opts = TextVqaOptions(dataset="textvqa", annotations=ann, image_folder=images)
        run_text_vqa(opts, model_bundle=tiny_bundle("caption"))


def test_python3_ports_treat_unicode_digits_as_digits():
    assert evalai_normalize("٣.٥") == "٣.٥"
    assert contains_answer("it is ٣.٥", ["٣.٥"])


def test_ocrvqa_dataset_json_test_split_containment(tmp_path):
    from vlmtrain.eval.tasks.textvqa import load_questions, run_text_vqa

    def book(split, answers):
        return {"imageURL": "http://ecx.images-amazon.com/images/I/51ZJpFUXi8L.jpg",
                "questions": ["Who wrote this book?", "Is this a comedy book?"],
                "answers": answers, "title": "Moo, Baa, La La La!",
                "authorName": "Sandra Boynton", "genre": "Children's Books", "genreID": 4,
                "split": split}  # fmt: skip

    ann = tmp_path / "dataset.json"
    ann.write_text(json.dumps({"0671449028": book(3, ["Sandra Boynton", "No"]),
                               "0735329181": book(1, ["Someone Else", "Yes"])}))  # fmt: skip
    qs = load_questions(ann, "ocrvqa")
    assert [(q.qid, q.answers, q.image) for q in qs] == [
        ("0671449028_0", ["Sandra Boynton"], "0671449028.jpg"),
        ("0671449028_1", ["No"], "0671449028.jpg"),
    ]
    sub = tmp_path / "ocrvqa_answers.json"
    answers = [{"question_id": "0671449028_0", "answer": "By Sandra Boynton."},
               {"question_id": "0671449028_1", "answer": "Yes, it is."}]  # fmt: skip
    sub.write_text(json.dumps(answers))
    rep = run_text_vqa(
        TextVqaOptions(dataset="ocrvqa", annotations=ann, predictions=sub, split="test")
    )
    assert rep.metrics == [{"metric": "containment", "value": 0.5, "count": 2}]
    assert len(load_questions(ann, "ocrvqa", "train")) == 2
    with pytest.raises(DataError, match="no val questions"):
        load_questions(ann, "ocrvqa", "val")
