"""One rule for naming an open_clip model: where its weights come from, and that random weights
are asked for. Used by `vlmdata embed`, the training vision tower and the CLIP eval baseline.

Forms of MODEL (with an optional separate `pretrained` weights file):
  local-dir:PATH, or PATH a directory  open_clip's saved folder (open_clip_config.json + weights)
  NAME:FILE                            architecture NAME with the local weights FILE
  NAME, pretrained=FILE                the same, the weights named apart (model.vision_pretrained,
                                       --clip-pretrained)
  random:NAME                          architecture NAME with random weights (benchmarks, smoke
                                       tests: it measures nothing, so it must be asked for)
  PATH.json                            a CLIP config (open_clip.CLIP arguments + optional "seed"):
                                       a tiny seeded random model for tests
A bare NAME without weights is refused everywhere: a random tower silently standing in for a
pretrained one would make every number downstream meaningless. Weights are local files only;
nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmdata.core.errors import DataError

LOCAL_DIR, RANDOM = "local-dir:", "random:"
_WEIGHT_SUFFIXES = {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}


@dataclass(frozen=True)
class ClipSource:
    kind: str  # "local-dir" | "checkpoint" | "random" | "config"
    name: str  # the open_clip model name ("local-dir:PATH" for a folder), or the config path
    pretrained: str | None = None  # a local weights file (kind "checkpoint")


def _known(name: str) -> str:
    import open_clip

    if name not in open_clip.list_models():
        raise DataError(f"unknown open_clip model {name!r} (and not a local directory or file)")
    return name


def resolve_clip(model: str, pretrained: str | None = None) -> ClipSource:
    """Parse MODEL (+ pretrained) by the rule in the module doc; a DataError says what is wrong."""
    if pretrained is not None and not os.path.isfile(pretrained):
        raise DataError(f"CLIP weights must be a local checkpoint file: {pretrained} is not one")
    if model.startswith(RANDOM):
        if pretrained:
            raise DataError(f"{model}: random weights and a weights file {pretrained}: pick one")
        return ClipSource("random", _known(model[len(RANDOM) :]))
    if model.startswith(LOCAL_DIR) or Path(model).is_dir():
        folder = model[len(LOCAL_DIR) :] if model.startswith(LOCAL_DIR) else model
        if not Path(folder).is_dir():
            raise DataError(f"{model}: no such open_clip folder")
        return ClipSource("local-dir", LOCAL_DIR + folder)
    if model.endswith(".json") and Path(model).is_file():
        return ClipSource("config", model)
    name, sep, file = model.partition(":")
    if sep and Path(file).is_file():
        if pretrained:
            raise DataError(f"{model} names its weights; drop the separate {pretrained}")
        return ClipSource("checkpoint", _known(name), file)
    if sep and (os.sep in file or Path(file).suffix in _WEIGHT_SUFFIXES):
        raise DataError(f"{model}: the weights file {file} does not exist (NAME:FILE takes a "
                        "local open_clip checkpoint; nothing is downloaded)")  # fmt: skip
    _known(model)
    if pretrained is None:
        raise DataError(
            f"open_clip model {model!r} has no weights: give NAME:FILE, a weights file "
            f"(vision_pretrained / --clip-pretrained) or local-dir:PATH; random:{model} asks "
            "for random weights (they measure nothing)"
        )
    return ClipSource("checkpoint", model, pretrained)


def create_clip(source: ClipSource, device: str = "cpu") -> tuple[Any, Any]:
    """(open_clip model in eval mode, its eval image transform) for a resolved source."""
    import open_clip
    import torch

    from vlmdata.core.device import check_device

    check_device(device)
    if source.kind == "config":
        cfg = json.loads(Path(source.name).read_text(encoding="utf-8"))
        torch.manual_seed(int(cfg.pop("seed", 0)))
        model = open_clip.CLIP(**cfg)
        preprocess = open_clip.image_transform(model.visual.image_size, is_train=False)
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(
            source.name,
            pretrained=source.pretrained,
            weights_only=True,
            pretrained_image=False,
            pretrained_text=False,
        )
    return model.to(device).eval(), preprocess


def clip_tokenizer(source: ClipSource, model) -> Any:
    """The text tokenizer that goes with a resolved source (for text embeddings)."""
    import open_clip

    if source.kind == "config":
        return open_clip.SimpleTokenizer(context_length=model.context_length)
    return open_clip.get_tokenizer(source.name)
