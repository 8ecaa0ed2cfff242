"""Losses shared by the recipes: next-token loss on supervised positions, and InfoNCE.

InfoNCE gathers embeddings from every rank (negatives from the whole global batch, as CLIP and
FROMAGe train). `all_gather` returns tensors without gradient, so the local slice is put back
as the original tensor: each rank's gradient reaches its own embeddings, which is what DDP-style
averaging then needs (OpenCLIP's `gather_with_grad=False, local_loss=False` scheme).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE_INDEX = -100
CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, as a log scale


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy of position t predicting labels[t+1]; (-100 = not supervised)."""
    shift_logits = logits[:, :-1, :].float()
    shift_labels = labels[:, 1:].to(shift_logits.device)
    n_tokens = int((shift_labels != IGNORE_INDEX).sum())
    if n_tokens == 0:
        return shift_logits.sum() * 0.0, 0  # keeps the graph; callers report tokens=0
    loss = F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]),
        shift_labels.reshape(-1),
        ignore_index=IGNORE_INDEX,
    )
    return loss, n_tokens


def gather_batch(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` from all ranks (rank order); this rank's part keeps its gradient."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.zeros_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def local_offset(batch_size: int) -> int:
    """Index of this rank's first row in a gathered batch (equal batch sizes per rank)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0
    return dist.get_rank() * batch_size


def info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    logit_scale: torch.Tensor | float = CLIP_LOGIT_SCALE,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """Symmetric InfoNCE between normalised rows of `a` and `b` (row i matches row i).

    Negatives come from all ranks. `groups` (one int per row, e.g. an entity id) marks rows that
    are the same thing: those off-diagonal pairs are masked out instead of being pushed apart.
    """
    scale = logit_scale.exp() if torch.is_tensor(logit_scale) else math.exp(logit_scale)
    all_a, all_b = gather_batch(a), gather_batch(b)
    labels = torch.arange(a.shape[0], device=a.device) + local_offset(a.shape[0])
    logits_a = scale * a @ all_b.T
    logits_b = scale * b @ all_a.T
    if groups is not None:
        all_groups = gather_batch(groups)
        same = groups[:, None] == all_groups[None, :]
        same[torch.arange(len(labels), device=a.device), labels] = False
        logits_a = logits_a.masked_fill(same, float("-inf"))
        logits_b = logits_b.masked_fill(same, float("-inf"))
    return (F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_b, labels)) / 2
