"""A config or checkpoint a rank cannot train from is a ConfigError / CheckpointError (vlmdata's
DataError), so the rank entry point prints one line and exits 2 instead of a traceback on every
rank; each raise site below used to be a bare ValueError / RuntimeError. ConfigError is still a
ValueError, so callers that caught ValueError keep working."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from vlmdata.core.errors import DataError
from vlmtrain.errors import CheckpointError, ConfigError


def test_the_rank_entry_prints_a_config_error_and_exits_2(monkeypatch, tmp_path, capsys):
    """`python -m vlmtrain.train.entry --config C`: what a rank runs. A ConfigError from the
    trainer (here: nothing trainable) is one line on stderr and status 2."""
    from vlmtrain.train import config, entry, setup, trainer

    def train(cfg, resume=False):
        return setup.param_groups(nn.Linear(2, 2).requires_grad_(False), 0.0)

    monkeypatch.setattr(config, "load_config", lambda path: object())
    monkeypatch.setattr(trainer, "train", train)
    monkeypatch.setenv("DS_ACCELERATOR", "cpu")
    assert entry.main(["--config", str(tmp_path / "config.yaml")]) == 2
    assert capsys.readouterr().err == "error: no trainable parameters: check model.train\n"


def test_nothing_trainable_is_a_config_error():
    from vlmtrain.train.setup import param_groups

    with pytest.raises(ConfigError, match="check model.train") as e:
        param_groups(nn.Linear(2, 2).requires_grad_(False), 0.0)
    assert isinstance(e.value, DataError) and isinstance(e.value, ValueError)


def test_an_unknown_projector_names_the_config_key():
    from vlmtrain.model.projector import TokenProjector

    with pytest.raises(ConfigError, match=r"model.projector must be one of .* got 'mlp9x'"):
        TokenProjector("mlp9x", 4, 4)


def test_bidirectional_attention_with_another_kernel_is_a_config_error():
    from vlmtrain.model.attention import image_block_mask

    is_image = torch.tensor([[True, False]])
    with pytest.raises(ConfigError, match="model.attn_implementation sdpa or eager"):
        image_block_mask(is_image, torch.ones(1, 2), "flash_attention_2", torch.float32)


def test_a_fromage_recipe_without_ret_token_is_a_config_error():
    from vlmtrain.recipes.base import RecipeContext
    from vlmtrain.recipes.fromage import require_ret

    ctx = RecipeContext(tokenizer=None, image_transform=None, num_image_tokens=1, image_token_id=0)
    with pytest.raises(ConfigError, match="recipe fromage needs model.ret_token"):
        require_ret(ctx, "fromage")


def test_a_grouped_stream_smaller_than_one_global_batch_is_a_data_error():
    """AutoVER's one-entity-per-batch streams: 3 rows cannot fill a global batch of 2 x 2
    ranks; the message says the sizes and what to change."""
    from vlmtrain.data.plan import StepPlan

    groups = [np.arange(3)]
    with pytest.raises(DataError, match=r"stream 0: 3 rows, fewer than one global batch of 2 x 2"):
        StepPlan([3], [2], world=2, rank=0, seed=0, groups=groups)


def test_a_checkpoint_deepspeed_cannot_load_is_a_checkpoint_error(monkeypatch, tmp_path):
    """`--resume` on a checkpoint DeepSpeed returns no path for: the message names it."""
    from vlmtrain.train import checkpointing

    class Engine:
        def load_checkpoint(self, *args, **kwargs):
            return None, None

    monkeypatch.setattr(checkpointing.rs, "resume_tag", lambda ckpt_dir: "step_5")
    with pytest.raises(CheckpointError, match="could not load this checkpoint") as e:
        checkpointing.resume(Engine(), tmp_path, 0, lambda position: position)
    assert str(e.value).startswith(f"{tmp_path / 'step_5'}: ")
