"""Each eval task's options as one typed object: the CLI fills it, `run_*(opts)` takes it.

`EvalOptions` holds what every task has; a task's class adds its own fields. Defaults here are
the library's (a Python caller's); `vlmtrain eval` passes every field, with the defaults its
--help shows (--split val, --batch-size 16, ...). `takes_options` lets scripts and tests call
`run_x(data_dir, limit=5, model_bundle=b)` too: the keywords are the fields, checked by the
dataclass, so a misspelt one is a TypeError, not silently ignored.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from vlmtrain.eval.metrics.captioning import ALL_METRICS
from vlmtrain.eval.metrics.recall import DEFAULT_KS
from vlmtrain.eval.metrics.vqa import DEFAULT_SCRIPT
from vlmtrain.eval.tasks.prompts import DEFAULT_VQA_PROMPT

Path = str | os.PathLike
O = TypeVar("O", bound="EvalOptions")  # noqa: E741

GRACE_LENGTH_PENALTY = -2.0  # GRACE's evaluate_t2id default


@dataclass(kw_only=True)
class EvalOptions:
    """What every task takes: where the model is, how much to score, where the report goes."""

    checkpoint: Path | None = None  # a training run or export dir (or model_bundle=)
    batch_size: int = 16
    limit: int | None = None  # only the first N queries/items (smoke runs)
    device: str | None = None  # None: cuda when available
    progress: bool = False
    output: Path | None = None  # -o: the JSON report (written by the CLI)
    html: Path | None = None  # --html: the report as a page (written by the CLI)


@dataclass(kw_only=True)
class GenerativeRetrievalOptions(EvalOptions):
    data_dir: Path
    trie_path: Path
    ids_path: Path
    split: str = "test"
    beams: int = 10
    returns: int = 10
    length_penalty: float = GRACE_LENGTH_PENALTY
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class EmbeddingRetrievalOptions(EvalOptions):
    data_dir: Path
    split: str = "test"
    encoder: str = "model"  # "model" (the checkpoint's encoders) or "clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    batch_size: int = 32
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class CaptionOptions(EvalOptions):
    data_dir: Path
    predictions: Path | None = None
    split: str = "test"
    metrics: Sequence[str] = ALL_METRICS
    beams: int | None = None  # None: the recipe's decoding
    max_new_tokens: int | None = None
    length_penalty: float | None = None
    image_attention: str | None = None
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class VqaOptions(EvalOptions):
    questions: Path | None = None
    annotations: Path | None = None
    split: str = "val"
    predictions: Path | None = None
    data_dir: Path | None = None
    prompt: str | None = None
    submission: Path | None = None  # answer every question into this file, score nothing
    script: str = DEFAULT_SCRIPT  # the official vqaEval.py version
    max_new_tokens: int | None = None
    beams: int | None = None
    length_penalty: float | None = None
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class TextVqaOptions(EvalOptions):
    dataset: str
    annotations: Path
    predictions: Path | None = None
    image_folder: Path | None = None
    metrics: Sequence[str] | None = None  # None: the data set's
    split: str = "test"
    prompt: str = DEFAULT_VQA_PROMPT
    max_new_tokens: int = 16
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class OvenOptions(EvalOptions):
    references: Sequence[Path] = ()
    data_dir: Path | None = None
    split_prefix: str = "val"
    predictions: Sequence[Path] = ()
    trie: Path | None = None
    entities: Path | None = None
    candidates: Path | None = None
    retrieve: int | None = None
    kb_cache: Path | None = None
    kb_images: Path | None = None
    save_candidates: Path | None = None
    beams: int = 5
    max_new_tokens: int = 32
    batch_size: int = 8
    save_predictions: Path | None = None


@dataclass(kw_only=True)
class LlavaOptions(EvalOptions):
    answers_file: Path
    questions: Path | None = None
    image_folder: Path | None = None
    data_dir: Path | None = None
    split: str = "test"
    model_id: str | None = None
    max_new_tokens: int = 128
    batch_size: int = 8


@dataclass(kw_only=True)
class VistOptions(EvalOptions):
    stories_path: Path
    images_dir: Path
    captions: int = 5  # context captions, the last N
    with_images: bool = True
    ks: Sequence[int] = DEFAULT_KS
    batch_size: int = 32


@dataclass(kw_only=True)
class VisdialOptions(EvalOptions):
    dialogs_path: Path
    images_dir: Path
    ks: Sequence[int] = DEFAULT_KS
    batch_size: int = 32


def takes_options(cls: type[O], *positional: str) -> Callable[[Callable[..., Any]], Any]:
    """Decorate `run(opts, *, model_bundle=None)` so that it is called as `run(opts)` (the CLI)
    or as `run(*positional, **fields)`, the fields of `cls` by name (scripts, tests); both take
    `model_bundle=` (a loaded `ModelBundle` instead of the checkpoint)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def run(*args: Any, model_bundle: Any = None, **fields: Any) -> Any:
            if len(args) == 1 and isinstance(args[0], cls) and not fields:
                return fn(args[0], model_bundle=model_bundle)
            if len(args) > len(positional):
                raise TypeError(f"{fn.__name__} takes {len(positional)} positional fields "
                                f"({', '.join(positional)}), got {len(args)}")  # fmt: skip
            named = dict(zip(positional, args, strict=False))
            twice = sorted(set(named) & set(fields))
            if twice:
                raise TypeError(f"{fn.__name__} got {twice} twice")
            return fn(cls(**named, **fields), model_bundle=model_bundle)

        return run

    return wrap
