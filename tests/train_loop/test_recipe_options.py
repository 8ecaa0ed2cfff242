"""Typed recipe options: each recipe's Options dataclass is filled from `recipe.options` once,
when the config is loaded; a bad key or value is vlmtrain's ConfigError naming the config file
and the key (exit 2 from the CLI), and a recipe is never changed after it is built."""

from __future__ import annotations

import dataclasses

import pytest
from click.testing import CliRunner

from tests.train_loop.conftest import CONFIGS
from vlmdata.core.errors import DataError
from vlmtrain.errors import CheckpointError, ConfigError, TrainError
from vlmtrain.recipes import get_recipe
from vlmtrain.recipes.autover import AutoverOptions
from vlmtrain.recipes.fromage import FromageOptions
from vlmtrain.train.config import load_config

GRACE = CONFIGS / "grace_tiny.yaml"


def test_vlmtrain_errors_are_bad_input_to_the_cli():
    """The CLI's one rule (DataError -> message, exit 2) covers them; option checks stay
    ValueErrors, as callers of the recipes caught them before."""
    assert issubclass(ConfigError, TrainError) and issubclass(CheckpointError, TrainError)
    assert issubclass(TrainError, DataError) and issubclass(ConfigError, ValueError)
    assert str(ConfigError("k: bad", file="c.yaml")) == "c.yaml: k: bad"


def test_unknown_option_names_the_file_and_the_key():
    with pytest.raises(ConfigError) as err:
        load_config(GRACE, ["recipe.options.id_prefx=x"])
    assert str(err.value).startswith(f"{GRACE}: recipe.options: unknown key(s) ['id_prefx']")
    assert "'id_prefix'" in str(err.value)  # the known keys are listed


def test_option_values_are_typed_by_the_field():
    with pytest.raises(ConfigError, match=r"recipe\.options\.seed: expected int, got 'one'"):
        load_config(CONFIGS / "fromage_tiny.yaml", ["recipe.options.seed=one"])
    recipe = get_recipe("fromage", concat_captions_prob=1, contrastive_batch=None)
    assert recipe.options == FromageOptions(concat_captions_prob=1.0)
    assert type(recipe.concat_captions_prob) is float  # 1 (YAML int) read as the field's float


def test_value_checks_and_unknown_recipes_are_config_errors():
    with pytest.raises(ConfigError, match=f"{GRACE}: objective must be one of"):
        load_config(GRACE, ["recipe.name=autover", "recipe.options={objective: x}"])
    with pytest.raises(ConfigError, match=r"unknown recipe 'nope'; choose from \['autover'"):
        load_config(GRACE, ["recipe.name=nope", "recipe.options={}"])


def test_packed_is_a_new_recipe_with_the_same_options():
    recipe = get_recipe("autover", kb="kb.parquet")
    packed = recipe.packed(64)
    assert packed is not recipe and packed.pack_length == 64 and recipe.pack_length is None
    assert packed.options == recipe.options == AutoverOptions(kb="kb.parquet")
    with pytest.raises(dataclasses.FrozenInstanceError):
        recipe.options.kb = "other.parquet"


def test_launch_exits_2_on_an_unknown_option(tmp_path):
    from cli.vlmtrain import main

    res = CliRunner().invoke(
        main,
        ["launch", str(GRACE), f"output_dir={tmp_path}", "recipe.options.bogus=1", "--dry-run"],
    )
    assert res.exit_code == 2, res.output
    assert f"error: {GRACE}: recipe.options: unknown key(s) ['bogus']" in res.output
