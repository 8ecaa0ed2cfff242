"""Vision features -> LM input embeddings.

Two shapes of the same idea:
- per-token (LLaVA): each patch feature (B, P, C) becomes one LM token (B, P, D);
- prefix (ClipCap / FROMAGe): one pooled embedding (B, C) becomes n LM tokens (B, n, D).
`linear` is one matrix; `linear_ln` is one matrix then LayerNorm (GIT's and the
generative-image-to-text seed's `linearLn`, per token); `mlp2x_gelu` is LLaVA-1.5's two-layer
MLP; `mlp_tanh` is the seed's (and ClipCap's) `MLP` with Tanh. For a prefix both MLPs are
ClipCap's shape, hidden width (n*D)//2 (the seed: `(d_lm * PREFIX_LENGTH) // 2`).
"""

from __future__ import annotations

import torch
from torch import nn

from vlmtrain.errors import ConfigError

PROJECTORS = ("linear", "linear_ln", "mlp2x_gelu", "mlp_tanh")


def _mlp(kind: str, in_dim: int, out_dim: int, hidden: int) -> nn.Module:
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "linear_ln":
        return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim))
    if kind == "mlp2x_gelu":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
    if kind == "mlp_tanh":
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, out_dim))
    raise ConfigError(f"model.projector must be one of {PROJECTORS}, got {kind!r}")


class TokenProjector(nn.Module):
    """(B, P, C) -> (B, P, D): the same map applied to every patch token."""

    def __init__(self, kind: str, in_dim: int, out_dim: int):
        super().__init__()
        self.net = _mlp(kind, in_dim, out_dim, hidden=out_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


class PrefixProjector(nn.Module):
    """(B, 1, C) or (B, C) -> (B, n, D): one pooled embedding unrolled into n prefix tokens."""

    def __init__(self, kind: str, in_dim: int, out_dim: int, num_tokens: int):
        super().__init__()
        if kind == "linear_ln":
            raise ConfigError(
                "model.projector linear_ln normalises each token: use it with per-token features "
                "(vision_feature grid, tokens or a block index), not a pooled prefix"
            )
        self.num_tokens, self.out_dim = num_tokens, out_dim
        hidden = out_dim * num_tokens // 2 if num_tokens > 1 else out_dim
        self.net = _mlp(kind, in_dim, out_dim * num_tokens, hidden=hidden)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        pooled = features.reshape(features.shape[0], -1)
        return self.net(pooled).reshape(-1, self.num_tokens, self.out_dim)


def build_projector(
    kind: str, in_dim: int, out_dim: int, *, prefix_tokens: int | None = None
) -> nn.Module:
    """A TokenProjector, or a PrefixProjector when `prefix_tokens` is given (pooled features)."""
    if prefix_tokens is not None:
        return PrefixProjector(kind, in_dim, out_dim, prefix_tokens)
    return TokenProjector(kind, in_dim, out_dim)
