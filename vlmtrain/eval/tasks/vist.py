"""`vlmtrain eval vist`: FROMAGe's contextual image retrieval on Visual Storytelling (Table 1).

Protocol of kohjingyu/fromage `evals/eval_vist_retrieval.py`: the SIS file
(`val.story-in-sequence.json`) is grouped by story_id in file order; the target is each story's
last image; the context is its captions interleaved with the earlier images,
`c1 <img1> c2 <img2> ... c5 [RET]`; candidates are every image the file's stories use that could
be loaded; a story with any image missing is skipped; the story's earlier images are never
retrieved. `captions` (1-5) keeps only the last N captions (the paper's "1 caption" row) and
`images=False` drops the images (its "5 captions" row); earlier images stay excluded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vlmdata.core.errors import DataError
from vlmtrain.eval.data import read_json
from vlmtrain.eval.metrics.context_retrieval import vist_recall
from vlmtrain.eval.options import VistOptions, check_options
from vlmtrain.eval.report import Report

if TYPE_CHECKING:
    from vlmtrain.eval.generation import ModelBundle

ANNOTATION_FIELDS = ("story_id", "text", "photo_flickr_id")


@dataclass
class Story:
    story_id: str
    captions: list[str]
    image_ids: list[str]


def read_stories(path: str | os.PathLike) -> list[Story]:
    """Stories of a VIST SIS file ({"annotations": [[{story_id, text, photo_flickr_id,
    worker_arranged_photo_order, ...}], ...], "images": [...], ...}), in file order."""
    data = read_json(path)
    anns = data.get("annotations") if isinstance(data, dict) else None
    if not isinstance(anns, list):
        raise DataError("not a VIST story-in-sequence file: no 'annotations' list", file=str(path))
    stories: dict[str, Story] = {}
    for n, item in enumerate(anns, start=1):
        if not (isinstance(item, list) and len(item) == 1 and isinstance(item[0], dict)):
            raise DataError(f"annotation {n}: expected a list of one object", file=str(path))
        ann = item[0]
        missing = [f for f in ANNOTATION_FIELDS if f not in ann]
        if missing:
            raise DataError(f"annotation {n} lacks {missing}", file=str(path))
        story = stories.setdefault(str(ann["story_id"]), Story(str(ann["story_id"]), [], []))
        story.captions.append(str(ann["text"]))
        story.image_ids.append(str(ann["photo_flickr_id"]))
    if not stories:
        raise DataError("no stories", file=str(path))
    return list(stories.values())


def story_context(story: Story, images: dict, captions: int = 5, with_images: bool = True):
    """The pieces of one query: the last `captions` captions, each earlier one followed by its
    image when `with_images` (the script's `[c1, img1, ..., c4, img4, c5]`)."""
    if not 1 <= captions:
        raise DataError(f"captions must be at least 1, got {captions}")
    start = max(0, len(story.captions) - captions)
    pieces: list = []
    for i in range(start, len(story.captions)):
        pieces.append(story.captions[i])
        if with_images and i < len(story.captions) - 1:
            pieces.append(images[story.image_ids[i]])
    return pieces


def run_vist(o: VistOptions, *, model_bundle: ModelBundle | None = None) -> Report:
    """Recall@K over the stories (limit: the first N stories and the images they use)."""
    check_options(o, VistOptions, "run_vist")
    from vlmtrain.eval.generation import load_model
    from vlmtrain.eval.tasks.interleaved import (
        image_embeddings,
        image_files,
        load_for_tower,
        ret_embeddings,
    )

    stories = read_stories(o.stories_path)[: o.limit]
    model = (model_bundle or load_model(o.checkpoint, o.device)).model
    files = image_files(o.images_dir)
    used = list(dict.fromkeys(i for s in stories for i in s.image_ids))
    loaded = {}
    for image_id in used:
        im = load_for_tower(model, files[image_id]) if image_id in files else None
        if im is not None:
            loaded[image_id] = im
    if not loaded:
        raise DataError(f"none of the stories' images is in {o.images_dir} (<photo id>.<ext>)")
    ids = list(loaded)
    image_emb = image_embeddings(model, [loaded[i] for i in ids], o.batch_size)
    kept = [s for s in stories if all(i in loaded for i in s.image_ids)]
    if not kept:
        raise DataError("every story has an image missing from the image folder")
    contexts = [story_context(s, loaded, o.captions, o.with_images) for s in kept]
    queries = ret_embeddings(model, contexts, o.progress, "story")
    rec = vist_recall(
        queries, image_emb, ids, [s.image_ids[-1] for s in kept], [s.image_ids[:-1] for s in kept],
        o.ks,
    )  # fmt: skip
    report = Report(
        task="vist",
        config={"captions": o.captions, "images": o.with_images, "limit": o.limit},
        checkpoint=str(o.checkpoint) if o.checkpoint else None,
        data=str(o.stories_path),
    )
    for k in o.ks:
        report.add(f"recall@{k}", rec[k], len(kept))
    report.details = {"stories": len(stories), "scored": len(kept), "candidates": len(ids),
                      "skipped_missing_image": len(stories) - len(kept)}  # fmt: skip
    return report
