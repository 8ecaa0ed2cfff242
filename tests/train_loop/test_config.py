"""Config: YAML -> dataclasses, typed overrides, resolved save round trip, DeepSpeed dict."""

from __future__ import annotations

import math

import pytest

from tests.train_loop.conftest import CONFIGS
from vlmdata.core.errors import DataError
from vlmtrain.train.config import (
    DataConfig,
    StreamConfig,
    TrainConfig,
    load_config,
    resolve_streams,
    save_config,
)

GRACE = CONFIGS / "grace_tiny.yaml"


def test_overrides_are_typed_by_the_field():
    cfg = load_config(
        GRACE,
        [
            "optim.lr=1e-3",
            "schedule.max_steps=5",
            "output_dir=007",
            "data.ids=null",
            "data.filter={split: [train, restval]}",
            "model.train=[projector]",
            "model.vision_feature=-1",
            "deepspeed.zero_stage=3",
            "deepspeed.extra.zero_optimization.overlap_comm=true",
            "recipe.options.id_prefix=' '",
        ],
    )
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.schedule.max_steps == 5
    assert cfg.output_dir == "007"  # a str field keeps the literal text
    assert cfg.data.ids is None
    assert cfg.data.filter == {"split": ["train", "restval"]}
    assert cfg.model.train == ["projector"]
    assert cfg.model.vision_feature == -1
    assert cfg.deepspeed.zero_stage == 3
    assert cfg.deepspeed.extra == {"zero_optimization": {"overlap_comm": True}}
    assert cfg.recipe.options == {"id_prefix": " "}
    assert cfg.model.vision_config["vision_cfg"]["layers"] == 2  # untouched YAML survives


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lrr=1", "no key 'optim.lrr'"),
        ("schedule.max_steps=many", "schedule.max_steps"),
        ("deepspeed.zero_stage=4", "zero_stage must be 0-3"),
        ("deepspeed.precision=fp8", "precision must be one of"),
        ("model.train=[wings]", "unknown part"),
        ("optim", "expected KEY=VALUE"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(DataError, match=message):
        load_config(GRACE, [override])


def test_unknown_yaml_key_is_an_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  learning_rate: 0.1\n")
    with pytest.raises(
        DataError, match=r"bad.yaml: config.optim: unknown key\(s\) \['learning_rate'\]"
    ):
        load_config(bad)


def test_resolved_config_round_trips(tmp_path):
    cfg = load_config(
        GRACE, ["optim.betas=[0.9, 0.95]", "data.streams=[{kind: image2id, per_step: 3}]"]
    )
    assert cfg.data.streams == [StreamConfig("image2id", 3, None)]
    path = save_config(cfg, tmp_path / "out" / "config.yaml")
    again = load_config(path)
    assert again == cfg
    save_config(again, tmp_path / "again.yaml")
    assert (tmp_path / "again.yaml").read_bytes() == path.read_bytes()


def test_default_config_round_trips(tmp_path):
    cfg = TrainConfig()
    assert load_config(save_config(cfg, tmp_path / "c.yaml")) == cfg


def test_streams_from_the_recipe_mix():
    grace_mix = {"image2id": 16, "query2id": 48}
    got = resolve_streams(DataConfig(batch_size=64), grace_mix)
    assert [(s.kind, s.per_step, s.filter) for s in got] == [
        ("image2id", 16, {"split": "train"}),
        ("query2id", 48, {"split": "train"}),
    ]
    assert [s.per_step for s in resolve_streams(DataConfig(batch_size=8), grace_mix)] == [2, 6]
    with pytest.raises(DataError, match="does not split"):
        resolve_streams(DataConfig(batch_size=6), grace_mix)
    explicit = DataConfig(streams=[StreamConfig("query2id", 5, {"split": "test"})])
    assert [(s.kind, s.per_step, s.filter) for s in resolve_streams(explicit, grace_mix)] == [
        ("query2id", 5, {"split": "test"})
    ]


def test_deepspeed_dict():
    from vlmtrain.train.setup import deepspeed_config

    cfg = load_config(
        GRACE,
        [
            "deepspeed.zero_stage=3",
            "deepspeed.precision=bf16",
            "deepspeed.grad_accum=2",
            "optim.grad_clip=0.5",
            "deepspeed.extra={zero_optimization: {overlap_comm: true}, steps_per_print: 7}",
        ],
    )
    assert deepspeed_config(cfg, world=2, micro=8) == {
        "train_micro_batch_size_per_gpu": 8,
        "gradient_accumulation_steps": 2,
        "train_batch_size": 32,
        "gradient_clipping": 0.5,
        "zero_optimization": {"stage": 3, "overlap_comm": True},
        "bf16": {"enabled": True},
        "fp16": {"enabled": False, "initial_scale_power": 16},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 7,
        "wall_clock_breakdown": False,
    }


def test_warmup_cosine():
    from vlmtrain.train.setup import WarmupCosine

    f = WarmupCosine(warmup=2, total=6, min_ratio=0.1)
    got = [f(s) for s in range(7)]
    want = [0.5, 1.0] + [0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * k / 4)) for k in range(5)]
    assert got == pytest.approx(want)
    assert got[-1] == pytest.approx(0.1)


def test_every_example_config_loads():
    names = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert len(names) >= 12
    for name in names:
        cfg = load_config(CONFIGS / name)
        assert cfg.recipe.name in {"grace", "fromage", "caption", "llava", "autover"}, name
