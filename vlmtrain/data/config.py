"""The data section of a training config: where samples come from and how a rank's micro-batch
is made of them (the stream mix). In the data layer, so the loaders read it without importing
the trainer; vlmtrain.train.config nests it in TrainConfig.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vlmtrain.errors import ConfigError


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


class RunData(Protocol):
    """What the data layer reads of a run's config (vlmtrain.train.config.TrainConfig is one)."""

    data: DataConfig
    seed: int


def resolve_streams(data: DataConfig, mix: dict[str, int]) -> list[StreamConfig]:
    """The configured streams, or the recipe's `mix` scaled to `batch_size` (exact or an error)."""
    if data.streams:
        streams = data.streams
    else:
        total = sum(mix.values())
        if any(data.batch_size * w % total for w in mix.values()):
            raise ConfigError(
                f"data.batch_size={data.batch_size} does not split into the recipe's mix {mix}; "
                "use a multiple of its total or list data.streams explicitly"
            )
        streams = [StreamConfig(k, data.batch_size * w // total) for k, w in mix.items()]
    return [
        StreamConfig(s.kind, s.per_step, dict(data.filter if s.filter is None else s.filter))
        for s in streams
    ]
