"""Every shipped config's data filters select records of the data its recipe is meant for.

A config whose filter selects nothing trains on nothing (the shipped AutoVER configs once
selected `split: train` while OVEN's records carry `entity_train`, `query_train`, ...). Each
config is loaded as shipped, its streams resolved, and each stream's filter applied to the
records `vlmdata manifest` makes from small files in the published format of its data set.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.train_loop.conftest import CONFIGS
from vlmdata.core import layout
from vlmdata.sources import read_source
from vlmtrain.data.train_data import stream_sizes
from vlmtrain.recipes import get_recipe
from vlmtrain.train.config import load_config, resolve_streams

SHIPPED = sorted(CONFIGS.glob("*.yaml"))


def karpathy(tmp: Path, dataset: str) -> tuple[str, list[Path]]:
    """Karpathy's dataset_{flickr30k,coco}.json shape ({images: [{filepath (COCO), filename,
    split, sentences: [{raw}], imgid, cocoid}], dataset}); `vlmdata demo` writes the same."""
    images = [
        {"filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg", "split": split,
         "sentences": [{"raw": f"a photo number {i}"}], "imgid": i, "cocoid": i}
        for i, split in enumerate(["train", "val", "test", "restval", "train"])
    ]  # fmt: skip
    path = tmp / f"dataset_{dataset}.json"
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    return "karpathy", [path]


def cc3m(tmp: Path) -> tuple[str, list[Path]]:
    """Google's Train_GCC-training.tsv: caption<TAB>url, no header."""
    path = tmp / "Train_GCC-training.tsv"
    path.write_text("".join(f"caption {i}\thttp://example.com/{i}.jpg\n" for i in range(4)))
    return "cc3m", [path]


def llava(tmp: Path) -> tuple[str, list[Path]]:
    """LLaVA JSON (blip_laion_cc_sbu_558k.json for stage 1, llava_v1_5_mix665k.json for 2)."""
    chat = [{"from": "human", "value": "<image>\nDescribe."}, {"from": "gpt", "value": "A."}]
    records = [{"id": f"{i:09d}", "image": f"{i:05d}/{i:09d}.jpg", "conversations": chat}
               for i in range(3)]  # fmt: skip
    path = tmp / "llava_v1_5_mix665k.json"
    path.write_text(json.dumps(records))
    return "llava", [path]


def oven(tmp: Path) -> tuple[str, list[Path]]:
    """oven_entity_train.jsonl + oven_query_train.jsonl ({data_id, image_id, question,
    entity_id, entity_text, data_split})."""
    paths = []
    for family in ("entity", "query"):
        path = tmp / f"oven_{family}_train.jsonl"
        rows = [{"data_id": f"oven_{family}_train_{i:08d}", "image_id": f"oven_{i:08d}",
                 "question": "what is this?", "entity_id": f"Q{i}", "entity_text": f"E{i}",
                 "data_split": f"{family}_train"} for i in range(3)]  # fmt: skip
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        paths.append(path)
    return "oven", paths


def data_for(config: Path, recipe: str, tmp: Path) -> tuple[str, list[Path]]:
    """The published format a config's recipe trains on (demo_*: `vlmdata demo`'s data)."""
    if config.name.startswith("demo_"):
        return karpathy(tmp, "demo")
    return {
        "grace": lambda: karpathy(tmp, "flickr30k"),
        "caption": lambda: karpathy(tmp, "coco"),
        "fromage": lambda: cc3m(tmp),
        "llava": lambda: llava(tmp),
        "autover": lambda: oven(tmp),
    }[recipe]()


def test_every_config_is_covered():
    assert len(SHIPPED) >= 14
    recipes = {load_config(c).recipe.name for c in SHIPPED}
    assert recipes == {"grace", "fromage", "caption", "llava", "autover"}


@pytest.mark.parametrize("config", SHIPPED, ids=[c.stem for c in SHIPPED])
def test_filters_select_records_of_the_configs_data(config, tmp_path):
    cfg = load_config(config)
    recipe = get_recipe(cfg.recipe.name, **dict(cfg.recipe.options))
    source, inputs = data_for(config, cfg.recipe.name, tmp_path)
    result = read_source(source, inputs, tmp_path / "m")
    assert result.kept > 0 and not result.rejects
    records = pl.read_parquet(tmp_path / "m" / layout.MANIFEST)
    streams = resolve_streams(cfg.data, dict(recipe.mix))
    sizes = stream_sizes(records, streams, where=str(config))
    assert all(n > 0 for n in sizes)


def test_a_filter_selecting_nothing_names_the_splits_there(tmp_path):
    cfg = load_config(CONFIGS / "autover_tiny.yaml", ["data.filter={split: train}"])
    oven(tmp_path)
    read_source("oven", sorted(tmp_path.glob("*.jsonl")), tmp_path / "m")
    records = pl.read_parquet(tmp_path / "m" / layout.MANIFEST)
    streams = resolve_streams(cfg.data, {"entity": 1})
    from vlmdata.core.errors import DataError

    with pytest.raises(DataError, match=r"selects no record.*entity_train.*query_train"):
        stream_sizes(records, streams)


GRACE_CONFIGS = [c for c in SHIPPED if load_config(c).recipe.name == "grace"]


@pytest.mark.parametrize("config", GRACE_CONFIGS, ids=[c.stem for c in GRACE_CONFIGS])
def test_grace_configs_memorise_every_retrievable_image_and_query_on_train(config, tmp_path):
    """GRACE's data scripts memorise every image with split != 'restval' (test images
    included: their identifiers are what retrieval must produce) and learn query -> id on train
    captions only. Checked on the Karpathy rows by split, not on the config's text."""
    cfg = load_config(config)
    source, inputs = karpathy(tmp_path, "flickr30k")
    read_source(source, inputs, tmp_path / "m")
    records = pl.read_parquet(tmp_path / "m" / layout.MANIFEST)
    streams = {s.kind: s for s in resolve_streams(cfg.data, {"image2id": 1, "query2id": 1})}
    assert set(streams) == {"image2id", "query2id"}
    from vlmtrain.data.batches import row_filter

    def splits(kind: str) -> set[str]:
        expr = row_filter(streams[kind].filter)
        chosen = records if expr is None else records.filter(expr)
        return set(chosen["split"].to_list())

    assert splits("image2id") == {"train", "val", "test"}
    assert splits("query2id") == {"train"}
