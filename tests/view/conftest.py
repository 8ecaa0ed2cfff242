"""View fixtures: a demo-sized shard set, and one with shared-image records and rejects."""

from __future__ import annotations

import pytest

from tests.shards.conftest import make_bad_set, row, write_manifest
from vlmdata.core import layout
from vlmdata.shards import write_shards

LLAVA_EXTRAS = ("entity_id", "question", "conversations")


def _chat(q: str, a: str) -> str:
    """LLaVA-Instruct's `conversations` (liuhaotian/LLaVA-Instruct-150K), as manifest JSON text."""
    import json

    return json.dumps([{"from": "human", "value": f"<image>\n{q}"}, {"from": "gpt", "value": a}])


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory):
    """The demo data set (`vlmdata demo`, 90 images: 50 train, 20 val, 20 test) sharded."""
    from vlmdata.demo.dataset import generate_demo
    from vlmdata.sources import read_source

    root = tmp_path_factory.mktemp("view_demo")
    generate_demo(root / "data", images=90, seed=3, size=64, test=20, val=20, progress=False)
    read_source("karpathy", [root / "data" / "dataset_demo.json"], root / "m")
    write_shards(
        root / "m" / layout.MANIFEST, root / "data" / "images", root / "shards",
        samples_per_shard=40, progress=False,
    )  # fmt: skip
    return root / "shards"


@pytest.fixture(scope="session")
def mixed_shards(tmp_path_factory):
    """make_bad_set's good images and one row per reject reason, plus three LLaVA-style test
    records (source llava: records about an image) naming the file of a stored train image, so
    that image carries four records in two splits. Returns (OUT, image folder, manifest)."""
    import polars as pl

    root = tmp_path_factory.mktemp("view_mixed")
    manifest, images, _ = make_bad_set(root / "in")
    rows = pl.read_parquet(manifest).to_dicts()
    shared = rows[0]["path"]
    rows += [
        row(f"llava{i}", shared, "test", source="llava", n_texts=1,
            question=f"What is shown, take {i}?", conversations=_chat(f"What, take {i}?", "Noise."))
        for i in range(3)
    ]  # fmt: skip
    write_manifest(manifest, rows, LLAVA_EXTRAS)
    write_shards(manifest, images, root / "out", samples_per_shard=4, min_side=16, progress=False)
    return root / "out", images, manifest
