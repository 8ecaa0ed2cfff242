"""MS-COCO caption annotations: `captions_train2014.json`, `captions_val2014.json`.

`{"images": [{id, file_name, coco_url}], "annotations": [{image_id, caption}], ...}` -> one
manifest row per image, its captions in `texts` (annotation order), url = coco_url,
path = file_name. Captions must be joined to images, so both maps are held in memory
(~83k images, ~414k captions for train2014: tens of MB); the file itself is streamed.
`line` in rejects is the index in `images[]` or `annotations[]` (the detail names which).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmdata.core.manifest import ManifestSink, make_key
from vlmdata.sources.fields import (
    RowError,
    optional,
    printable,
    require,
    safe_relpath,
    split_from_name,
)
from vlmdata.sources.jsonstream import iter_object_arrays


def _image(element: Any) -> tuple[int, dict]:
    image_id = require(element, "id", int)
    path = safe_relpath(require(element, "file_name"), "file_name")
    return image_id, {"path": path, "url": optional(element, "coco_url")}


def _caption(element: Any) -> tuple[int, str]:
    return require(element, "image_id", int), require(element, "caption")


def read_file(path: Path, sink: ManifestSink, split: str | None = None) -> None:
    split = split_from_name(path.name, split)
    images: dict[int, tuple[int, dict]] = {}  # id -> (index in images[], fields)
    captions: dict[int, list[tuple[int, str]]] = {}  # image id -> [(index, caption)]

    def reject(e: RowError, member: str, i: int, record: Any, key: str | None = None) -> None:
        detail = f"{member}[{i}]: {e.detail}"
        record = printable(record)
        sink.reject(e.reason, file=str(path), line=i, detail=detail, record=record, key=key)

    for member, i, element in iter_object_arrays(path, stream=("images", "annotations")):
        try:
            if member == "images":
                image_id, info = _image(element)
                if image_id in images:
                    raise RowError("duplicate_key", f"image id {image_id} seen before")
                images[image_id] = (i, info)
            elif member == "annotations":
                image_id, caption = _caption(element)
                if not caption.strip():
                    raise RowError("empty_caption", "empty caption")
                captions.setdefault(image_id, []).append((i, caption.strip()))
        except RowError as e:
            reject(e, member, i, element)
    for image_id in sorted(captions.keys() - images.keys()):
        for i, caption in captions.pop(image_id):
            record = {"image_id": image_id, "caption": caption}
            reject(RowError("unknown_image", f"no image {image_id}"), "annotations", i, record)
    for image_id, (i, info) in images.items():
        key = make_key("coco", image_id)
        texts = [caption for _, caption in captions.get(image_id, [])]
        if not texts:
            error = RowError("empty_text", f"image {image_id} has no caption")
            reject(error, "images", i, {"id": image_id, **info}, key)
            continue
        row = {"key": key, "source": "coco", "split": split, "texts": texts}
        row.update(info, image_id=str(image_id))
        sink.keep(row, file=str(path), line=i)


def read(inputs: list[Path], sink: ManifestSink, split: str | None = None) -> None:
    """Each input is a captions_*.json; the split comes from its name (train2014 -> train)."""
    for path in inputs:
        read_file(path, sink, split)
