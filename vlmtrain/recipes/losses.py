"""Losses shared by the recipes: label-smoothed next-token loss, and InfoNCE.

The plain next-token loss and CLIP's temperature constants are the model's
(vlmtrain.model.losses: the model layer sits below the recipes); they are re-exported here.

InfoNCE gathers embeddings from every rank (negatives from the whole global batch, as CLIP and
FROMAGe train). `all_gather` returns tensors without gradient, so the local slice is put back
as the original tensor and every rank computes the global loss (OpenCLIP's default scheme):
each rank's gradient is then exact for its own embeddings.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.model.losses import CLIP_LOGIT_SCALE, MAX_LOGIT_SCALE, causal_lm_loss

__all__ = [
    "CLIP_LOGIT_SCALE",
    "MAX_LOGIT_SCALE",
    "autover_contrastive",
    "causal_lm_loss",
    "gather_batch",
    "info_nce",
    "smoothed_lm_loss",
    "world_size",
]


def smoothed_lm_loss(
    logits: torch.Tensor, labels: torch.Tensor, eps: float
) -> tuple[torch.Tensor, int]:
    """GIT's label-smoothed next-token loss (`SmoothLabelCrossEntropyLoss`, eps 0.1 there).

    The target distribution q puts 1 - eps on the label and eps / (V - 1) on each other token;
    the loss is KL(q || p) summed over the vocabulary, averaged over supervised tokens (GIT's
    value: cross-entropy against q minus q's entropy, so 0 for a perfect fit). eps = 0 is the
    plain cross-entropy of `causal_lm_loss`.
    """
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    keep = shift_labels != IGNORE_INDEX
    n_tokens = int(keep.sum())
    if n_tokens == 0:
        return shift_logits.sum() * 0.0, 0
    logp = F.log_softmax(shift_logits[keep], dim=-1)  # (N, V)
    target = shift_labels[keep]
    vocab = logp.shape[-1]
    on, off = 1.0 - eps, eps / (vocab - 1)
    logp_target = logp.gather(1, target[:, None]).squeeze(1)
    cross = -(on * logp_target + off * (logp.sum(-1) - logp_target))
    xlogx = torch.special.xlogy  # 0 * log 0 = 0 when eps = 0
    neg_entropy = xlogx(torch.tensor(on), torch.tensor(on)) + (vocab - 1) * xlogx(
        torch.tensor(off), torch.tensor(off)
    )
    return (cross + neg_entropy.to(cross.device)).mean(), n_tokens


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def world_size() -> int:
    dist = _dist()
    return dist.get_world_size() if dist else 1


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks (rank order); this rank's part keeps its gradient."""
    dist = _dist()
    if dist is None or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float = CLIP_LOGIT_SCALE,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between normalised rows of `a` and `b` (row i matches row i), over the
    GLOBAL batch: every rank computes the same loss on all ranks' rows (OpenCLIP's default).

    Only the local rows carry gradient, so each rank gets the exact gradient of the global loss
    w.r.t. its own embeddings; it is scaled by the world size so that the data-parallel average
    of parameter gradients equals the global loss's gradient. A learned `logit_scale` multiplies
    every pair on every rank, so its gradient is already the global one: it is left unscaled
    (the average of W equal gradients is that gradient). The returned value is the loss.
    `groups` (one int per row, e.g. an entity id) marks rows that are the same thing: those
    off-diagonal pairs are masked out instead of being pushed apart.
    """
    world = world_size()
    if torch.is_tensor(logit_scale) and world > 1:
        # value unchanged, gradient / world: undoes the x world below for the temperature alone
        logit_scale = logit_scale / world + (logit_scale * (1 - 1 / world)).detach()
    scale = logit_scale.exp() if torch.is_tensor(logit_scale) else math.exp(logit_scale)
    all_a, all_b = gather_batch(a), gather_batch(b)
    logits = scale * all_a @ all_b.T
    labels = torch.arange(len(all_a), device=a.device)
    if groups is not None:
        all_groups = gather_batch(groups)
        same = all_groups[:, None] == all_groups[None, :]
        same.fill_diagonal_(False)
        logits = logits.masked_fill(same, float("-inf"))
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    return loss if world == 1 else loss * world - (loss * (world - 1)).detach()


def autover_contrastive(
    ret: torch.Tensor, entities: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, bool]:
    """AutoVER's retrieval term (its `llava_llama.py`, `ret_to_entity_only`): (loss, used).

    Both sides are gathered over the global batch; when an entity label appears twice there the
    term is skipped for the whole batch (AutoVER's `do_ret_this_batch = False`: a zero that
    keeps the graph, `used` False). Otherwise rows are L2-normalised and each `<ret>` row is
    scored against every entity by plain cosine (no temperature); the loss is the cross-entropy
    of row i picking entity i, `<ret>` -> entity only. Gradients follow `info_nce`'s scheme:
    every rank computes the global loss and keeps the gradient of its own rows.
    """
    world = world_size()
    all_labels = gather_batch(labels)
    if torch.unique(all_labels).numel() != all_labels.numel():
        return (ret.sum() + entities.sum()) * 0.0, False
    r = F.normalize(gather_batch(ret), dim=-1)
    e = F.normalize(gather_batch(entities), dim=-1)
    logits = r @ e.T
    loss = F.cross_entropy(logits, torch.arange(len(r), device=r.device))
    return (loss if world == 1 else loss * world - (loss * (world - 1)).detach()), True
