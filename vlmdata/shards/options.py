"""`ShardOptions`: every choice that shapes a shard run, in one typed object.

The CLI (`vlmdata shard`, `vlmdata download`) builds one from its flags and the library takes
the same object (`write_shards(..., options=ShardOptions(...))`), so an option is declared once
here and not copied through signatures. `ImageOptions` is the per-image part sent to workers.

Two different resizes exist and are named apart: `resize_side` here (our writer resizes local
or downloaded images, `vlmdata shard --resize`) and img2dataset's `image_size` in
`FetchOptions` (resizing while downloading, `vlmdata download --image-size`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from vlmdata.core.choices import DISTRIBUTORS, REENCODE_FORMATS, RESIZE_MODES
from vlmdata.core.manifest import duplicate_image_rule
from vlmdata.shards.images import DEFAULT_MAX_PIXELS

# fields that change how fast a run goes, never what it writes
RUN_FIELDS = ("workers", "distributor")


@dataclass(frozen=True)
class ImageOptions:
    """What the image checks and optional resize do; identical in every worker."""

    min_side: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    resize: str | None = None  # None | "keep_ratio" | "center_crop" | "border"
    resize_side: int = 256
    reencode: str | None = None  # None | "jpg" | "png" | "webp"
    decode: bool = True  # full decode check; False: container completeness only

    @property
    def transforms(self) -> bool:
        return self.resize is not None or self.reencode is not None


@dataclass(frozen=True)
class ShardOptions:
    """Layout, image checks and resize of a shard run, and how it is spread over workers.

    `distributor`: "multiprocessing" (`workers` local processes), "pyspark" or "ray" (the
    plan, partitioned (shards/cluster_plan.py), and one task per output shard run on that
    engine; see shards/distribute.py).
    """

    name: str = "data"
    samples_per_shard: int = 1000
    max_shard_bytes: int | None = None
    min_side: int = 0
    max_pixels: int = DEFAULT_MAX_PIXELS
    resize: str | None = None
    resize_side: int = 256
    reencode: str | None = None
    decode_check: bool = True
    workers: int = 1
    distributor: str = "multiprocessing"
    # a second image id with the same bytes: "share" (another record of the stored image) or
    # "reject" (duplicate_image); None: per source (core/manifest.py SHARED_IMAGE_SOURCES)
    duplicate_images: str | None = None
    # one tar sample per text (KEY, KEY_t1, KEY_t2, ...; the image repeated), so a peer that
    # reads one txt per sample (OpenCLIP) sees every caption; default: one sample per image
    every_text: bool = False

    def __post_init__(self) -> None:
        if self.samples_per_shard < 1:
            raise ValueError("samples_per_shard must be >= 1")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.resize is not None and self.resize not in RESIZE_MODES:
            raise ValueError(f"resize {self.resize!r}: use one of {RESIZE_MODES}")
        if self.reencode is not None and self.reencode not in REENCODE_FORMATS:
            raise ValueError(f"reencode {self.reencode!r}: use one of {REENCODE_FORMATS}")
        if self.duplicate_images is not None:
            duplicate_image_rule(None, self.duplicate_images)  # ValueError when not a rule
        if self.distributor not in DISTRIBUTORS:
            raise ValueError(f"distributor {self.distributor!r}: use one of {DISTRIBUTORS}")

    @property
    def image(self) -> ImageOptions:
        return ImageOptions(
            self.min_side,
            self.max_pixels,
            self.resize,
            self.resize_side,
            self.reencode,
            self.decode_check,
        )

    def params(self) -> dict[str, Any]:
        """What the output depends on (index/index.parquet metadata, download fingerprints)."""
        d = {k: v for k, v in asdict(self).items() if k not in RUN_FIELDS}
        if self.resize is None:
            d["resize_side"] = None
        return {**d, "checksum": "sha256"}

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
