"""`vlmdata demo`: a built-in image-caption data set in the real Karpathy JSON format.

The images are coloured shapes on plain backgrounds and the captions describe exactly what is
drawn, so a tiny model trained for minutes on a CPU can learn the text→image link, and the whole
pipeline (manifest → shards → identifiers → trie → training → evaluation) runs on data that
needs no download. Output, like `dataset_flickr30k.json` + `flickr30k-images/`:

    OUT/dataset_demo.json   {"images": [{filename, imgid, split, sentids, sentences: [{raw,
                             tokens, imgid, sentid}]}], "dataset": "demo"}
    OUT/images/000000.jpg …
    OUT/attributes.jsonl    what each image shows (filename, shape, color, size, position,
                            background): ground truth for tests, not part of the Karpathy format

Everything is derived from the seed (one random stream per image), so a rerun is byte-identical.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vlmdata.core.atomic import atomic_open, atomic_path
from vlmdata.core.errors import DataError
from vlmdata.demo.captions import captions, tokenize
from vlmdata.demo.draw import PALETTE, POSITIONS, SHAPES, SIZES, Scene, encode_jpeg, render

DATASET_FILE = "dataset_demo.json"
IMAGES_DIR = "images"
ATTRIBUTES_FILE = "attributes.jsonl"
CAPTIONS_PER_IMAGE = 5


@dataclass
class DemoSummary:
    out_dir: Path
    images: int
    splits: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = ", ".join(f"{s} {n}" for s, n in self.splits.items())
        return f"{self.images} images ({parts}) in {self.out_dir}"


def _combo_count() -> int:
    return len(SHAPES) * len(PALETTE) * (len(PALETTE) - 1) * len(SIZES) * len(POSITIONS)


def _draw_attributes(rng: np.random.Generator) -> tuple[str, str, str, str, str]:
    colors = list(PALETTE)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    color = colors[int(rng.integers(len(colors)))]
    others = [c for c in colors if c != color]  # the shape must stand out from its background
    background = others[int(rng.integers(len(others)))]
    size = list(SIZES)[int(rng.integers(len(SIZES)))]
    position = list(POSITIONS)[int(rng.integers(len(POSITIONS)))]
    return shape, color, size, position, background


def sample_scene(rng: np.random.Generator, taken: set | None = None) -> Scene:
    """A random scene; with `taken`, one whose attribute combination is not in it yet.

    Test (and val) images get unique combinations, so every test caption describes exactly one
    test image and Recall@1 = 1.0 is reachable.
    """
    attrs = _draw_attributes(rng)
    while taken is not None and attrs in taken:
        attrs = _draw_attributes(rng)
    if taken is not None:
        taken.add(attrs)
    shape, color, size, position, background = attrs
    return Scene(
        shape=shape,
        color=color,
        size=size,
        position=position,
        background=background,
        dx=float(rng.uniform(-0.03, 0.03)),
        dy=float(rng.uniform(-0.03, 0.03)),
        scale=float(rng.uniform(0.93, 1.07)),
        angle=float(rng.uniform(-12.0, 12.0)),
    )


def assign_splits(n: int, n_test: int, n_val: int, seed: int) -> list[str]:
    """Split per image: a seeded permutation picks the test and val images, the rest train."""
    if n_test + n_val >= n:
        raise DataError(f"--test {n_test} + --val {n_val} leave no training images of {n}")
    order = np.random.default_rng([seed, 0]).permutation(n)
    splits = ["train"] * n
    for i in order[:n_test]:
        splits[int(i)] = "test"
    for i in order[n_test : n_test + n_val]:
        splits[int(i)] = "val"
    return splits


def _image_record(imgid: int, filename: str, split: str, texts: list[str]) -> dict:
    sentids = [imgid * CAPTIONS_PER_IMAGE + j for j in range(len(texts))]
    sentences = [
        {"tokens": tokenize(raw), "raw": raw, "imgid": imgid, "sentid": sid}
        for raw, sid in zip(texts, sentids, strict=True)
    ]
    return {
        "sentids": sentids,
        "imgid": imgid,
        "sentences": sentences,
        "split": split,
        "filename": filename,
    }


def _write_bytes(path: Path, data: bytes) -> None:
    """Atomic but not fsynced: thousands of tiny files; a killed run is simply rerun."""
    if path.exists() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def generate_demo(
    out_dir: str | os.PathLike,
    *,
    images: int = 3000,
    seed: int = 0,
    size: int = 64,
    test: int = 100,
    val: int = 100,
    progress: bool = True,
) -> DemoSummary:
    """Write the demo data set to `out_dir` (see the module docstring for the layout)."""
    from tqdm import tqdm

    if size < 16:
        raise DataError(f"--size {size}: images must be at least 16 px to show a shape")
    unique_needed = max(test, val)
    if unique_needed > _combo_count():
        raise DataError(f"at most {_combo_count()} distinct test/val scenes exist")
    out = Path(out_dir)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    splits = assign_splits(images, test, val, seed)
    taken: dict[str, set] = {"test": set(), "val": set()}
    records, attributes = [], []
    for imgid in tqdm(range(images), desc="demo images", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, 1, imgid])
        split = splits[imgid]
        scene = sample_scene(rng, taken.get(split))
        filename = f"{imgid:06d}.jpg"
        _write_bytes(out / IMAGES_DIR / filename, encode_jpeg(render(scene, size)))
        texts = captions(scene.attributes(), rng, CAPTIONS_PER_IMAGE)
        records.append(_image_record(imgid, filename, split, texts))
        attributes.append({"filename": filename, "split": split, **scene.attributes()})
    with atomic_open(out / ATTRIBUTES_FILE, "w", encoding="utf-8") as f:
        for row in attributes:
            f.write(json.dumps(row, sort_keys=True) + "\n")
    # Written last: its presence means the images it lists are all there.
    with atomic_open(out / DATASET_FILE, "w", encoding="utf-8") as f:
        json.dump({"images": records, "dataset": "demo"}, f)
    counts = Counter(splits)
    return DemoSummary(out, images, {s: counts[s] for s in ("train", "val", "test") if counts[s]})


def train_demo_tokenizer(
    out_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, vocab_size: int = 1000
):
    """A byte-level BPE trained on the TRAIN captions (tiny demo LMs ship no tokenizer).

    Test captions are the retrieval queries, so they stay out; the words are the same anyway.
    Digits and identifier punctuation are in the byte alphabet, so any identifier tokenizes.
    """
    from vlmdata.core.tokenizer import train_tokenizer

    path = Path(out_dir) / DATASET_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    texts = [
        s["raw"] for img in data["images"] if img["split"] == "train" for s in img["sentences"]
    ]
    if not texts:
        raise DataError("no train captions to train a tokenizer on", file=str(path))
    return train_tokenizer(texts, tokenizer_dir, vocab_size=vocab_size)
