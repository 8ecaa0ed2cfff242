"""Losses: next-token loss on labelled positions; InfoNCE across 2 gloo ranks == 1 process
(embedding gradients and the learned temperature's gradient)."""

from __future__ import annotations

import math
import socket

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vlmtrain.recipes.losses import causal_lm_loss, info_nce

SCALE = 1.5  # a log scale, as the learned logit_scale


def test_causal_lm_loss_counts_only_labelled_tokens():
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 7)
    labels = torch.tensor([[-100, 3, -100, 5], [-100, -100, -100, -100]])
    loss, n = causal_lm_loss(logits, labels)
    picked = logits[0, [0, 2]]  # position t predicts label t+1
    want = F.cross_entropy(picked, torch.tensor([3, 5]))
    assert n == 2 and torch.allclose(loss, want)
    zero, n0 = causal_lm_loss(logits, torch.full_like(labels, -100))
    assert n0 == 0 and float(zero) == 0.0


def _data():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)
    groups = torch.tensor([0, 1, 2, 3, 4, 5, 0, 6])  # rows 0 and 6: the same entity
    return a, b, groups


def _single(groups):
    a, b, _ = _data()
    a.requires_grad_(), b.requires_grad_()
    scale = torch.tensor(SCALE, requires_grad=True)  # a learned temperature
    loss = info_nce(F.normalize(a, dim=-1), F.normalize(b, dim=-1), scale, groups)
    loss.backward()
    return float(loss.detach()), a.grad.numpy(), b.grad.numpy(), float(scale.grad)


def _rank(rank: int, world: int, port: int, out: str, use_groups: bool) -> None:
    import os

    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    a, b, groups = _data()
    rows = slice(rank * 4, rank * 4 + 4)
    a, b = a[rows].clone().requires_grad_(), b[rows].clone().requires_grad_()
    scale = torch.tensor(SCALE, requires_grad=True)
    loss = info_nce(
        F.normalize(a, dim=-1), F.normalize(b, dim=-1), scale, groups[rows] if use_groups else None
    )
    loss.backward()
    np.save(f"{out}/a{rank}.npy", a.grad.numpy())
    np.save(f"{out}/b{rank}.npy", b.grad.numpy())
    np.save(f"{out}/loss{rank}.npy", np.array([float(loss), float(scale.grad)]))
    dist.destroy_process_group()


@pytest.mark.slow
def test_info_nce_two_ranks_match_one_process(tmp_path):
    use_groups = True
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = (2, port, str(tmp_path), use_groups)
    # fork is fast, but a fork of a process whose torch.distributed is up (a one-rank trainer
    # test leaves it up for DeepSpeed) inherits that group and cannot start its own
    method = "spawn" if torch.distributed.is_initialized() else "fork"
    torch.multiprocessing.start_processes(_rank, args=args, nprocs=2, start_method=method)
    loss, ga, gb, gscale = _single(_data()[2] if use_groups else None)
    for r in (0, 1):
        rows = slice(r * 4, r * 4 + 4)
        rank_loss, rank_gscale = np.load(tmp_path / f"loss{r}.npy")
        assert np.allclose(rank_loss, loss, atol=1e-6)
        # the temperature scales every pair on every rank: each rank already holds the global
        # gradient, so it must equal the one process's (the data-parallel mean keeps it)
        assert gscale != 0 and np.allclose(rank_gscale, gscale, atol=1e-6)
        # each rank: 2 x the global gradient of its rows; the data-parallel mean halves it
        assert np.allclose(np.load(tmp_path / f"a{r}.npy"), 2 * ga[rows], atol=1e-6)
        assert np.allclose(np.load(tmp_path / f"b{r}.npy"), 2 * gb[rows], atol=1e-6)


def test_info_nce_groups_mask_same_entity_pairs():
    a, b, groups = _data()
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = math.exp(SCALE) * a @ b.T
    logits[0, 6] = logits[6, 0] = float("-inf")  # rows 0 and 6 share entity 0
    labels = torch.arange(8)
    want = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    assert torch.allclose(info_nce(a, b, SCALE, groups), want)
    plain = math.exp(SCALE) * a @ b.T
    unmasked = (F.cross_entropy(plain, labels) + F.cross_entropy(plain.T, labels)) / 2
    assert torch.allclose(info_nce(a, b, SCALE), unmasked)
    assert not torch.allclose(want, unmasked)
