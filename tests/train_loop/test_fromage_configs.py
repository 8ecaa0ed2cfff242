"""Every shipped FROMAGe config's example command runs (tiny stand-ins for the placeholder paths
and sizes), and the paper config's InfoNCE sees the paper's 180 candidates.

The command is read from the config's own header comment, so a comment that drifts from what
runs fails here. Its overrides are kept, with each placeholder path replaced by a tiny local
stand-in (a 2-layer OPT saved as a Hugging Face directory, the loop tests' shards and
tokenizer), then `vlmtrain launch --dry-run` checks the command line and pre-flight, and the same
config trains two steps in this process.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

from tests.train_loop.conftest import CONFIGS
from vlmtrain.train.config import load_config

pytestmark = pytest.mark.slow
FROMAGE = sorted(c for c in CONFIGS.glob("*.yaml") if load_config(c).recipe.name == "fromage")
TINY_VISION = (
    "model.vision_config={embed_dim: 24, vision_cfg: {image_size: 32, patch_size: 8, width: 32,"
    " layers: 1, head_width: 16, mlp_ratio: 2.0}}"
)


def example_command(config: Path) -> list[str]:
    """The `vlmtrain launch ...` command in the config's header comment, as argv."""
    lines, on = [], False
    for raw in config.read_text().splitlines():
        if not raw.startswith("#"):
            break
        text = raw.lstrip("# ").rstrip()
        if text.startswith("vlmtrain launch"):
            on = True
        if on:
            lines.append(text.rstrip("\\").strip())
            if not text.endswith("\\"):
                break
    assert lines, f"{config.name}: no `vlmtrain launch` example in its header"
    return shlex.split(" ".join(lines))


@pytest.fixture(scope="module")
def tiny_opt(dataset, tmp_path_factory) -> Path:
    """A 2-layer OPT (FROMAGe's LM family) with the loop tokenizer, as a local HF directory."""
    from transformers import OPTConfig, OPTForCausalLM

    from vlmdata.core.tokenizer import load_tokenizer

    out = tmp_path_factory.mktemp("opt")
    tok = load_tokenizer(dataset["tokenizer"])
    sizes = dict(hidden_size=32, word_embed_proj_dim=32, ffn_dim=64, num_hidden_layers=2)
    sizes["max_position_embeddings"] = 128
    cfg = OPTConfig(vocab_size=len(tok), num_attention_heads=2, **sizes)
    torch.manual_seed(0)
    OPTForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def stand_ins(argv: list[str], dataset, lm: Path, out: Path) -> tuple[list[str], list[str]]:
    """(launch options, overrides) of the example with its placeholder paths made local."""
    local = {
        "model.lm": str(lm),
        "model.tokenizer": str(dataset["tokenizer"]),
        "data.shards": str(dataset["shards"]),
        "output_dir": str(out),
        "model.vision_pretrained": "",  # the tiny tower below is built, not loaded
        "model.vision": "tiny",
    }
    assert argv[:2] == ["vlmtrain", "launch"] and argv[2].endswith(".yaml")
    options, overrides = [], []
    for arg in argv[3:]:
        if "=" in arg and not arg.startswith("-"):
            key = arg.split("=", 1)[0]
            assert key in local, f"unexpected override {arg}"
            overrides.append(f"{key}={local[key]}")
        else:
            options.append(arg)
    return options, overrides


@pytest.mark.parametrize("config", FROMAGE, ids=[c.stem for c in FROMAGE])
def test_example_command_runs(config, dataset, tiny_opt, tmp_path, one_rank, monkeypatch):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from tests.train_loop.test_train import run_in_process

    monkeypatch.chdir(tmp_path)  # the dry run writes its config to a relative output_dir here
    argv = example_command(config)
    assert (CONFIGS.parent.parent / argv[2]).resolve() == config.resolve()
    out = tmp_path / "run"
    options, overrides = stand_ins(argv, dataset, tiny_opt, out)
    tiny = [TINY_VISION, "data.batch_size=6", "data.num_workers=0", "schedule.max_steps=2",
            "schedule.warmup_steps=1", "log.progress=false"]  # fmt: skip
    if "contrastive_batch" in json.dumps(load_config(config).recipe.options):
        tiny.append("recipe.options.contrastive_batch=6")
    if any(o.startswith("model.lm=") for o in overrides):
        tiny.append("model.tokenizer=null")  # the tokenizer of the LM directory, as shipped
    res = CliRunner().invoke(main, ["launch", str(config), *options, "--dry-run",
                                    *overrides, *tiny])  # fmt: skip
    assert res.exit_code == 0, res.output
    # the same config, trained here (one rank): data overrides are the example's own
    run, summary = run_in_process(config.name, dataset, out, *overrides, *tiny)
    assert summary["steps"] == 2
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["retrieval_candidates"] for m in metrics] == [6.0, 6.0]
    # after each step the [RET] row has the mean norm of the other rows (FROMAGe's rescale)
    model = run.engine.module
    with torch.no_grad():
        emb = model.embed_tokens
        norms = emb(torch.arange(emb.num_embeddings)).float().norm(dim=1)
    ret = model.ret_token_id
    others = torch.cat([norms[:ret], norms[ret + 1 :]])
    assert float(norms[ret]) == pytest.approx(float(others.mean()), rel=1e-2)
    # ... in the optimizer's fp32 master copy too (bf16 runs), or the next step would undo it
    from deepspeed.utils import safe_get_full_fp32_param

    master = safe_get_full_fp32_param(emb.new_weight)
    if master is not None:
        slot = int(emb.slot[ret])
        assert float(master[slot].norm()) == pytest.approx(float(others.mean()), rel=1e-2)
    from vlmtrain.model.tokens import _unfused_master

    unfused = _unfused_master(run.engine.optimizer, emb.new_weight)
    assert (master is not None or unfused is not None) == (run.cfg.deepspeed.precision == "bf16")
    if unfused is not None:
        slot = int(emb.slot[ret])
        assert float(unfused[slot].norm()) == pytest.approx(float(others.mean()), rel=1e-2)


def test_paper_config_has_180_infonce_candidates_per_step():
    """FROMAGe trains 180 pairs in one pass (main.py: --batch-size 180, no accumulation): the
    contrastive loss sees every one of them. Gradient accumulation would not add candidates."""
    cfg = load_config(CONFIGS / "fromage_opt6.7b_vitl14.yaml")
    assert cfg.data.batch_size == 180 and cfg.deepspeed.grad_accum == 1
    assert cfg.recipe.options["contrastive_batch"] == 180
    assert cfg.model.vision_feature == "pooler_output" and cfg.model.image_aspect == "crop"


def test_contrastive_batch_counts_candidates(tmp_path):
    """The recipe's count is the rows of its InfoNCE: the configured 180 pass, 60 (the old
    config's micro-batch) is refused with the reason."""
    from tests.train_model.conftest import make_samples, tiny_config
    from vlmdata.core.tokenizer import load_tokenizer, train_tokenizer
    from vlmtrain.model.vlm import build_model
    from vlmtrain.recipes import RecipeContext, get_recipe

    train_tokenizer(["a red circle on a blue background"] * 5, tmp_path, vocab_size=120)
    torch.manual_seed(0)
    model = build_model(
        tiny_config(vision_feature="pooler_output", projector="linear", num_visual_tokens=1,
                    new_tokens=["[RET]"], ret_token="[RET]", retrieval_dim=8,
                    train=["projector", "new_tokens", "heads"]),
        load_tokenizer(tmp_path),
    )  # fmt: skip
    options = load_config(CONFIGS / "fromage_opt6.7b_vitl14.yaml").recipe.options
    recipe = get_recipe("fromage", **options)
    ctx = RecipeContext.for_model(model, max_length=24)
    samples = make_samples(6)
    rows = [recipe.make(samples[i % 6], ctx, "caption", 0) for i in range(180)]
    with torch.no_grad():
        _, metrics = recipe.loss(model, recipe.collate(rows))
    assert metrics["retrieval_candidates"] == 180
    with torch.no_grad(), pytest.raises(ValueError, match="180 but this InfoNCE has 60"):
        recipe.loss(model, recipe.collate(rows[:60]))


@pytest.mark.parametrize("zero", [2, 3])
def test_ret_rescale_sticks_under_zero_in_bf16(zero, dataset, tmp_path, one_rank):
    """ZeRO-2 (DeepSpeed's hp mapping) and ZeRO-3 (partitioned rows): after the last step the
    [RET] row and its fp32 master copy both have the mean norm of the other rows."""
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    from tests.train_loop.test_train import run_in_process

    out = tmp_path / "run"
    run, _ = run_in_process("fromage_tiny.yaml", dataset, out, f"deepspeed.zero_stage={zero}",
                            "deepspeed.precision=bf16", "model.dtype=bfloat16",
                            "schedule.max_steps=2")  # fmt: skip
    emb = run.engine.module.embed_tokens
    ret = run.engine.module.ret_token_id
    master = safe_get_full_fp32_param(emb.new_weight)
    assert master is not None
    with deepspeed.zero.GatheredParameters([emb.base.weight, emb.new_weight]), torch.no_grad():
        norms = emb(torch.arange(emb.num_embeddings)).float().norm(dim=1)
    others = torch.cat([norms[:ret], norms[ret + 1 :]]).mean()
    assert float(norms[ret]) == pytest.approx(float(others), rel=1e-2)
    assert float(master[int(emb.slot[ret])].norm()) == pytest.approx(float(others), rel=1e-2)
