"""AutoVER's contrastive objective and entity encoder, checked against its published code.

Oracle: MrZilinXiao/AutoVER, LLaVA/llava/model/language_model/llava_llama.py
(`LlavaLlamaForCausalLMWithRet.forward`): `entity_features` and `ret_token_features`
L2-normalised, `logits_per_ret = (entity_features @ ret_token_features.t()).t()`,
`contrastive_loss(logits) = cross_entropy(logits, arange(N))`, `ret_to_entity_only` (the
config default) uses `logits_per_ret` alone, and `do_ret_this_batch = False` (no retrieval term)
when `torch.unique(entity_labels)` is shorter than the batch. Entity text: common_utils/
oven_data.py (`entity_text.strip() + ": " + summary.strip()`, summary cut to 64 tokens).
"""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from tests.train_model.conftest import make_samples
from vlmtrain.model.entity_encoder import cut_summary, entity_text
from vlmtrain.recipes import RecipeContext, get_recipe
from vlmtrain.recipes.losses import autover_contrastive

TINY_CLIP = {
    "text": {"vocab_size": 512, "hidden_size": 16, "intermediate_size": 32,
             "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77},
    "vision": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
               "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
}  # fmt: skip


def test_loss_equals_llava_llama_formula_by_hand():
    # orthonormal rows: logits_per_ret = I, so each row's loss is -log(e / (e + 1))
    ret = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised first: lengths do not matter
    ent = torch.tensor([[1.0, 0.0], [0.0, 0.5]])
    loss, used = autover_contrastive(ret, ent, torch.tensor([7, 9]))
    assert used and loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)


def test_loss_is_one_direction_and_has_no_temperature():
    g = torch.Generator().manual_seed(0)
    ret, ent = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    loss, used = autover_contrastive(ret, ent, torch.arange(5))
    r = ret / ret.norm(dim=1, keepdim=True)
    e = ent / ent.norm(dim=1, keepdim=True)
    cos = [[float(r[i] @ e[j]) for j in range(5)] for i in range(5)]  # <ret> i vs entity j
    want = sum(-cos[i][i] + math.log(sum(math.exp(c) for c in cos[i])) for i in range(5)) / 5
    assert used and loss.item() == pytest.approx(want, abs=1e-5)
    backward = sum(-cos[i][i] + math.log(sum(math.exp(cos[j][i]) for j in range(5)))
                   for i in range(5)) / 5  # fmt: skip
    assert abs(want - backward) > 1e-3  # the entity -> <ret> direction would differ


def test_repeated_entity_skips_the_whole_batch():
    ret = torch.randn(3, 4, requires_grad=True)
    ent = torch.randn(3, 4, requires_grad=True)
    loss, used = autover_contrastive(ret, ent, torch.tensor([4, 5, 4]))
    assert not used and loss.item() == 0.0
    loss.backward()  # the graph is kept: every rank runs the same backward
    assert torch.count_nonzero(ret.grad) == 0 and torch.count_nonzero(ent.grad) == 0


def test_summary_cut_to_whole_sentences():
    def words(text):
        return len(text.split())

    assert cut_summary("A b. C d e. F.", words, 4) == "A b. C d e."
    # first sentence too long: AutoVER falls back to words, and measures `kept + next` joined
    # without the space it then inserts ("One two" + "three" counts 2 words)
    assert cut_summary("One two three four five. Six.", words, 2) == "One two three"
    got = entity_text(" Eiffel Tower ", "A tower. In Paris.", words)
    assert got == "Eiffel Tower: A tower. In Paris."


@pytest.fixture()
def kb(tmp_path):
    path = tmp_path / "entities.parquet"
    pl.DataFrame({
        "entity_id": [f"Q{i}" for i in range(6)],
        "entity_name": [f"kb name {i}" for i in range(6)],
        "content": [f"entity {i} is a thing. It is red. It is big." for i in range(6)],
    }).write_parquet(path)  # fmt: skip
    return path


def _distinct(n=4):
    out = make_samples(n)
    for i, s in enumerate(out):
        s["meta"]["entity_id"] = f"Q{i}"
    return out


def test_autover_entity_encoder_trains_fusion_only(build, tokenizer_dir, kb):
    """Targets use the KB's name; the term trains <ret> projector + fusion; CLIP stays frozen."""
    model = build(new_tokens=["<ret>"], ret_token="<ret>", retrieval_dim=8,
                  entity_encoder_config=TINY_CLIP, entity_tokenizer=str(tokenizer_dir),
                  train=["projector", "lm", "heads"])  # fmt: skip
    recipe = get_recipe("autover", contrastive=True, kb=str(kb))
    ctx = RecipeContext.for_model(model)
    items = [recipe.make(s, ctx, "entity") for s in _distinct()]
    assert [it["entity_name"] for it in items] == [f"kb name {i}" for i in range(4)]
    batch = recipe.collate(items)
    assert batch["entity_pixel_values"].shape == (4, 3, 32, 32)
    want_text = "kb name 0: entity 0 is a thing. It is red. It is big."
    assert tokenizer_of(model).decode(items[0]["entity_clip_ids"], skip_special_tokens=True) == (
        want_text
    )
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    clip_before = [p.clone() for p in model.entity_encoder.clip_text.parameters()]
    model.train()
    hist = []
    for _ in range(8):
        loss, metrics = recipe.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.append(metrics)
    assert all(m["contrastive_skipped"] == 0.0 for m in hist)
    assert hist[-1]["contrastive_loss"] < hist[0]["contrastive_loss"]
    assert model.entity_encoder.fusion[0].weight.requires_grad
    assert not any(p.requires_grad for p in model.entity_encoder.clip_vision.parameters())
    after = list(model.entity_encoder.clip_text.parameters())
    assert all(torch.equal(a, b) for a, b in zip(clip_before, after, strict=True))


def tokenizer_of(model):
    return model.entity_tokenizer


def test_record_whose_entity_the_kb_lacks_is_skipped(build, kb):
    model = build(new_tokens=["<ret>"], ret_token="<ret>")
    recipe = get_recipe("autover", kb=str(kb))
    ctx = RecipeContext.for_model(model)
    s = _distinct(1)[0]
    s["meta"]["entity_id"] = "Q99"
    assert recipe.make(s, ctx, "entity") is None and ctx.skipped["entity_not_in_kb"] == 1


def _pair():
    g = torch.Generator().manual_seed(1)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)


def _rank(rank: int, world: int, port: int, out: str) -> None:
    import os

    import numpy as np
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    ret, ent = _pair()
    rows = slice(rank * 4, rank * 4 + 4)
    r, e = ret[rows].clone().requires_grad_(), ent[rows].clone().requires_grad_()
    loss, used = autover_contrastive(r, e, torch.arange(8)[rows])
    loss.backward()
    np.save(f"{out}/r{rank}.npy", r.grad.numpy())
    np.save(f"{out}/l{rank}.npy", np.array([float(loss), float(used)]))
    # an entity on both ranks (label 3 on rank 0 and rank 1): the whole term is skipped
    labels = torch.tensor([0, 1, 2, 3]) if rank == 0 else torch.tensor([3, 5, 6, 7])
    _, used_rep = autover_contrastive(r, e, labels)
    np.save(f"{out}/rep{rank}.npy", np.array([float(used_rep)]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_see_the_global_batch(tmp_path):
    """As AutoVER's all_gather_with_grad (LAVIS GatherLayer: gradients all-reduced), each rank
    computes the global loss and holds world x the global gradient of its own rows."""
    import socket

    import numpy as np

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    method = "spawn" if torch.distributed.is_initialized() else "fork"
    torch.multiprocessing.start_processes(
        _rank, args=(2, port, str(tmp_path)), nprocs=2, start_method=method
    )
    ret, ent = _pair()
    ret.requires_grad_()
    loss, _ = autover_contrastive(ret, ent, torch.arange(8))
    loss.backward()
    for r in (0, 1):
        rank_loss, used = np.load(tmp_path / f"l{r}.npy")
        assert used == 1.0 and np.allclose(rank_loss, loss.item(), atol=1e-6)
        grad = np.load(tmp_path / f"r{r}.npy")
        assert np.allclose(grad, 2 * ret.grad[r * 4 : r * 4 + 4].numpy(), atol=1e-6)
        assert np.load(tmp_path / f"rep{r}.npy")[0] == 0.0


def test_export_round_trip_keeps_the_entity_side(build, tokenizer, tokenizer_dir, tmp_path):
    """An export of a model with an entity encoder loads back to the same embeddings (the
    trained fusion and <ret> projector travel; random tiny CLIP towers too)."""
    from vlmtrain.train.checkpoint import export_names, load_checkpoint, write_export
    from vlmtrain.train.config import RecipeConfig, TrainConfig

    model = build(new_tokens=["<ret>"], ret_token="<ret>", retrieval_dim=8,
                  entity_encoder_config=TINY_CLIP, entity_tokenizer=str(tokenizer_dir),
                  train=["projector", "heads"]).eval()  # fmt: skip
    cfg = TrainConfig(model=model.cfg, recipe=RecipeConfig("autover", {"contrastive": True}))
    state = {n: p.detach().clone() for n, p in model.named_parameters()
             if n in set(export_names(model, cfg.model, "auto"))}  # fmt: skip
    assert any(n.startswith("entity_encoder.fusion.") for n in state)
    assert any(n.startswith("ret_proj.") for n in state)
    out = write_export(tmp_path / "export", state, cfg, tokenizer, {"step": 0})
    loaded, _, _ = load_checkpoint(out)
    ids, mask = torch.tensor([[5, 6, 7]]), torch.ones(1, 3, dtype=torch.long)
    pix, hidden = torch.randn(1, 3, 32, 32), torch.randn(2, 64)
    with torch.no_grad():
        assert torch.allclose(loaded.encode_entities(pix, ids, mask),
                              model.encode_entities(pix, ids, mask), atol=1e-6)  # fmt: skip
        assert torch.allclose(loaded.encode_ret(hidden), model.encode_ret(hidden), atol=1e-6)
