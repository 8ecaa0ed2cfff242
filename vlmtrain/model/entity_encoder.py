"""AutoVER's entity tower: frozen CLIP text + image encoders and a trained fusion (512-d).

As AutoVER's `entity_encoder/wiki_encoder.py` (`EntityEncoder`, fusion `mlp2x_gelu`, the code's
default `entity_encoder_fusion`): the CLIP image tower's pooled output (post-layernorm class
token, before the projection) and the CLIP text tower's pooled output (final-layernorm state
of the last token, CLIP's eos, before the projection) are concatenated and mapped by
Linear -> GELU -> Linear to `retrieval_dim`. The CLIP towers are Hugging Face `CLIPTextModel` /
`CLIPVisionModel` (as AutoVER loads `openai/clip-vit-large-patch14-336`), frozen; the fusion
trains with the retrieval heads. The `<ret>` side is AutoVER's `ret_token_projector`:
Linear(h, h) -> Linear(h, retrieval_dim), no activation between.

The entity text is `NAME: SUMMARY` with the summary cut to whole sentences that fit 64 tokens of
the entity tokenizer (AutoVER: spaCy sentences, then punctuation, then spaces; here a sentence
regex with the same fall-backs), then truncated to the text tower's context (77 for CLIP).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from vlmtrain.errors import ConfigError

SUMMARY_TOKENS = 64  # AutoVER oven_data.py: "CLIP text encoder has 77 context window"
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
_PUNCT = re.compile(r"(?<=[^\s\w])\s+")


def cut_summary(text: str | None, count_tokens, max_tokens: int = SUMMARY_TOKENS) -> str:
    """The longest prefix of whole sentences (else punctuation pieces, else words) whose token
    count fits `max_tokens`; the first piece alone when even it does not fit."""
    text = (text or "").strip()
    if not text:
        return ""
    for pattern in (_SENTENCE, _PUNCT, None):
        parts = pattern.split(text) if pattern is not None else text.split()
        if count_tokens(parts[0]) <= max_tokens or pattern is None:
            break
    out = parts[0]
    for part in parts[1:]:
        if count_tokens(out + part) > max_tokens:  # AutoVER measures the joined text this way
            break
        out += " " + part
    return out


def entity_text(name: str, summary: str | None, count_tokens) -> str:
    """`NAME: SUMMARY` as AutoVER's OvenJsonlDataset builds `entity_text_summary`."""
    return name.strip() + ": " + cut_summary(summary, count_tokens).strip()


class EntityEncoder(nn.Module):
    """(pixel_values, input_ids, attention_mask) -> (N, dim) unnormalised entity embeddings."""

    def __init__(self, text_tower: nn.Module, vision_tower: nn.Module, dim: int):
        super().__init__()
        self.clip_text, self.clip_vision = text_tower, vision_tower
        self.clip_text.requires_grad_(False)
        self.clip_vision.requires_grad_(False)
        width = text_tower.config.hidden_size + vision_tower.config.hidden_size
        self.fusion = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))

    def zero3_leaf_modules(self) -> list[nn.Module]:
        """Modules ZeRO-3 must gather whole (children included) at their own forward: Hugging
        Face's CLIPTextEmbeddings.forward reads `position_embedding.weight.shape` before that
        child's forward (a partitioned weight reads as size 0 there). The trainer marks them
        (`deepspeed.utils.set_z3_leaf_module`) before `deepspeed.initialize`."""
        return [m for m in self.clip_text.modules() if hasattr(m, "position_embedding")]

    @property
    def context_length(self) -> int:
        return int(self.clip_text.config.max_position_embeddings)

    @property
    def image_size(self) -> int:
        return int(self.clip_vision.config.image_size)

    def train(self, mode: bool = True) -> EntityEncoder:
        """The CLIP towers stay in eval mode (frozen, as in AutoVER)."""
        super().train(mode)
        self.clip_text.eval()
        self.clip_vision.eval()
        return self

    def forward(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            dtype = next(self.clip_vision.parameters()).dtype
            image = self.clip_vision(pixel_values=pixel_values.to(dtype)).pooler_output
            hidden = self.clip_text(input_ids=input_ids, attention_mask=attention_mask)
            last = attention_mask.sum(1).clamp(min=1) - 1  # CLIP pools its eos: the last token
            text = hidden.last_hidden_state[torch.arange(len(last)), last]
        fused = torch.cat([image, text], dim=1).to(self.fusion[0].weight.dtype)
        return self.fusion(fused)


def ret_projector(hidden: int, dim: int) -> nn.Module:
    """AutoVER's `ret_token_projector`: two linear maps, no activation."""
    return nn.Sequential(nn.Linear(hidden, hidden), nn.Linear(hidden, dim))


def build_entity_encoder(
    path: str | None, config: dict[str, Any] | None, dim: int, dtype: torch.dtype | None = None
) -> EntityEncoder:
    """From a local Hugging Face CLIP dir (`path`), or random towers from `config`
    ({"text": CLIPTextConfig kwargs, "vision": CLIPVisionConfig kwargs}; tests, no download)."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    if config is not None:
        text = CLIPTextModel(CLIPTextConfig(**config.get("text", {})))
        vision = CLIPVisionModel(CLIPVisionConfig(**config.get("vision", {})))
    elif path:
        text = CLIPTextModel.from_pretrained(path, torch_dtype=dtype)
        vision = CLIPVisionModel.from_pretrained(path, torch_dtype=dtype)
    else:
        raise ConfigError("model.entity_encoder (a CLIP dir) or entity_encoder_config is needed")
    return EntityEncoder(text, vision, dim)


def entity_image_transform(size: int, aspect: str = "pad"):
    """CLIP's preprocessing at `size`, padded to a square with the mean colour (AutoVER pads
    entity images like query images: image_aspect_ratio pad)."""
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    from vlmtrain.data.transforms import build_image_transform

    return build_image_transform(size, OPENAI_DATASET_MEAN, OPENAI_DATASET_STD, aspect)


def entity_inputs(
    tokenizer, transform, context_length: int, image_size: int, entry: dict, image: bytes | None
) -> tuple[list[int], torch.Tensor]:
    """(entity token ids, entity image tensor) for one KB entry {entity_name, content}: the
    text as `entity_text`, truncated to the text tower's context; a black image when none."""
    from PIL import Image

    from vlmtrain.data.transforms import decode_image

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    text = entity_text(entry["entity_name"], entry.get("content"), count)
    ids = tokenizer(text, truncation=True, max_length=context_length)["input_ids"]
    pil = decode_image(image) if image else Image.new("RGB", (image_size, image_size))
    return list(ids), transform(pil)
