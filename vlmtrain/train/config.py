"""Training configuration: YAML -> nested dataclasses, `a.b.c=value` overrides, resolved save.

Every section is a dataclass, so a typo in the YAML or an override is an error naming the key,
and override values are parsed by the type of the field they set (`optim.lr=3e-4` is a float,
`data.streams=[...]` is YAML). The resolved config is written beside the checkpoints and is the
only input of the per-rank entry point, so every rank trains from the same, saved settings.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmdata.core.atomic import atomic_open
from vlmtrain.data.config import DataConfig, StreamConfig, resolve_streams
from vlmtrain.errors import ConfigError
from vlmtrain.model.config import ModelConfig
from vlmtrain.recipes import recipe_options
from vlmtrain.typed import field_types, from_dict, is_dataclass_type

__all__ = [
    "DataConfig",
    "StreamConfig",
    "TrainConfig",
    "load_config",
    "resolve_streams",
    "save_config",
]


@dataclass
class RecipeConfig:
    name: str = "caption"
    # as written in the YAML; the recipe's typed Options checks it (vlmtrain.recipes.get_recipe)
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # 0 disables clipping


@dataclass
class ScheduleConfig:
    max_steps: int | None = None  # optimizer steps; default: `epochs` over the first stream
    epochs: float = 1.0
    warmup_steps: int = 0
    min_lr_ratio: float = 0.0  # cosine decays to lr * min_lr_ratio
    save_every: int = 0  # optimizer steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2  # newest checkpoint folders kept (0: all)
    log_every: int = 1


@dataclass
class DeepSpeedConfig:
    zero_stage: int | str = "auto"  # 0-3, or auto: by world size and memory (train/perf.py)
    precision: str = "fp32"  # fp32 | bf16 | fp16
    grad_accum: int = 1
    offload_optimizer: bool = False  # ZeRO-2/3: optimizer states in CPU memory
    extra: dict[str, Any] = field(default_factory=dict)  # merged into the DeepSpeed config as is


@dataclass
class LogConfig:
    tensorboard: bool = False
    wandb: bool = False
    wandb_project: str = "vlm"
    progress: bool = True  # tqdm bar on rank 0
    batch_keys: bool = False  # every rank logs its batches' sample keys (batches-rankN.jsonl)
    peak_tflops: float | None = None  # one device's peak for MFU (default: vlmtrain.train.flops)
    plots: bool = True  # rank 0 writes OUTPUT/plots/*.png from metrics.jsonl at the end


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    deepspeed: DeepSpeedConfig = field(default_factory=DeepSpeedConfig)
    log: LogConfig = field(default_factory=LogConfig)
    output_dir: str = "runs/default"
    seed: int = 0
    export: str = "auto"  # "auto" | "full" | "trainable": what the final export holds
    init_from: str | None = None  # an export (or run dir) whose weights start this stage
    # LLaVA-1.5's released `mm_projector.bin` to start the projector from (AutoVER), read
    # weights-only (vlmtrain.model.projector_init)
    init_projector: str | None = None


PRECISIONS = ("fp32", "bf16", "fp16")
MODES = ("indexed", "streaming")
EXPORTS = ("auto", "full", "trainable")


# ---- dict <-> dataclass ----------------------------------------------------------------------


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML-able mapping (nested dataclasses -> dicts)."""
    return dataclasses.asdict(cfg)


# ---- overrides -------------------------------------------------------------------------------


def _field_type(cls: type, path: list[str], full: str) -> Any:
    """The annotated type at a dotted path; a path into a dict/Any field is typed by YAML."""
    tp: Any = cls
    for i, name in enumerate(path):
        if not is_dataclass_type(tp):
            return Any  # inside a free-form mapping (recipe.options.x, deepspeed.extra.y)
        if name not in {f.name for f in dataclasses.fields(tp)}:
            raise ConfigError(f"override {full!r}: no key {'.'.join(path[: i + 1])!r}")
        tp = field_types(tp)[name]
    return tp


def _takes_text(tp: Any, text: str) -> bool:
    """A str field (or `str | None` unless the text is YAML null) keeps the override literally."""
    if tp is str:
        return True
    args = set(typing.get_args(tp))
    return args == {str, type(None)} and text.lower() not in ("", "null", "none", "~")


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Set `a.b.c=value` entries in the raw mapping; values are parsed as YAML scalars/lists.

    A value for a `str` field stays the literal text (`output_dir=007` is "007", not 7).
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
        path = key.split(".")
        tp = _field_type(TrainConfig, path, item)
        value: Any = text if _takes_text(tp, text) else yaml.safe_load(text) if text else None
        node = raw
        for name in path[:-1]:
            child = node.get(name)
            if not isinstance(child, dict):
                child = {}
                node[name] = child
            node = child
        node[path[-1]] = value
    return raw


# ---- load / save / validate ------------------------------------------------------------------


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config, apply overrides, check it; relative data paths stay as written."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"config not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}", file=str(path)) from e
    if not isinstance(raw, dict):
        raise ConfigError("top level must be a mapping", file=str(path))
    raw = apply_overrides(raw, list(overrides))
    try:
        cfg = from_dict(TrainConfig, raw)
        recipe_options(cfg.recipe.name, cfg.recipe.options)  # the recipe checks its own
    except ConfigError as e:
        raise ConfigError(str(e), file=str(path)) from e
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that would otherwise fail deep inside a rank."""
    ds = cfg.deepspeed
    if ds.zero_stage not in (0, 1, 2, 3, "auto"):
        raise ConfigError(f"deepspeed.zero_stage must be 0-3 or auto, got {ds.zero_stage!r}")
    if ds.precision not in PRECISIONS:
        raise ConfigError(f"deepspeed.precision must be one of {PRECISIONS}, got {ds.precision!r}")
    if ds.grad_accum < 1:
        raise ConfigError("deepspeed.grad_accum must be >= 1")
    if cfg.data.mode not in MODES:
        raise ConfigError(f"data.mode must be one of {MODES}, got {cfg.data.mode!r}")
    if cfg.data.batch_size < 1 or any(s.per_step < 1 for s in cfg.data.streams):
        raise ConfigError("data.batch_size and every data.streams[].per_step must be >= 1")
    if cfg.data.packing not in (True, False, "auto"):
        raise ConfigError(f"data.packing must be true, false or auto, got {cfg.data.packing!r}")
    if cfg.data.pack_length is not None and cfg.data.pack_length < 1:
        raise ConfigError("data.pack_length must be >= 1")
    if cfg.export not in EXPORTS:
        raise ConfigError(f"export must be one of {EXPORTS}, got {cfg.export!r}")


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically; `load_config` reads it back equal."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, allow_unicode=True)
    return path
