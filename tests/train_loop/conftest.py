"""Generated data for the training-loop tests: a manifest of coloured PNGs with captions, sharded
by `vlmdata.shards.write_shards` into UNEVEN shards, an ids.parquet and a trained BPE tokenizer."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from vlmdata.core import layout
from vlmdata.core.net import free_port

SHAPES = ["circle", "square", "star", "triangle", "boat", "dog", "cat", "house"]
COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 40),
    "blue": (30, 60, 220),
    "yellow": (200, 180, 20),
}
N_TRAIN, N_TEST = 22, 4  # 26 samples, 5 per shard -> shards of 5,5,5,5,5,1 (uneven)
REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "examples" / "configs"


def _png(colour: tuple[int, int, int], i: int) -> bytes:
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (36, 36), colour)
    d = ImageDraw.Draw(im)
    d.rectangle([4 + i % 5 * 3, 4, 20 + i % 7 * 2, 24], fill=tuple(255 - c for c in colour))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _rows(images: Path) -> list[dict]:
    rows = []
    colours = list(COLOURS)
    for i in range(N_TRAIN + N_TEST):
        colour, shape = colours[i % 4], SHAPES[i % len(SHAPES)]
        name = f"img{i:03d}.png"
        (images / name).write_bytes(_png(COLOURS[colour], i))
        caption = f"a {colour} {shape}"
        conv = [
            {"from": "human", "value": "<image>\nwhat is shown?"},
            {"from": "gpt", "value": f"it is a {colour} {shape}"},
        ]
        rows.append(
            {
                "key": f"k{i:03d}",
                "source": "test",
                "split": "train" if i < N_TRAIN else "test",
                "path": name,
                "texts": [caption, f"one {shape} in {colour}"],
                "entity_id": f"Q{i % 8}",
                "entity_name": shape,
                "question": "what is this?",
                "conversations": __import__("json").dumps(conv),
            }
        )
    return rows


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> dict[str, Path]:
    """shards/ (write_shards output), ids.parquet, tokenizer/ — built once per session."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlmdata.core.manifest import ManifestSink
    from vlmdata.core.tokenizer import train_tokenizer
    from vlmdata.shards import write_shards

    root = tmp_path_factory.mktemp("loopdata")
    images = root / "images"
    images.mkdir()
    rows = _rows(images)
    extras = ["entity_id", "entity_name", "question", "conversations"]
    with ManifestSink(root / "src", extra_columns=extras) as sink:
        for row in rows:
            sink.keep(row)
    write_shards(
        root / "src" / layout.MANIFEST,
        images,
        root / "shards",
        samples_per_shard=5,
        progress=False,
    )
    ids = pa.table(
        {
            "key": [r["key"] for r in rows],
            "split": [r["split"] for r in rows],
            "identifier": [f"{i // 10}-{i % 10}" for i in range(len(rows))],
        }
    )
    pq.write_table(ids, root / "ids.parquet")
    texts = [t for r in rows for t in r["texts"]] + [
        "image: id caption: question: answer: entity what is shown? it is a",
        "A chat between a curious user and an artificial intelligence assistant. USER: "
        "ASSISTANT: describe the image. 0-1-2-3-4-5-6-7-8-9",
    ] * 5
    train_tokenizer(texts, root / "tokenizer", vocab_size=320)
    return {"shards": root / "shards", "ids": root / "ids.parquet", "tokenizer": root / "tokenizer"}


def data_overrides(dataset: dict[str, Path], out: Path) -> list[str]:
    """Command-line overrides pointing a tiny example config at the generated data."""
    return [
        f"data.shards={dataset['shards']}",
        f"data.ids={dataset['ids']}",
        f"model.tokenizer={dataset['tokenizer']}",
        f"output_dir={out}",
    ]


@pytest.fixture()
def one_rank(monkeypatch):
    """This pytest process as a world of one (torch.distributed stays up for later tests)."""
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1").items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MASTER_PORT", os.environ.get("VLM_TEST_PORT", str(free_port())))
    os.environ.setdefault("VLM_TEST_PORT", os.environ["MASTER_PORT"])
