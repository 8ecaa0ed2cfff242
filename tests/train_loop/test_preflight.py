"""The launcher's pre-flight: every shipped config (tiny and full size) passes it against the
generated shards, and each mistake a rank would hit after minutes of model building is a clear
error, naming its config key, before any rank starts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.vlmtrain import main
from tests.train_loop.conftest import CONFIGS, data_overrides
from vlmdata.core import layout
from vlmtrain.train.config import load_config
from vlmtrain.train.preflight import check_config

SHIPPED = sorted(p.name for p in CONFIGS.glob("*.yaml"))


def _local_stand_ins(tmp_path: Path, raw: str) -> list[str]:
    """Overrides replacing a config's model/export paths (/models/..., demo-out/...) by local
    stand-ins: pre-flight checks that they exist, the ranks would load them."""
    over = []
    if "\n  lm: " in raw:
        (tmp_path / "lm").mkdir(exist_ok=True)
        over.append(f"model.lm={tmp_path / 'lm'}")
    if "vision_pretrained:" in raw:
        (tmp_path / "clip.pt").write_bytes(b"")
        over.append(f"model.vision_pretrained={tmp_path / 'clip.pt'}")
    if "local-dir:" in raw:
        (tmp_path / "clip").mkdir(exist_ok=True)
        over.append(f"model.vision=local-dir:{tmp_path / 'clip'}")
    if "init_from:" in raw:
        export = tmp_path / "stage1" / "export"
        export.mkdir(parents=True, exist_ok=True)
        (export / "model.safetensors").write_bytes(b"")
        (export / "config.yaml").write_text("{}")
        over.append(f"init_from={tmp_path / 'stage1'}")
    for key, kind in (("init_projector", "file"), ("data.subset", "file"),
                      ("model.entity_encoder", "dir"), ("recipe.options.kb", "file"),
                      ("recipe.options.kb_images", "dir")):  # fmt: skip
        if f" {key.split('.')[-1]}: /" in raw or f"\n{key}: /" in raw:  # an absolute path
            stand_in = tmp_path / key.replace(".", "_")
            stand_in.mkdir() if kind == "dir" else stand_in.write_bytes(b"")
            over.append(f"{key}={stand_in}")
    return over


def _shards_of_its_format(config: Path, tmp_path: Path) -> Path:
    """A shards folder whose records `vlmdata manifest` made from small files in the published
    format of the config's data set (tests/train_loop/test_shipped_configs.py): the pre-flight
    reads the records table, not the tars."""
    import polars as pl

    from tests.train_loop.test_shipped_configs import data_for
    from vlmdata.sources import read_source

    cfg = load_config(config)
    source, inputs = data_for(config, cfg.recipe.name, tmp_path)
    read_source(source, inputs, tmp_path / "m")
    records = pl.read_parquet(tmp_path / "m" / layout.MANIFEST)
    shards = tmp_path / "shards"
    for rel in (layout.RECORDS, layout.INDEX):
        (shards / rel).parent.mkdir(parents=True)
    records.write_parquet(shards / layout.RECORDS)
    records.select("key").write_parquet(shards / layout.INDEX)
    return shards


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_config_passes_preflight(name, dataset, tmp_path):
    path = CONFIGS / name
    over = data_overrides(dataset, tmp_path / "run") + _local_stand_ins(tmp_path, path.read_text())
    over.append(f"data.shards={_shards_of_its_format(path, tmp_path)}")
    assert check_config(load_config(path, over)) == []


def _problems(dataset, tmp_path, config: str, *extra: str) -> list[str]:
    over = data_overrides(dataset, tmp_path / "run") + list(extra)
    return check_config(load_config(CONFIGS / config, over))


def test_missing_paths_are_named(dataset, tmp_path):
    got = _problems(
        dataset,
        tmp_path,
        "grace_tiny.yaml",
        f"data.shards={tmp_path / 'nope'}",
        f"model.tokenizer={tmp_path / 'tok'}",
        f"data.ids={tmp_path / 'ids.parquet'}",
        f"init_from={tmp_path / 'stage1'}",
    )
    assert got == [
        f"data.shards: no {layout.INDEX} in {tmp_path / 'nope'} (not a `vlmdata shard` output)",
        f"model.tokenizer: {tmp_path / 'tok'} does not exist",
        f"data.ids: {tmp_path / 'ids.parquet'} does not exist",
        "init_from: no export (model.safetensors + config.yaml) in "
        f"{tmp_path / 'stage1'} or its export/",
    ]
    assert _problems(dataset, tmp_path, "grace_tiny.yaml", "data.ids=null") == [
        "data.ids: the grace recipe needs an ids.parquet (vlmdata build-ids)"
    ]


def test_a_vision_tower_without_weights_is_named(dataset, tmp_path):
    got = _problems(dataset, tmp_path, "grace_tiny.yaml", "model.vision_config=null",
                    "model.vision=ViT-B-32")  # fmt: skip
    assert len(got) == 1 and got[0].startswith(
        "model.vision / vision_pretrained: open_clip model 'ViT-B-32' has no weights"
    )
    missing = tmp_path / "clip.pt"
    got = _problems(dataset, tmp_path, "grace_tiny.yaml", "model.vision_config=null",
                    "model.vision=ViT-B-32", f"model.vision_pretrained={missing}")  # fmt: skip
    assert got == [
        "model.vision / vision_pretrained: CLIP weights must be a local checkpoint file: "
        f"{missing} is not one"
    ]


def test_batch_size_that_does_not_split_into_the_mix(dataset, tmp_path):
    got = _problems(dataset, tmp_path, "grace_tiny.yaml", "data.streams=[]", "data.batch_size=6")
    assert got == [
        "data.batch_size=6 does not split into the recipe's mix {'image2id': 16, 'query2id': 48}; "
        "use a multiple of its total or list data.streams explicitly"
    ]


def test_stream_kind_the_recipe_does_not_make(dataset, tmp_path):
    got = _problems(
        dataset, tmp_path, "fromage_tiny.yaml", "data.streams=[{kind: image2id, per_step: 4}]"
    )
    assert got == ["data.streams[0].kind: 'image2id' is not a kind of recipe fromage (['caption'])"]


def test_filters_that_select_nothing_or_name_no_column(dataset, tmp_path):
    got = _problems(dataset, tmp_path, "caption_tiny.yaml", "data.filter={split: restval}")
    assert got == [
        f"{dataset['shards']}: stream 'caption': filter {{'split': 'restval'}} selects no record "
        "(splits here: ['test', 'train'])"
    ]
    got = _problems(dataset, tmp_path, "caption_tiny.yaml", "data.filter={splitt: train}")
    assert len(got) == 1
    assert got[0].startswith(f"{dataset['shards']}: data filter {{'splitt': 'train'}}: ")
    assert "splitt" in got[0].split(": ", 2)[2]


def test_columns_the_recipe_reads_must_be_in_the_records(dataset, tmp_path):
    import polars as pl

    shards = tmp_path / "shards"
    shutil.copytree(dataset["shards"], shards)
    for name in (layout.RECORDS, layout.INDEX):
        table = pl.read_parquet(shards / name)
        table.drop("conversations", "question", strict=False).write_parquet(shards / name)
    llava = _problems(dataset, tmp_path, "llava_stage2_tiny.yaml", f"data.shards={shards}",
                      "init_from=null")  # fmt: skip
    assert len(llava) == 1
    assert llava[0].startswith(
        f"recipe llava: reads column 'conversations', which the records of {shards} do not have"
    )
    # stage 1 reads a caption from a one-turn chat or, failing that, from texts
    assert _problems(dataset, tmp_path, "llava_stage1_tiny.yaml", f"data.shards={shards}") == []
    autover = _problems(dataset, tmp_path, "autover_tiny.yaml", f"data.shards={shards}")
    assert [p.split(",")[0] for p in autover if p.startswith("recipe")] == [
        "recipe autover: reads column 'question'"
    ]


def test_launch_stops_before_any_rank_starts(dataset, tmp_path):
    out = tmp_path / "run"
    over = data_overrides(dataset, out) + [f"model.tokenizer={tmp_path / 'tok'}"]
    res = CliRunner().invoke(main, ["launch", str(CONFIGS / "grace_tiny.yaml"), *over])
    assert res.exit_code == 2
    assert f"model.tokenizer: {tmp_path / 'tok'} does not exist" in res.output
    assert not out.exists()  # no config written, no rank started
