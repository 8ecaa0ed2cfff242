"""Each eval task's options as one typed object: the CLI fills it, `run_*(opts)` takes it.

`EvalOptions` holds what every task has; a task's class adds its own fields. Every caller, the
CLI, scripts and tests alike, calls `run_x(XOptions(...), model_bundle=None)`: the dataclass
checks the fields by name, so a misspelt one is a TypeError, not silently ignored.

The defaults here are the only ones written down: `vlmtrain eval`'s options take theirs (and
the `[default: ...]` of --help) from these fields (cli/eval_options.py, `defaults_from`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vlmtrain.eval.metrics import DEFAULT_KS
from vlmtrain.eval.metrics.vqa import DEFAULT_SCRIPT
from vlmtrain.eval.tasks.prompts import DEFAULT_VQA_PROMPT

PathLike = str | os.PathLike  # a local path (the CLI passes str)

GRACE_LENGTH_PENALTY = -2.0  # GRACE's evaluate_t2id default
DEFAULT_SPLIT = "val"  # the split one tunes on; a paper's test figure is asked for by name
CAPTION_METRICS = ("BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")  # the captioning papers' table


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
    split: str = DEFAULT_SPLIT
    beams: int = 10
    returns: int = 10
    length_penalty: float = GRACE_LENGTH_PENALTY
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class EmbeddingRetrievalOptions(EvalOptions):
    """Recall@K from the checkpoint's (or an open_clip model's) embeddings."""

    data_dir: PathLike
    split: str = DEFAULT_SPLIT
    encoder: str = "model"  # "model" (the checkpoint's encoders) or "clip"
    clip_model: str = "ViT-B-32"
    clip_pretrained: str | None = None
    ks: Sequence[int] = DEFAULT_KS
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class CaptionOptions(EvalOptions):
    """COCO caption metrics; unset decoding options take the caption recipe's."""

    data_dir: PathLike
    predictions: PathLike | None = None
    split: str = DEFAULT_SPLIT
    metrics: Sequence[str] = CAPTION_METRICS
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
    split: str = DEFAULT_SPLIT
    prompt: str = DEFAULT_VQA_PROMPT
    max_new_tokens: int = 16
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class OvenOptions(EvalOptions):
    """OVEN accuracy from predictions files or trie-constrained entity decoding."""

    references: Sequence[PathLike] = ()
    data_dir: PathLike | None = None
    split_prefix: str = DEFAULT_SPLIT
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
    save_predictions: PathLike | None = None


@dataclass(kw_only=True)
class LlavaOptions(EvalOptions):
    """LLaVA model_vqa answers (`answers_file`), accuracy where references exist."""

    answers_file: PathLike
    questions: PathLike | None = None
    image_folder: PathLike | None = None
    data_dir: PathLike | None = None
    split: str = DEFAULT_SPLIT
    model_id: str | None = None
    max_new_tokens: int = 128


@dataclass(kw_only=True)
class VistOptions(EvalOptions):
    """FROMAGe's VIST contextual image retrieval."""

    stories_path: PathLike
    images_dir: PathLike
    captions: int = 5  # context captions, the last N
    with_images: bool = True
    ks: Sequence[int] = DEFAULT_KS


@dataclass(kw_only=True)
class VisdialOptions(EvalOptions):
    """FROMAGe's VisDial image retrieval from a dialog."""

    dialogs_path: PathLike
    images_dir: PathLike
    ks: Sequence[int] = DEFAULT_KS


def check_options(opts: Any, cls: type[EvalOptions], run: str) -> None:
    """A clear TypeError when a task's `run_*` is handed anything but its options object (the
    one calling convention: `run_x(XOptions(...), model_bundle=...)`)."""
    if not isinstance(opts, cls):
        raise TypeError(f"{run} takes a {cls.__name__} (vlmtrain.eval.options), got "
                        f"{type(opts).__name__}: call {run}({cls.__name__}(...), "
                        f"model_bundle=...)")  # fmt: skip
