"""Karpathy splits: `dataset_flickr8k.json`, `dataset_flickr30k.json`, `dataset_coco.json`.

`{"images": [{filename, filepath (COCO only), split, sentences: [{raw}], imgid, cocoid}],
"dataset": "coco"}` -> one manifest row per image with all its captions in `texts`.
`line` in rejects is the index in `images[]` (the detail says so). The `dataset` field names the
source; it follows `images` in the published files, so it is found in a first, cheap pass.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmdata.core.choices import RESTVAL_RULES
from vlmdata.core.errors import DataError
from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.sources.fields import (
    RowError,
    optional,
    path_stem,
    printable,
    require,
    safe_relpath,
)
from vlmdata.sources.jsonstream import iter_object_arrays

SPLITS = ("train", "val", "test", "restval")
DATASETS = ("flickr8k", "flickr30k", "coco", "demo")  # demo: `vlmdata demo`


def dataset_name(path: Path) -> str:
    """The `dataset` member, falling back to the file name (`dataset_flickr30k.json`)."""
    for key, _, value in iter_object_arrays(path, stream=("images",)):
        if key == "dataset" and isinstance(value, str) and value in DATASETS:
            return value
    for name in DATASETS:
        if path.stem == f"dataset_{name}":
            return name
    raise DataError(f"no 'dataset' member naming one of {DATASETS}", file=str(path))


def _captions(image: dict[str, Any]) -> tuple[list[str], int]:
    """Non-empty captions, and how many sentences were empty."""
    sentences = require(image, "sentences", list)
    texts, empty = [], 0
    for j, sentence in enumerate(sentences):
        raw = require(sentence, "raw") if isinstance(sentence, dict) else None
        if raw is None:
            raise RowError("wrong_type", f"sentences[{j}] is not an object with 'raw'")
        if raw.strip():
            texts.append(raw.strip())
        else:
            empty += 1
    if not texts:
        raise RowError("empty_text", "no non-empty sentence")
    return texts, empty


def image_row(image: dict[str, Any], dataset: str, restval: str) -> tuple[dict, int]:
    """The manifest row for one `images[]` element, and its count of empty captions."""
    filename = require(image, "filename")
    filepath = optional(image, "filepath")
    split = require(image, "split")
    if split not in SPLITS:
        raise RowError("bad_split", f"split {split!r} not in {SPLITS}")
    if split == "restval":
        if restval == "skip":
            raise RowError("skipped_restval", "restval image skipped (--restval skip)")
        split = "train"
    path = safe_relpath(f"{filepath}/{filename}" if filepath else filename, "filename")
    ident = optional(image, "cocoid", int)
    ident = ident if ident is not None else optional(image, "imgid", int)
    image_id = str(ident) if ident is not None else path_stem(filename)
    texts, empty = _captions(image)
    row = {
        "key": make_key(dataset, image_id),
        "source": dataset,
        "split": split,
        "url": None,
        "path": path,
        "texts": texts,
        "image_id": image_id,
    }
    return row, empty


def read(inputs: list[Path], sink: ManifestSink, restval: str = "train") -> None:
    """`restval`: "train" folds restval images into train (the usual 113k COCO train split);
    "skip" lists them in rejects as `skipped_restval` (not counted as errors)."""
    if restval not in RESTVAL_RULES:
        raise DataError(f"--restval must be train or skip, not {restval!r}")
    for path in inputs:
        dataset = dataset_name(path)
        for key, i, image in iter_object_arrays(path, stream=("images",)):
            if key != "images":
                continue
            try:
                row, empty = image_row(image, dataset, restval)
            except RowError as e:
                detail = f"images[{i}]: {e.detail}"
                sink.reject(
                    e.reason, file=str(path), line=i, detail=detail, record=printable(image)
                )
                continue
            for _ in range(empty):
                detail = f"images[{i}]: an empty sentence dropped, the image kept"
                sink.reject("empty_caption", file=str(path), line=i, detail=detail, key=row["key"])
            sink.keep(row, file=str(path), line=i)
