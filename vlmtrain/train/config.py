"""Training configuration: YAML -> nested dataclasses, `a.b.c=value` overrides, resolved save.

Every section is a dataclass, so a typo in the YAML or an override is an error naming the key,
and override values are parsed by the type of the field they set (`optim.lr=3e-4` is a float,
`data.streams=[...]` is YAML). The resolved config is written beside the checkpoints and is the
only input of the per-rank entry point, so every rank trains from the same, saved settings.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmdata.core.atomic import atomic_open
from vlmdata.core.errors import DataError
from vlmtrain.model.config import ModelConfig


@dataclass
class StreamConfig:
    """One example stream of the per-step mix (GRACE: image2id x16 + query2id x48).

    `kind` is handed to the recipe (`ctx.kind`) so it knows which example to make from a sample;
    `filter` keeps index rows whose columns equal a value or one of a list of values (default:
    `data.filter`).
    """

    kind: str = "default"
    per_step: int = 8  # examples per rank per micro-batch from this stream
    filter: dict[str, Any] | None = None


@dataclass
class DataConfig:
    """Where samples come from and how a rank's micro-batch is made of them.

    With no `streams`, the recipe's own `mix` (kind -> weight) is scaled to `batch_size`
    examples per rank per micro-batch: grace's 16:48 with batch_size 64 is 16 image2id + 48
    query2id, with batch_size 8 it is 2 + 6.
    """

    shards: str = ""  # a `vlmdata shard` output folder (index/index.parquet + shards/)
    ids: str | None = None  # ids.parquet (identifier per key), for grace
    mode: str = "indexed"  # "indexed" (pread by index) | "streaming" (sequential tar reads)
    batch_size: int = 8  # examples per rank per micro-batch (when `streams` is empty)
    filter: dict[str, Any] = field(default_factory=lambda: {"split": "train"})
    streams: list[StreamConfig] = field(default_factory=list)
    max_length: int = 512  # tokens per example (recipes truncate or skip, counted)
    # several examples per row, attention kept within each (vlmtrain.data.packing): "auto" packs
    # where the recipe's loss allows (all but FROMAGe and contrastive AutoVER), true insists
    packing: bool | str = "auto"
    pack_length: int | None = None  # tokens per packed row (default: max_length)
    num_workers: int = 0  # DataLoader worker processes per rank
    shuffle_buffer: int = 256  # streaming: samples held for shuffling
    resampled: bool = True  # streaming: draw shards with replacement (OpenCLIP)
    # a record column (AutoVER: entity_id) no value of which appears twice in one global batch
    # (ranks x batch_size; AutoVER's --one_class_per_batch); indexed mode
    unique_in_batch: str | None = None
    # an OVEN JSONL whose data_ids are the only records kept of the splits it covers (AutoVER:
    # oven_entity_train_0.5.jsonl, half the entity split); other splits pass whole; indexed mode
    subset: str | None = None


@dataclass
class RecipeConfig:
    name: str = "caption"
    options: dict[str, Any] = field(default_factory=dict)  # passed to the recipe


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


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(tp: Any, value: Any, where: str) -> Any:
    """Check/convert a YAML value to the annotated type (dataclasses, lists, optionals)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        errors = []
        for a in inner:
            try:
                return _convert(a, value, where)
            except DataError as e:
                errors.append(str(e))
        raise DataError(f"{where}: {value!r} fits none of {inner}")
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise DataError(f"{where}: expected a list, got {value!r}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise DataError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise DataError(f"{where}: expected a number, got {value!r}") from None
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if tp in (int, float, str, bool) and (type(value) is not tp):
        raise DataError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "config") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys are an error naming the path."""
    if cls is ModelConfig:
        try:
            return ModelConfig.from_dict(dict(data))
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: {e}") from e
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise DataError(f"{where}: unknown key(s) {unknown}; known: {names}")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain YAML-able mapping (nested dataclasses -> dicts)."""
    return dataclasses.asdict(cfg)


# ---- overrides -------------------------------------------------------------------------------


def _field_type(cls: type, path: list[str], full: str) -> Any:
    """The annotated type at a dotted path; a path into a dict/Any field is typed by YAML."""
    tp: Any = cls
    for i, name in enumerate(path):
        if not _is_dataclass_type(tp):
            return Any  # inside a free-form mapping (recipe.options.x, deepspeed.extra.y)
        if name not in {f.name for f in dataclasses.fields(tp)}:
            raise DataError(f"override {full!r}: no key {'.'.join(path[: i + 1])!r}")
        tp = _hints(tp)[name]
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
            raise DataError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
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
        raise DataError(f"not valid YAML: {e}", file=str(path)) from e
    if not isinstance(raw, dict):
        raise DataError("top level must be a mapping", file=str(path))
    raw = apply_overrides(raw, list(overrides))
    try:
        cfg = from_dict(TrainConfig, raw)
    except DataError as e:
        raise DataError(str(e), file=str(path)) from e
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks that would otherwise fail deep inside a rank."""
    ds = cfg.deepspeed
    if ds.zero_stage not in (0, 1, 2, 3, "auto"):
        raise DataError(f"deepspeed.zero_stage must be 0-3 or auto, got {ds.zero_stage!r}")
    if ds.precision not in PRECISIONS:
        raise DataError(f"deepspeed.precision must be one of {PRECISIONS}, got {ds.precision!r}")
    if ds.grad_accum < 1:
        raise DataError("deepspeed.grad_accum must be >= 1")
    if cfg.data.mode not in MODES:
        raise DataError(f"data.mode must be one of {MODES}, got {cfg.data.mode!r}")
    if cfg.data.batch_size < 1 or any(s.per_step < 1 for s in cfg.data.streams):
        raise DataError("data.batch_size and every data.streams[].per_step must be >= 1")
    if cfg.data.packing not in (True, False, "auto"):
        raise DataError(f"data.packing must be true, false or auto, got {cfg.data.packing!r}")
    if cfg.data.pack_length is not None and cfg.data.pack_length < 1:
        raise DataError("data.pack_length must be >= 1")
    if cfg.export not in EXPORTS:
        raise DataError(f"export must be one of {EXPORTS}, got {cfg.export!r}")


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically; `load_config` reads it back equal."""
    path = Path(path)
    with atomic_open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(to_dict(cfg), f, sort_keys=False, allow_unicode=True)
    return path


def resolve_streams(data: DataConfig, mix: dict[str, int]) -> list[StreamConfig]:
    """The configured streams, or the recipe's `mix` scaled to `batch_size` (exact or an error)."""
    if data.streams:
        streams = data.streams
    else:
        total = sum(mix.values())
        if any(data.batch_size * w % total for w in mix.values()):
            raise DataError(
                f"data.batch_size={data.batch_size} does not split into the recipe's mix {mix}; "
                "use a multiple of its total or list data.streams explicitly"
            )
        streams = [StreamConfig(k, data.batch_size * w // total) for k, w in mix.items()]
    return [
        StreamConfig(s.kind, s.per_step, dict(data.filter if s.filter is None else s.filter))
        for s in streams
    ]
