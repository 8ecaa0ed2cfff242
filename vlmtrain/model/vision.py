"""The open_clip vision tower: patch features from a chosen block and/or the pooled embedding.

Built from an open_clip model named by the one rule of vlmdata.core.clip_source (local weights:
NAME + a checkpoint file, local-dir:PATH, or random:NAME asked for explicitly; open_clip loads
them with `weights_only=True`) or, for tests and demos, from a tiny `vision_cfg` dict, which never
touches the network. Only the image tower is kept; the text tower of a full CLIP is dropped.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlmtrain.errors import ConfigError

POOLED = "pooled"
GRID = "grid"  # last-layer patch tokens after ln_post, class token dropped (the seed's grid)
TOKENS = "tokens"  # every last-layer token, class token first, after ln_post (GIT)
LAST_LAYER = (GRID, TOKENS)
POOLER_OUTPUT = "pooler_output"  # the pooled token before the projection (HF CLIP's name)
POOLED_FEATURES = (POOLED, POOLER_OUTPUT)  # one vector per image


def build_visual(
    name: str, pretrained: str | None = None, config: dict[str, Any] | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """(open_clip image tower, preprocess cfg with size/mean/std/interpolation)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    if config is not None:
        from open_clip.model import _build_vision_tower

        vision_cfg = dict(config.get("vision_cfg", config))
        embed_dim = int(config.get("embed_dim", vision_cfg.get("width", 64)))
        visual = _build_vision_tower(
            embed_dim, vision_cfg, quick_gelu=config.get("quick_gelu", False)
        )
        preprocess = {
            "size": vision_cfg.get("image_size", 224),
            "mean": tuple(config.get("mean", OPENAI_DATASET_MEAN)),
            "std": tuple(config.get("std", OPENAI_DATASET_STD)),
            "interpolation": "bicubic",
        }
        return visual, preprocess
    from vlmdata.core.clip_source import create_clip, resolve_clip

    clip, _ = create_clip(resolve_clip(name, pretrained or None))
    visual = clip.visual
    preprocess = dict(getattr(visual, "preprocess_cfg", {}) or {})
    preprocess.setdefault("size", getattr(visual, "image_size", 224))
    preprocess.setdefault("mean", OPENAI_DATASET_MEAN)
    preprocess.setdefault("std", OPENAI_DATASET_STD)
    return visual, preprocess


class VisionTower(nn.Module):
    """Returns (features for the projector, pooled embedding) for a batch of images.

    `feature` is a block index (e.g. -2, LLaVA's choice: patch tokens of the second-to-last block,
    class token dropped), "pooled" (the CLIP image embedding, one vector per image),
    "pooler_output" (the pooled token after ln_post and BEFORE the projection: what Hugging Face's
    CLIPVisionModel returns as `pooler_output` and FROMAGe maps, 1024-d for ViT-L/14), "grid"
    (last-block patch tokens after `ln_post`, as the generative-image-to-text seed's
    `output_grid` with `grid_after_ln`; a ResNet gives its final 7x7 grid) or "tokens" (class
    token + patches of the last block after `ln_post`: GIT's image features).
    """

    def __init__(self, visual: nn.Module, preprocess: dict[str, Any], feature: int | str = -2):
        super().__init__()
        if feature not in (*POOLED_FEATURES, *LAST_LAYER) and not isinstance(feature, int):
            raise ConfigError(
                f"model.vision_feature must be a block index, 'pooled', 'pooler_output', 'grid' or "
                f"'tokens', "
                f"got {feature!r}"
            )
        self.visual = visual
        self.preprocess_cfg = dict(preprocess)
        self.feature = feature
        self.frozen = True
        with torch.no_grad():
            size = preprocess["size"]
            hw = (size, size) if isinstance(size, int) else tuple(size)
            probe = self._features(torch.zeros(1, 3, *hw))
        self.feature_dim = int(probe[0].shape[-1])
        self.num_patches = int(probe[0].shape[1])
        self.pooled_dim = int(probe[1].shape[-1])

    @property
    def image_size(self) -> tuple[int, int]:
        size = self.preprocess_cfg["size"]
        return (size, size) if isinstance(size, int) else tuple(size)

    def train(self, mode: bool = True) -> VisionTower:
        """A frozen tower stays in eval mode (no dropout, no batch-norm updates)."""
        super().train(mode and not self.frozen)
        return self

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = next(self.visual.parameters()).dtype
        pixel_values = pixel_values.to(dtype)
        if self.frozen:
            with torch.no_grad():
                return self._features(pixel_values)
        return self._features(pixel_values)

    def _features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.feature in POOLED_FEATURES:
            pooled = self._unprojected(x) if self.feature == POOLER_OUTPUT else self.visual(x)
            pooled = self._pooled(pooled)
            return pooled[:, None, :], pooled
        last = self.feature in LAST_LAYER
        out = self.visual.forward_intermediates(
            x,
            indices=[-1 if last else self.feature],
            output_fmt="NCHW",
            normalize_intermediates=last,  # ln_post on every token (a ResNet has none)
            output_extra_tokens=self.feature == TOKENS,
        )
        feats = out["image_intermediates"][0]  # (B, C, H, W)
        tokens = feats.flatten(2).transpose(1, 2)  # (B, H*W, C), row-major patches
        if self.feature == TOKENS:
            if "image_intermediates_prefix" not in out:
                raise ConfigError("model.vision_feature 'tokens' needs a ViT (a class token)")
            tokens = torch.cat([out["image_intermediates_prefix"][0], tokens], dim=1)
        return tokens, self._pooled(out["image_features"])

    def _unprojected(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled token before `pooled @ proj`: the tower's whole forward runs (so ZeRO-3
        gathers its own parameters as usual) and `ln_post`'s output is caught on the way."""
        v = self.visual
        if getattr(v, "attn_pool", None) is not None or not hasattr(v, "_global_pool"):
            raise ConfigError(
                "model.vision_feature 'pooler_output' needs an open_clip VisionTransformer without "
                "attentional pooling"
            )
        caught: list[torch.Tensor] = []
        hook = v.ln_post.register_forward_hook(lambda _m, _i, out: caught.append(out))
        try:
            v(x)
        finally:
            hook.remove()
        out = caught[-1]  # (B, L, D) normed tokens, or (B, D) when the norm follows the pool
        return v._global_pool(out)[0] if out.ndim == 3 else out

    @staticmethod
    def _pooled(out: Any) -> torch.Tensor:
        return out[0] if isinstance(out, tuple) else out


def pool_tokens(tokens: torch.Tensor, n: int) -> torch.Tensor:
    """Average-pool a square grid of patch tokens (B, P, C) down to n tokens (n a square)."""
    side, grid = int(round(n**0.5)), int(round(tokens.shape[1] ** 0.5))
    if side * side != n or grid * grid != tokens.shape[1]:
        raise ValueError(
            f"cannot pool {tokens.shape[1]} patch tokens to {n} (both must be squares)"
        )
    b, _, c = tokens.shape
    grid_map = tokens.transpose(1, 2).reshape(b, c, grid, grid)
    pooled = nn.functional.adaptive_avg_pool2d(grid_map, side)
    return pooled.flatten(2).transpose(1, 2)
