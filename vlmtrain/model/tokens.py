"""Added tokens ([RET], <ret>, <image>, identifier pieces) whose embedding rows train alone.

Design: a SEPARATE small trainable table, not a gradient mask on the big one. With a mask, AdamW's
decoupled weight decay would still move every frozen row, the optimizer would hold fp32 state for
the whole vocabulary, and an export of the trainable parts would carry the full matrix. Here the
base embedding and LM head stay frozen (and can be left out of an export), and the new rows are
one (n_new, D) parameter that overrides the base rows at those ids (input side) and supplies
their logits (output side). Tied models share the new rows between input and output, as the base
rows are shared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _init_rows(base_weight: torch.Tensor, new_ids: Sequence[int]) -> torch.Tensor:
    """Existing rows are copied (a tokenizer's reserved slot); ids past the table get the mean."""
    rows = base_weight.shape[0]
    mean = base_weight.detach().float().mean(0)
    init = [base_weight[i].detach().float() if i < rows else mean for i in new_ids]
    return torch.stack(init).to(base_weight.dtype)


class NewTokenEmbedding(nn.Module):
    """Input embedding = frozen `base` table, with the rows of `new_ids` taken from `new_weight`."""

    def __init__(self, base: nn.Embedding, new_ids: Sequence[int], total: int):
        super().__init__()
        self.base = base
        self.base_rows = base.weight.shape[0]
        self.num_embeddings, self.embedding_dim = total, base.weight.shape[1]
        slot = torch.full((total,), -1, dtype=torch.long)
        slot[torch.tensor(list(new_ids), dtype=torch.long)] = torch.arange(len(new_ids))
        self.register_buffer("slot", slot, persistent=False)
        self.register_buffer("new_ids", torch.tensor(list(new_ids)), persistent=False)
        self.new_weight = nn.Parameter(_init_rows(base.weight, new_ids))

    @property
    def weight(self) -> torch.Tensor:
        """The base table (HF code reads `.weight` for dtype/device)."""
        return self.base.weight

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        slot = self.slot[input_ids]
        is_new = slot >= 0
        out = self.base(input_ids.masked_fill(is_new, 0))
        new = F.embedding(slot.clamp(min=0), self.new_weight).to(out.dtype)
        return torch.where(is_new.unsqueeze(-1), new, out)


class NewTokenHead(nn.Module):
    """LM head = frozen `base` logits, padded to `total`, with the new ids' logits from new rows."""

    def __init__(self, base: nn.Module, embedding: NewTokenEmbedding, tied: bool):
        super().__init__()
        self.base = base
        self.total = embedding.num_embeddings
        self.register_buffer("new_ids", embedding.new_ids.clone(), persistent=False)
        if tied:
            self.new_weight = embedding.new_weight  # shared Parameter, as the base rows are
        else:
            ids = embedding.new_ids.tolist()
            self.new_weight = nn.Parameter(_init_rows(base.weight, ids))

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.base(hidden)
        if logits.shape[-1] < self.total:
            logits = F.pad(logits, (0, self.total - logits.shape[-1]))
        new = F.linear(hidden, self.new_weight.to(hidden.dtype)).to(logits.dtype)
        return logits.index_copy(-1, self.new_ids, new)


def install_new_tokens(lm: nn.Module, new_ids: Sequence[int], total: int) -> NewTokenEmbedding:
    """Wrap `lm`'s input embedding and head so the rows of `new_ids` train alone."""
    base_in = lm.get_input_embeddings()
    base_out = lm.get_output_embeddings()
    tied = base_out is not None and base_out.weight is base_in.weight
    embedding = NewTokenEmbedding(base_in, new_ids, total)
    lm.set_input_embeddings(embedding)
    if base_out is not None:
        lm.set_output_embeddings(NewTokenHead(base_out, embedding, tied))
    lm.config.vocab_size = total
    return embedding


def rescale_to_mean_norm(
    embedding: NewTokenEmbedding, token_id: int, optimizer: object | None = None
) -> float:
    """Rescale `token_id`'s trainable input row to the mean L2 norm of every OTHER row of the
    effective input table (FROMAGe, main.py: after every step its [RET] row is divided by
    `norm(row) / mean(norm(weight[:-1]))`). Returns the target norm.

    Under DeepSpeed the optimizer's fp32 master copy is set too (else the next step would
    restore the old row): ZeRO's and the bf16 optimizer's through DeepSpeed's API, the unfused
    fp16/bf16 wrapper's (`optimizer`, ZeRO 0 with bf16) by its parameter lists; under ZeRO-3
    the rows are gathered for the edit.
    """
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param, safe_set_full_fp32_param

    slot = int(embedding.slot[token_id])
    if slot < 0:
        raise ValueError(f"token id {token_id} is not a trainable new row")
    params = [embedding.base.weight, embedding.new_weight]
    with torch.no_grad(), deepspeed.zero.GatheredParameters(params, modifier_rank=0):
        base_norms = embedding.base.weight.float().norm(dim=1)
        new_norms = embedding.new_weight.float().norm(dim=1)
        ids = embedding.new_ids.to(base_norms.device)
        inside = ids < embedding.base_rows  # new rows that override a base row
        norms = torch.cat([base_norms, new_norms[~inside]])
        norms[ids[inside]] = new_norms[inside]  # the effective table, base rows overridden
        keep = torch.ones_like(norms, dtype=torch.bool)
        keep[token_id if token_id < embedding.base_rows else _past(embedding, slot)] = False
        target = norms[keep].mean()
        row = embedding.new_weight[slot]
        row.mul_((target / row.float().norm()).to(row.dtype))
        full = safe_get_full_fp32_param(embedding.new_weight)
        if full is not None:
            full[slot] *= target / full[slot].norm()
            safe_set_full_fp32_param(embedding.new_weight, full)
        master = _unfused_master(optimizer, embedding.new_weight)
        if master is not None:
            master[slot] *= target / master[slot].float().norm()
    return float(target)


def _unfused_master(optimizer: object | None, param: torch.Tensor) -> torch.Tensor | None:
    """The fp32 copy DeepSpeed's unfused fp16/bf16 optimizer keeps of `param`, if any."""
    for lp_group, hp_group in zip(
        getattr(optimizer, "fp16_groups", []), getattr(optimizer, "fp32_groups", []), strict=False
    ):
        for lp, hp in zip(lp_group, hp_group, strict=False):
            if lp is param:
                return hp.data
    return None


def _past(embedding: NewTokenEmbedding, slot: int) -> int:
    """Index in the effective-norm vector of a new row that lies past the base table."""
    past = [i for i, tid in enumerate(embedding.new_ids.tolist()) if tid >= embedding.base_rows]
    return embedding.base_rows + past.index(slot)
