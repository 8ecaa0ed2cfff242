"""GIT's attention pattern on a decoder-only LM: image tokens see each other both ways.

GIT (Wang et al. 2022; `generativeimage2text/layers/decoder.py`, `BertEncoderAsDecoder`) runs
one transformer over `[image tokens][text tokens]` with the block mask
    image -> image: attend      image -> text: no
    text  -> image: attend      text  -> text: causal (a token sees itself and earlier text)
Here the same rule is applied by token kind, wherever the `<image>` slots sit in a row, and
padding keys (attention_mask 0) are never attended. A plain causal LM would let the first image
token see only itself.
"""

from __future__ import annotations

import torch

from vlmtrain.errors import ConfigError

IMAGE_ATTENTION = ("causal", "bidirectional")


def image_block_allowed(is_image: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """(B, L, L) bool, True where query row i may attend key column j (GIT's block mask)."""
    n = is_image.shape[1]
    causal = torch.ones(n, n, dtype=torch.bool, device=is_image.device).tril()
    q_img, k_img = is_image[:, :, None], is_image[:, None, :]
    allowed = (q_img & k_img) | (~q_img & (k_img | causal))
    return allowed & attention_mask.bool()[:, None, :]


def image_block_mask(
    is_image: torch.Tensor,
    attention_mask: torch.Tensor,
    attn_implementation: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    """The (B, 1, L, L) mask the LM takes: bool (True = attend) for SDPA, additive for eager."""
    if attn_implementation not in ("sdpa", "eager"):
        raise ConfigError(
            f"bidirectional image attention needs model.attn_implementation sdpa or eager "
            f"(an explicit L x L mask), not {attn_implementation!r}"
        )
    allowed = image_block_allowed(is_image, attention_mask)[:, None]
    if attn_implementation == "sdpa":
        return allowed
    additive = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return additive.masked_fill(~allowed, torch.finfo(dtype).min)
