"""Checkpoints (resume) and exports (what eval and the next stage load).

Two things with different jobs:
- `OUTPUT/checkpoints/stepNNNNNNN/`: DeepSpeed's own sharded checkpoint (every rank writes its
  partition; optimizer and scheduler state included) plus the data position in `client_state`
  and, readable without torch, `data_position.json`. Only `--resume` of the same run reads it,
  so DeepSpeed's format is used as is; when one counts as complete and how it is read without
  pickle is in vlmtrain.train.resume.
- `OUTPUT/export/`: `model.safetensors` (no pickle), the resolved `config.yaml`, a copy of the
  tokenizer (with the tokens the model added) and `export.json`. `load_checkpoint` rebuilds the
  model from the config and loads these weights.

What an export holds (`export` in the config): "trainable" = parameters trained in this stage;
"full" = everything; "auto" (default) = everything EXCEPT frozen parts that the config rebuilds
from pretrained files (a vision tower with `vision_pretrained`, an LM from a local `lm` path).
So a tiny model built from configs with random init exports all its (few) weights and eval
rebuilds it exactly, while FROMAGe exports its projections and new token rows only (~11 MB).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from vlmdata.core.atomic import atomic_path, write_json
from vlmtrain.errors import CheckpointError, ConfigError

EXPORT_DIR = "export"
CHECKPOINT_DIR = "checkpoints"
WEIGHTS = "model.safetensors"
GATHER_CHUNK = 64  # parameters gathered at once under ZeRO-3 (bounds peak memory)


def rebuildable(model_cfg, name: str) -> bool:
    """True when parameter `name` is rebuilt from a pretrained file by `build_model` alone."""
    if "new_weight" in name:  # added token rows: always trained or random
        return False
    train = set(model_cfg.train)
    if name.startswith("vision."):
        return bool(model_cfg.vision_pretrained) and "vision" not in train
    if name.startswith("lm."):
        return bool(model_cfg.lm) and "lm" not in train
    if name.startswith(("entity_encoder.clip_text.", "entity_encoder.clip_vision.")):
        return bool(model_cfg.entity_encoder)  # frozen CLIP towers, from their local dir
    return False


def export_names(model, model_cfg, mode: str = "auto") -> list[str]:
    """Names of the parameters an export of `mode` holds (see module doc)."""
    names = []
    for name, p in model.named_parameters():
        if mode == "full" or (mode == "trainable" and p.requires_grad):
            names.append(name)
        elif mode == "auto" and (p.requires_grad or not rebuildable(model_cfg, name)):
            names.append(name)
    return names


def gathered_state(model, names: list[str], rank: int) -> dict[str, Any]:
    """Full (un-partitioned) copies of `names` on rank 0; every rank must call this (ZeRO-3)."""
    import deepspeed

    params = dict(model.named_parameters())
    state: dict[str, Any] = {}
    for i in range(0, len(names), GATHER_CHUNK):
        chunk = names[i : i + GATHER_CHUNK]
        with deepspeed.zero.GatheredParameters([params[n] for n in chunk], modifier_rank=None):
            if rank == 0:
                for n in chunk:
                    state[n] = params[n].detach().to("cpu").clone().contiguous()
    return state


def write_export(
    out_dir: str | os.PathLike,
    state: dict[str, Any],
    cfg,
    tokenizer,
    info: dict[str, Any],
) -> Path:
    """Write an export folder (rank 0 only): weights, config, tokenizer copy, export.json."""
    from safetensors.torch import save_file

    from vlmtrain.train.config import save_config

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / WEIGHTS) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    save_config(cfg, out / "config.yaml")
    tok_dir = out / "tokenizer"
    staging = out / ".tokenizer.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    tokenizer.save_pretrained(str(staging))
    shutil.rmtree(tok_dir, ignore_errors=True)
    os.replace(staging, tok_dir)
    n = sum(int(t.numel()) for t in state.values())
    write_json(out / "export.json", {**info, "tensors": len(state), "parameters": n})
    return out


def find_export(path: str | os.PathLike) -> Path:
    """An export folder: `path` itself, or a run directory's `export/`."""
    path = Path(path)
    for cand in (path, path / EXPORT_DIR):
        if (cand / WEIGHTS).exists() and (cand / "config.yaml").exists():
            return cand
    raise FileNotFoundError(f"no export (model.safetensors + config.yaml) in {path} or its export/")


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path))


def load_weights_into(model, model_cfg, state: dict[str, Any], source: str) -> None:
    """Copy exported weights into a freshly built model; a missing non-rebuildable one fails."""
    names = {n for n, _ in model.named_parameters()}
    missing = sorted(n for n in names - set(state) if not rebuildable(model_cfg, n))
    if missing:
        raise CheckpointError(
            f"export lacks {len(missing)} parameter(s) that cannot be rebuilt, e.g. {missing[:3]}",
            file=source,
        )
    try:
        model.load_trainable_state_dict(state)
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(f"export does not fit this model: {e}", file=source) from e


def init_from_export(model, path: str) -> None:
    """Start from a previous stage's export (LLaVA stage 2 from stage 1's projector)."""
    export = find_export(path)
    try:
        model.load_trainable_state_dict(read_weights(export / WEIGHTS))
    except (KeyError, RuntimeError) as e:
        raise CheckpointError(
            f"init_from: export does not fit this model: {e}", file=str(export)
        ) from e


def load_checkpoint(path: str | os.PathLike):
    """(model in eval mode on CPU, tokenizer, TrainConfig) from a run directory or an export."""
    import torch

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.model.vlm import build_model
    from vlmtrain.train.config import load_config

    export = find_export(path)
    cfg = load_config(export / "config.yaml")
    tokenizer = load_tokenizer(export / "tokenizer")
    torch.manual_seed(cfg.seed)
    try:
        model = build_model(cfg.model, tokenizer)
    except ConfigError as e:  # the export's config cannot build a model: say which file
        raise ConfigError(str(e), file=str(export / "config.yaml")) from e
    load_weights_into(model, cfg.model, read_weights(export / WEIGHTS), str(export))
    model.eval()
    return model, tokenizer, cfg
