"""Sequence packing: several short examples per row, attention kept within each example.

Why: GRACE's examples are ~30-75 tokens; padded to the longest in a 64-example batch, about 40%
of the LM's work is on padding. Packed rows carry the same tokens with almost none.

A packed batch has the fields of a padded one (`input_ids`, `labels`, `attention_mask`, which
marks real tokens, `pixel_values`) plus `position_ids` that restart at 0 with every example: the
model turns them into a block-diagonal causal mask (vlmtrain.model.vlm), so no token attends
across examples and each example sees exactly the positions it would see alone.
"""

from __future__ import annotations

import torch


def segment_lengths(positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Lengths of the examples in packed rows, row by row (an example starts at position 0)."""
    real = mask.bool()
    starts = (positions == 0) & real
    seg = starts.long().cumsum(1) - 1
    if bool((seg[real] < 0).any()):
        raise ValueError("packed row: real tokens before the first position 0")
    per_row = starts.sum(1)
    offsets = per_row.cumsum(0) - per_row
    ids = (seg + offsets[:, None])[real]
    return torch.bincount(ids, minlength=int(per_row.sum()))
