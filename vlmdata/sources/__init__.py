"""Source readers: published data set files in, the manifest and rejects tables out.

    from vlmdata.sources import read_source
    result = read_source("karpathy", ["dataset_flickr30k.json"], "work/", restval="train")
    print(result.summary()); result.check(0.5)

One module per published format; each exposes `read(inputs, sink, **options)` writing to a
`vlmdata.core.manifest.ManifestSink`, which validates every row and counts rejects.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import ManifestSink
from vlmdata.core.rejects import Tally, check_reject_ratio

# Reasons for rows dropped on purpose (an option asked for it): listed in the rejects table and
# the summary, but not counted against --max-reject-ratio.
SKIP_REASONS = frozenset({"skipped_restval"})


@dataclass
class SourceResult(Tally):
    """What a reader did: kept rows, reject counts by reason, and other outputs it wrote."""

    out_dir: Path | None = None
    # e.g. text_only, entities, header (a skipped header line), renamed (repeated ids suffixed)
    extra: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [self.table()]
        lines += [f"{name:<9} {n:>10,}" for name, n in self.extra.items()]
        return "\n".join(lines)

    def check(self, max_reject_ratio: float) -> None:
        """Raise RejectRatioExceeded when unreadable rows pass the ratio (skips don't count)."""
        bad = sum(n for r, n in self.rejects.items() if r not in SKIP_REASONS)
        kept = self.kept + self.extra.get("text_only", 0)
        check_reject_ratio(kept, bad, max_reject_ratio)


@dataclass(frozen=True)
class Source:
    name: str
    module: str  # imported on use, so listing sources stays cheap
    extra_columns: tuple[str, ...]
    help: str
    options: tuple[str, ...] = ()  # the reader's keyword options (images, split, restval)

    def reader(self) -> Callable[..., dict[str, int] | None]:
        import importlib

        return importlib.import_module(f"vlmdata.sources.{self.module}").read


SOURCES: dict[str, Source] = {
    s.name: s
    for s in (
        Source("cc3m", "cc3m", (), "Google CC3M TSV (caption<TAB>url) or FROMAGe TSV", ("split",)),
        Source(
            "karpathy",
            "karpathy",
            ("image_id",),
            "Karpathy dataset_{flickr8k,30k,coco}.json",
            ("restval",),
        ),
        Source("coco", "coco", ("image_id",), "COCO captions_{train,val}2014.json", ("split",)),
        Source(
            "oven",
            "oven",
            ("image_id", "data_id", "entity_id", "entity_name", "question", "image_key"),
            "OVEN oven_{entity,query}_{train,val,test}.jsonl",
            ("images", "split"),
        ),
        Source(
            "oven-kb",
            "oven_kb",
            ("entity_id", "entity_name"),
            "OVEN Wiki6M_ver_1_0.jsonl",
            ("split",),
        ),
        Source(
            "llava",
            "llava",
            ("data_id", "conversations", "image_key"),
            "LLaVA / LLaVAR instruction JSON",
            ("split",),
        ),
        Source(
            "vqav2",
            "vqav2",
            ("image_id", "data_id", "question", "answers", "image_key"),
            "VQAv2 v2_OpenEnded_mscoco_*_questions.json + v2_mscoco_*_annotations.json",
            ("split",),
        ),
    )
}


def read_source(
    name: str, inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, **options
) -> SourceResult:
    """Read `inputs` with source `name` into OUT_DIR's manifest and rejects tables.

    Options (None means unset): images (image folder), split, restval ("train" | "skip");
    progress (a running row count on stderr).
    Raises DataError for an unknown source, a missing input, or an option the source lacks.
    """
    if name not in SOURCES:
        raise DataError(f"unknown source {name!r}; known: {', '.join(SOURCES)}")
    source = SOURCES[name]
    paths = [Path(p) for p in inputs]
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: no such file")
    read = source.reader()
    progress = bool(options.pop("progress", False))
    options = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(k for k in options if k not in source.options)
    if unknown:
        opts = ", ".join("--" + k.replace("_", "-") for k in unknown)
        raise DataError(f"source {name!r} does not take {opts}")
    with ManifestSink(
        out_dir, source.extra_columns, stage=f"manifest:{name}", progress=progress
    ) as sink:
        extra = read(paths, sink, **options) or {}
    if sink.renamed:
        extra = {**extra, "renamed": sink.renamed}
    return SourceResult(
        kept=sink.kept, rejects=Counter(sink.rejects.counts), out_dir=Path(out_dir), extra=extra
    )
