"""The model's own losses and constants: next-token cross-entropy on the supervised positions
(labels IGNORE_INDEX elsewhere) and CLIP's temperature bounds. The recipes build on them."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vlmtrain.contract import IGNORE_INDEX

CLIP_LOGIT_SCALE = math.log(1 / 0.07)  # CLIP's initial temperature, as a log scale
MAX_LOGIT_SCALE = math.log(100)  # CLIP's clamp on the learned temperature


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
