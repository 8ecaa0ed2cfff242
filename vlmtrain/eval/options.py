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

PathLike = str | os.PathLike  # a local path (the CLI passes str)
Opts = TypeVar("Opts", bound="EvalOptions")

GRACE_LENGTH_PENALTY = -2.0  # GRACE's evaluate_t2id default


@dataclass(kw_only=True)
class EvalOptions:
    """What every task takes: where the model is, how much to score, where the report goes."""

    checkpoint: PathLike | None = None  # a training run or export dir (or model_bundle=)
    batch_size: int = 16
    limit: int | None = None  # only the first N queries/items (smoke runs)
    device: str | None = None  # None: cuda when available
    progress: bool = False
    output: PathLike | None = None  # -o: the JSON report (written by the CLI)
    html: PathLike | None = None  # --html: the report as a page (written by the CLI)


@dataclass(kw_only=True)
class GenerativeRetrievalOptions(EvalOptions):
    """GRACE text->image retrieval by trie-constrained beam search (GRACE's decoding defaults)."""

    data_dir: PathLike
    trie_path: PathLike
    ids_path: PathLike
    split: str = "test"
    beams: int = 10
    returns: int = 10
    length_penalty: float = GRACE_LENGTH_PENALTY
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class EmbeddingRetrievalOptions(EvalOptions):
    """Recall@K from the checkpoint's (or an open_clip model's) embeddings."""

    data_dir: PathLike
    split: str = "test"
    encoder: str = "model"  # "model" (the checkpoint's encoders) or "clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    batch_size: int = 32
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class CaptionOptions(EvalOptions):
    """COCO caption metrics; unset decoding options take the caption recipe's."""

    data_dir: PathLike
    predictions: PathLike | None = None
    split: str = "test"
    metrics: Sequence[str] = ALL_METRICS
    beams: int | None = None  # None: the recipe's decoding
    max_new_tokens: int | None = None
    length_penalty: float | None = None
    image_attention: str | None = None
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class VqaOptions(EvalOptions):
    """VQAv2 accuracy, or with `submission` EvalAI's answer file."""

    questions: PathLike | None = None
    annotations: PathLike | None = None
    split: str = "val"
    predictions: PathLike | None = None
    data_dir: PathLike | None = None
    prompt: str | None = None
    submission: PathLike | None = None  # answer every question into this file, score nothing
    script: str = DEFAULT_SCRIPT  # the official vqaEval.py version
    max_new_tokens: int | None = None
    beams: int | None = None
    length_penalty: float | None = None
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class TextVqaOptions(EvalOptions):
    """TextVQA / ST-VQA / DocVQA / OCR-VQA: accuracy, ANLS, containment."""

    dataset: str
    annotations: PathLike
    predictions: PathLike | None = None
    image_folder: PathLike | None = None
    metrics: Sequence[str] | None = None  # None: the data set's
    split: str = "test"
    prompt: str = DEFAULT_VQA_PROMPT
    max_new_tokens: int = 16
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class OvenOptions(EvalOptions):
    """OVEN accuracy from predictions files or trie-constrained entity decoding."""

    references: Sequence[PathLike] = ()
    data_dir: PathLike | None = None
    split_prefix: str = "val"
    predictions: Sequence[PathLike] = ()
    trie: PathLike | None = None
    entities: PathLike | None = None
    candidates: PathLike | None = None
    retrieve: int | None = None
    kb_cache: PathLike | None = None
    kb_images: PathLike | None = None
    save_candidates: PathLike | None = None
    beams: int = 5
    max_new_tokens: int = 32
    batch_size: int = 8
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class LlavaOptions(EvalOptions):
    """LLaVA model_vqa answers (`answers_file`), accuracy where references exist."""

    answers_file: PathLike
    questions: PathLike | None = None
    image_folder: PathLike | None = None
    data_dir: PathLike | None = None
    split: str = "test"
    model_id: str | None = None
    max_new_tokens: int = 128
    batch_size: int = 8


@dataclass(kw_only=True)
class VistOptions(EvalOptions):
    """FROMAGe's VIST contextual image retrieval."""

    stories_path: PathLike
    images_dir: PathLike
    captions: int = 5  # context captions, the last N
    with_images: bool = True
    ks: Sequence[int] = DEFAULT_KS
    batch_size: int = 32


@dataclass(kw_only=True)
class VisdialOptions(EvalOptions):
    """FROMAGe's VisDial image retrieval from a dialog."""

    dialogs_path: PathLike
    images_dir: PathLike
    ks: Sequence[int] = DEFAULT_KS
    batch_size: int = 32


def takes_options(cls: type[Opts], *positional: str) -> Callable[[Callable[..., Any]], Any]:
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
