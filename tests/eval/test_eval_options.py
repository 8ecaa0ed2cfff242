"""`vlmtrain eval TASK` fills its task's options object with the defaults its --help documents.

Oracle: the `[default: ...]` values of each command's --help as README.md and the help text give
them (--split val on every task, --batch-size 16, decoding options unset where the recipe's
decoding applies), written out here field by field; the task's `run_*` is replaced by a stub that
keeps the object it is handed, so no model or data is read.
"""

from __future__ import annotations

import dataclasses

import click
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


OPTIONS_OF = {"retrieval-generative": "GenerativeRetrievalOptions",
              "retrieval-embedding": "EmbeddingRetrievalOptions", "caption": "CaptionOptions",
              "vqa": "VqaOptions", "text-vqa": "TextVqaOptions", "oven": "OvenOptions",
              "llava": "LlavaOptions", "vist": "VistOptions",
              "visdial": "VisdialOptions"}  # fmt: skip


def _eval_commands():
    """(command, its options class) for every `vlmtrain eval` command; a new command must be
    added to OPTIONS_OF."""
    from cli.train_eval import eval_cmd
    from vlmtrain.eval import options

    assert set(eval_cmd.commands) == set(OPTIONS_OF)
    return [(cmd, getattr(options, OPTIONS_OF[name])) for name, cmd in eval_cmd.commands.items()]


def _as_tuple(value):
    return tuple(value) if isinstance(value, list | tuple) else value


def test_every_click_default_is_its_dataclass_default():
    """The options dataclass is the one source: for every eval command, each option named as a
    field defaults, once click has typed it and run its callback, to the field's default, and
    --help shows it whenever it is set."""
    checked = 0
    for cmd, cls in _eval_commands():
        ctx = click.Context(cmd)
        for field in dataclasses.fields(cls):
            param = next((p for p in cmd.params if p.name == field.name), None)
            if param is None or field.default is dataclasses.MISSING:
                continue
            value = param.type_cast_value(ctx, param.get_default(ctx))
            if param.callback is not None:
                value = param.callback(ctx, param, value)
            where = f"{cmd.name} --{param.name}"
            assert _as_tuple(value) == _as_tuple(field.default), where
            assert bool(param.show_default) == (field.default not in (None, ())), where
            checked += 1
    assert checked >= 40  # the shared ones (batch size, limit, device, ...) on all nine


@pytest.mark.parametrize("case", range(9))
def test_a_command_given_only_what_it_needs_fills_the_dataclass_defaults(monkeypatch, paths, case):
    """End to end: the object the CLI builds equals the dataclass built from the same required
    fields alone (progress aside: on unless -q, off for a Python caller)."""
    task, module, run, args, want = _cases(*paths)[case]
    cls = dict((cmd.name, c) for cmd, c in _eval_commands())[task]
    given = {k: want[k] for k in GIVEN[task]}
    assert _filled(monkeypatch, module, run, [task, *args]) == cls(**given, progress=True)


GIVEN = {"retrieval-generative": ("checkpoint", "data_dir", "trie_path", "ids_path"),
         "retrieval-embedding": ("checkpoint", "data_dir"),
         "caption": ("data_dir", "predictions"),
         "vqa": ("predictions", "questions", "annotations"),
         "text-vqa": ("dataset", "annotations", "predictions"),
         "oven": ("references", "predictions"),
         "llava": ("checkpoint", "data_dir", "answers_file"),
         "vist": ("checkpoint", "stories_path", "images_dir"),
         "visdial": ("checkpoint", "dialogs_path", "images_dir")}  # fmt: skip


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
