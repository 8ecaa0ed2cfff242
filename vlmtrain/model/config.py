"""ModelConfig: a flat dataclass of plain types, so a YAML `model:` block maps straight onto it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

PARTS = ("vision", "projector", "lm", "new_tokens", "heads")


@dataclass
class ModelConfig:
    """Vision tower + projector + causal LM, and which parts train in this stage.

    `train` lists the trainable parts of this stage: "projector" (LLaVA stage 1, FROMAGe),
    ["projector", "lm"] (LLaVA stage 2, GRACE), "new_tokens" (the added token rows alone),
    "heads" (retrieval projections), "vision". "lm" includes the new-token rows.
    """

    # vision tower (open_clip)
    vision: str = "ViT-L-14"  # open_clip model name
    # a local checkpoint file; `vision` alone may also be NAME:FILE, local-dir:PATH or random:NAME
    # (vlmdata.core.clip_source: a bare name without weights is refused)
    vision_pretrained: str | None = None
    vision_config: dict[str, Any] | None = (
        None  # tiny tower: {"embed_dim": 32, "vision_cfg": {...}}
    )
    # block index for patch tokens, "pooled" (projected CLIP embedding), "pooler_output" (the
    # pooled token before CLIP's projection, as HF's CLIPVisionModel and FROMAGe use), "grid"
    # (last block's patches after ln_post) or "tokens" (last block's class token + patches after
    # ln_post: GIT)
    vision_feature: int | str = -2
    image_aspect: str = "pad"  # "pad" (LLaVA expand-to-square) or "crop" (open_clip)
    # projector
    projector: str = "mlp2x_gelu"  # "linear" | "linear_ln" | "mlp2x_gelu" | "mlp_tanh"
    num_visual_tokens: int | None = None  # pooled: prefix length (1); patches: pool grid to n
    # language model
    lm: str | None = None  # local HF checkpoint directory
    lm_config: dict[str, Any] | None = None  # tiny LM: {"model_type": "gpt2", "n_layer": 2, ...}
    tokenizer: str | None = None  # local tokenizer dir/file (default: the lm directory)
    dtype: str = "float32"  # weights as built: float32 | bfloat16 | float16
    # the LM's attention kernel: sdpa (torch's fused kernels) | eager | flash_attention_2 | ...
    attn_implementation: str = "sdpa"
    # torch.compile the LM for training: false, true (inductor) or a backend name ("eager", ...)
    compile: bool | str = False
    # tokens
    image_token: str = "<image>"
    new_tokens: list[str] = field(default_factory=list)  # e.g. ["[RET]"]; rows train alone
    # also every non-special token added to the tokenizer (identifier pieces from
    # `vlmdata build-ids --add-tokens`): their rows train alone too
    new_tokens_from_tokenizer: bool = False
    ret_token: str | None = None  # its hidden state is the text retrieval embedding
    retrieval_dim: int = 0  # >0 adds retrieval heads (FROMAGe: 256)
    # AutoVER's entity tower (vlmtrain.model.entity_encoder): a local Hugging Face CLIP dir
    # (frozen text + image towers) or a tiny random `entity_encoder_config` {"text": {...},
    # "vision": {...}}; with either, `<ret>` maps through AutoVER's two-layer projector and
    # entities embed as NAME: SUMMARY + image (needs retrieval_dim: AutoVER 512)
    entity_encoder: str | None = None
    entity_encoder_config: dict[str, Any] | None = None
    # the entity text tokenizer (default: entity_encoder's dir; with entity_encoder_config, the
    # LM's tokenizer)
    entity_tokenizer: str | None = None
    # training
    train: list[str] = field(default_factory=lambda: ["projector"])
    gradient_checkpointing: bool = False

    def __post_init__(self) -> None:
        unknown = [p for p in self.train if p not in PARTS]
        if unknown:
            raise ValueError(f"model.train: unknown part(s) {unknown}; choose from {list(PARTS)}")
        n = self.num_visual_tokens
        if self.vision_feature == "tokens" and n is not None:
            raise ValueError(
                "model.num_visual_tokens: vision_feature 'tokens' keeps every token (class token "
                "+ patches, GIT); leave num_visual_tokens unset"
            )
        pooled = self.vision_feature in ("pooled", "pooler_output")
        if not pooled and n is not None and round(n**0.5) ** 2 != n:
            raise ValueError(
                f"model.num_visual_tokens: {n} patch tokens cannot come from pooling a square "
                f"patch grid; use a square (4, 16, 64, ...) or vision_feature: pooled"
            )
        if (self.entity_encoder or self.entity_encoder_config) and not self.retrieval_dim:
            raise ValueError("model.entity_encoder needs model.retrieval_dim (AutoVER: 512)")
        if self.ret_token and self.ret_token not in self.new_tokens:
            self.new_tokens = [*self.new_tokens, self.ret_token]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from a YAML mapping; unknown keys are an error (typos must not pass silently)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"model: unknown key(s) {unknown}; known: {sorted(names)}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
