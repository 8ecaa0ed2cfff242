"""`vlmtrain eval TASK` fills its task's options object with the defaults its --help documents.

Oracle: the `[default: ...]` values of each command's --help as README.md and the help text give
them (--split val on every task, --batch-size 16, decoding options unset where the recipe's
decoding applies), written out here field by field; the task's `run_*` is replaced by a stub that
keeps the object it is handed, so no model or data is read.
"""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main

COMMON = {"batch_size": 16, "limit": None, "device": None, "progress": True, "output": None,
          "html": None}  # fmt: skip
DECODING_UNSET = {"beams": None, "max_new_tokens": None, "length_penalty": None}


@pytest.fixture
def paths(tmp_path):
    """Existing files and folders for the options that must exist."""
    (tmp_path / "dir").mkdir()
    (tmp_path / "file.json").write_text("{}")
    return str(tmp_path / "dir"), str(tmp_path / "file.json")


def _cases(d: str, f: str):
    """(task, module, run function, required arguments, the filled fields expected)."""
    return [
        ("retrieval-generative", "retrieval", "run_generative_retrieval",
         ["--checkpoint", d, "--data", d, "--trie", f, "--ids", f],
         {**COMMON, "checkpoint": d, "data_dir": d, "trie_path": f, "ids_path": f,
          "split": "val", "beams": 10, "returns": 10, "length_penalty": -2.0,
          "save_predictions": None}),
        ("retrieval-embedding", "embedding", "run_embedding_retrieval",
         ["--checkpoint", d, "--data", d],
         {**COMMON, "checkpoint": d, "data_dir": d, "split": "val", "encoder": "model",
          "clip_model": "ViT-B-32", "clip_pretrained": None, "save_predictions": None}),
        ("caption", "caption", "run_caption", ["--data", d, "--predictions", f],
         {**COMMON, **DECODING_UNSET, "checkpoint": None, "data_dir": d, "predictions": f,
          "split": "val", "metrics": ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D"),
          "image_attention": None, "save_predictions": None}),
        ("vqa", "vqa", "run_vqa", ["--predictions", f, "--questions", f, "--annotations", f],
         {**COMMON, **DECODING_UNSET, "checkpoint": None, "data_dir": None, "questions": f,
          "annotations": f, "split": "val", "predictions": f, "prompt": None,
          "submission": None, "script": "2021", "save_predictions": None}),
        ("text-vqa", "textvqa", "run_text_vqa",
         ["--dataset", "textvqa", "--annotations", f, "--predictions", f],
         {**COMMON, "checkpoint": None, "dataset": "textvqa", "annotations": f,
          "predictions": f, "image_folder": None, "metrics": None, "split": "val",
          "prompt": "Question: {question} Answer:", "max_new_tokens": 16,
          "save_predictions": None}),
        ("oven", "oven", "run_oven", ["--references", f, "--predictions", f],
         {**COMMON, "checkpoint": None, "data_dir": None, "references": (f,),
          "split_prefix": "val", "predictions": (f,), "trie": None, "entities": None,
          "candidates": None, "retrieve": None, "kb_cache": None, "kb_images": None,
          "save_candidates": None, "beams": 5, "max_new_tokens": 32, "save_predictions": None}),
        ("llava", "llava", "run_llava", ["--checkpoint", d, "--data", d, "--answers", f],
         {**COMMON, "checkpoint": d, "data_dir": d, "questions": None, "image_folder": None,
          "split": "val", "answers_file": f, "model_id": None, "max_new_tokens": 128}),
        ("vist", "vist", "run_vist", ["--checkpoint", d, "--stories", f, "--images", d],
         {**COMMON, "checkpoint": d, "stories_path": f, "images_dir": d, "captions": 5,
          "with_images": True}),
        ("visdial", "visdial", "run_visdial", ["--checkpoint", d, "--dialogs", f, "--images", d],
         {**COMMON, "checkpoint": d, "dialogs_path": f, "images_dir": d}),
    ]  # fmt: skip


def _filled(monkeypatch, module: str, run: str, args: list[str]):
    """The options object `vlmtrain eval ARGS` hands to vlmtrain.eval.tasks.MODULE.RUN."""
    import importlib

    from vlmtrain.eval.report import Report

    seen = []

    def stub(opts, **_):
        seen.append(opts)
        return Report(task="stub", config={})

    monkeypatch.setattr(importlib.import_module(f"vlmtrain.eval.tasks.{module}"), run, stub)
    res = CliRunner().invoke(main, ["eval", *args])
    assert res.exit_code == 0, res.output
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize("case", range(9))
def test_the_cli_fills_each_task_options_with_the_documented_defaults(monkeypatch, paths, case):
    task, module, run, args, want = _cases(*paths)[case]
    opts = _filled(monkeypatch, module, run, [task, *args])
    got = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts) if f.name != "ks"}
    assert got == want


def test_quiet_output_and_html_land_in_the_options(monkeypatch, paths, tmp_path):
    d, f = paths
    out, page = str(tmp_path / "r.json"), str(tmp_path / "r.html")
    args = ["visdial", "--checkpoint", d, "--dialogs", f, "--images", d, "-q", "--limit", "3",
            "--batch-size", "2", "-o", out, "--html", page]  # fmt: skip
    opts = _filled(monkeypatch, "visdial", "run_visdial", args)
    assert (opts.progress, opts.limit, opts.batch_size) == (False, 3, 2)
    assert (opts.output, opts.html) == (out, page)
    assert (tmp_path / "r.json").is_file() and (tmp_path / "r.html").is_file()


RUNS = [("retrieval", "run_generative_retrieval", "GenerativeRetrievalOptions"),
        ("embedding", "run_embedding_retrieval", "EmbeddingRetrievalOptions"),
        ("caption", "run_caption", "CaptionOptions"), ("vqa", "run_vqa", "VqaOptions"),
        ("vqa", "write_submission", "VqaOptions"), ("textvqa", "run_text_vqa", "TextVqaOptions"),
        ("oven", "run_oven", "OvenOptions"), ("llava", "run_llava", "LlavaOptions"),
        ("vist", "run_vist", "VistOptions"),
        ("visdial", "run_visdial", "VisdialOptions")]  # fmt: skip


@pytest.mark.parametrize(("module", "run", "cls"), RUNS)
def test_a_task_takes_only_its_options_object(module, run, cls):
    """One calling convention, run_x(XOptions(...), model_bundle=...): positional fields, field
    keywords or another task's options are a TypeError naming the class to build."""
    import importlib

    from vlmtrain.eval import options

    fn = getattr(importlib.import_module(f"vlmtrain.eval.tasks.{module}"), run)
    with pytest.raises(TypeError, match=rf"{run} takes a {cls} .*got str: call {run}\({cls}"):
        fn("data/")
    if cls == "VisdialOptions":
        wrong = options.VistOptions(stories_path="s.json", images_dir="img")
    else:
        wrong = options.VisdialOptions(dialogs_path="d.json", images_dir="img")
    with pytest.raises(TypeError, match=f"takes a {cls} .*got {type(wrong).__name__}"):
        fn(wrong)
    with pytest.raises(TypeError, match="unexpected keyword argument 'data_dir'"):
        fn(data_dir="data/")


def test_a_misspelt_field_is_a_type_error():
    from vlmtrain.eval.options import VistOptions

    with pytest.raises(TypeError, match="captoins"):
        VistOptions(stories_path="s.json", images_dir="img", captoins=1)
