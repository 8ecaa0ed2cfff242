"""The VLM: open_clip vision tower -> projector -> Hugging Face causal LM.

Image placeholders: the RECIPE expands each image to `model.num_image_tokens` copies of the
`<image>` token id when it tokenizes (HF-LLaVA style), so sequence lengths, attention masks and
label masks are final before the model sees them; `forward` only overwrites the embeddings at
exactly those positions with the projected features (images in batch order, row-major). A count
mismatch is an error, never a silent truncation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vlmtrain.errors import ConfigError
from vlmtrain.model.config import PARTS, ModelConfig
from vlmtrain.model.lm import build_lm, lm_hidden_size
from vlmtrain.model.losses import CLIP_LOGIT_SCALE, MAX_LOGIT_SCALE, causal_lm_loss
from vlmtrain.model.projector import build_projector
from vlmtrain.model.tokens import NewTokenEmbedding, install_new_tokens
from vlmtrain.model.vision import POOLED_FEATURES, VisionTower, build_visual, pool_tokens

__all__ = ["ModelConfig", "VLM", "build_model"]


class RetrievalHeads(nn.Module):
    """FROMAGe-style retrieval maps: LM hidden -> d, CLIP pooled embedding -> d, temperature."""

    def __init__(self, text_dim: int, image_dim: int, dim: int):
        super().__init__()
        self.text_proj = nn.Linear(text_dim, dim)
        self.image_proj = nn.Linear(image_dim, dim)
        self.logit_scale = nn.Parameter(torch.tensor(CLIP_LOGIT_SCALE))

    def forward(self) -> torch.Tensor:
        """The learned log temperature, clamped as CLIP does (at most log 100).

        Read through this forward, never as `heads.logit_scale`: ZeRO-3 gathers a module's own
        parameters only inside its forward, and a read elsewhere sees a size-0 partition.
        """
        return self.logit_scale.clamp(max=MAX_LOGIT_SCALE)


class VLM(nn.Module):
    """Vision tower + projector + causal LM with image placeholders and trainable new tokens."""

    def __init__(self, cfg: ModelConfig, vision: VisionTower, lm: nn.Module, tokenizer):
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer
        self.vision, self.lm = vision, lm
        self.image_token_id = _token_id(tokenizer, cfg.image_token)
        self.ret_token_id = _token_id(tokenizer, cfg.ret_token) if cfg.ret_token else None
        base_rows = lm.get_input_embeddings().weight.shape[0]
        total = max(base_rows, len(tokenizer))
        new_ids = sorted(
            {self.image_token_id}
            | {_token_id(tokenizer, t) for t in cfg.new_tokens}
            | set(range(base_rows, total))
            | (added_token_ids(tokenizer) if cfg.new_tokens_from_tokenizer else set())
        )
        self.new_token_ids = new_ids
        install_new_tokens(lm, new_ids, total)
        width = lm_hidden_size(lm)
        if vision.feature in POOLED_FEATURES:
            self.num_image_tokens = cfg.num_visual_tokens or 1
            self.projector = build_projector(
                cfg.projector, vision.pooled_dim, width, prefix_tokens=self.num_image_tokens
            )
        else:
            self.num_image_tokens = cfg.num_visual_tokens or vision.num_patches
            self.projector = build_projector(cfg.projector, vision.feature_dim, width)
        self.heads = None
        if cfg.retrieval_dim:
            text_dim = int(getattr(lm.config, "hidden_size", width))
            self.heads = RetrievalHeads(text_dim, vision.pooled_dim, cfg.retrieval_dim)
        self.entity_encoder = self.ret_proj = None
        if cfg.entity_encoder or cfg.entity_encoder_config:
            from vlmtrain.model.entity_encoder import build_entity_encoder, ret_projector

            text_dim = int(getattr(lm.config, "hidden_size", width))
            self.entity_encoder = build_entity_encoder(
                cfg.entity_encoder, cfg.entity_encoder_config, cfg.retrieval_dim
            )
            self.ret_proj = ret_projector(text_dim, cfg.retrieval_dim)
        self.set_trainable(cfg.train)
        if cfg.gradient_checkpointing:
            enable_checkpointing(lm)
            if "vision" in cfg.train and hasattr(vision.visual, "set_grad_checkpointing"):
                vision.visual.set_grad_checkpointing(True)  # a frozen tower runs without grad

    @property
    def embed_tokens(self) -> NewTokenEmbedding:
        """The LM's input embedding (not registered twice: state_dict keys stay unique)."""
        return self.lm.get_input_embeddings()

    # ---- trainable parts -------------------------------------------------------------------

    def set_trainable(self, parts: list[str]) -> None:
        """Freeze everything, then unfreeze `parts` (see ModelConfig.train)."""
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"unknown trainable part(s) {sorted(unknown)}")
        self.requires_grad_(False)
        self.trainable_parts = list(parts)
        self.vision.frozen = "vision" not in parts
        if "vision" in parts:
            self.vision.requires_grad_(True)
        if "projector" in parts:
            self.projector.requires_grad_(True)
        if "lm" in parts:
            self.lm.requires_grad_(True)
        if "new_tokens" in parts or "lm" in parts:
            self.embed_tokens.new_weight.requires_grad_(True)
            self.lm.get_output_embeddings().new_weight.requires_grad_(True)
        if "heads" in parts and self.heads is not None:
            self.heads.requires_grad_(True)
        if "heads" in parts and self.entity_encoder is not None:
            self.entity_encoder.fusion.requires_grad_(True)  # the CLIP towers stay frozen
            self.ret_proj.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> VLM:
        """A frozen LM stays in eval mode (no dropout), like FROMAGe's frozen OPT."""
        super().train(mode)
        if "lm" not in getattr(self, "trainable_parts", ["lm"]):
            self.lm.eval()
        return self

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The parameters that train in this stage (shared ones once): what an export needs."""
        return {n: p.detach() for n, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load an export made by `trainable_state_dict`; unknown names are an error."""
        known = dict(self.named_parameters())
        unknown = sorted(set(state) - set(known))
        if unknown:
            raise KeyError(f"export has parameters this model lacks: {unknown[:5]}")
        with torch.no_grad():
            for name, value in state.items():
                known[name].copy_(value)

    # ---- inputs ----------------------------------------------------------------------------

    @property
    def image_transform(self) -> Callable:
        """PIL image -> (3, H, W) tensor with the tower's size/mean/std and the config's aspect."""
        from vlmtrain.data.transforms import build_image_transform

        pp = self.vision.preprocess_cfg
        return build_image_transform(
            pp["size"], pp["mean"], pp["std"], self.cfg.image_aspect, pp.get("interpolation", "")
        )

    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, num_image_tokens, lm width)."""
        tokens, _ = self.vision(pixel_values)
        if self.vision.feature not in POOLED_FEATURES and tokens.shape[1] != self.num_image_tokens:
            tokens = pool_tokens(tokens, self.num_image_tokens)
        param = next(self.projector.parameters())
        return self.projector(tokens.to(param.dtype))

    def embed(self, input_ids: torch.Tensor, pixel_values: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with image features spliced in at the `<image>` positions."""
        embeds = self.embed_tokens(input_ids)
        slots = input_ids == self.image_token_id
        n_slots = int(slots.sum())
        n_images = 0 if pixel_values is None else int(pixel_values.shape[0])
        if n_slots != n_images * self.num_image_tokens:
            raise ValueError(
                f"{n_slots} <image> placeholder tokens but {n_images} images x "
                f"{self.num_image_tokens} tokens each"
            )
        if n_images == 0:
            return embeds
        feats = self.image_features(pixel_values).to(embeds.dtype)
        return embeds.masked_scatter(slots.unsqueeze(-1), feats.reshape(-1, feats.shape[-1]))

    # ---- forward / generate ----------------------------------------------------------------

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        position_ids: torch.Tensor | None = None,
        image_attention: str = "causal",
    ):
        """HF-style output (loss when labels are given, logits, hidden_states if asked).

        With `position_ids` the rows are packed (vlmtrain.data.packing): attention stays within
        each example, whose positions restart at 0. `image_attention="bidirectional"` is GIT's
        block mask (vlmtrain.model.attention): image tokens attend to each other both ways.
        """
        from transformers.modeling_outputs import CausalLMOutputWithPast

        embeds = self.embed(input_ids, pixel_values)
        if image_attention != "causal":
            attention_mask = self.image_attention_mask(
                input_ids, attention_mask, embeds.dtype, position_ids
            )
        elif position_ids is not None:
            from vlmtrain.data.packing import block_causal_mask

            impl = self.lm.config._attn_implementation
            attention_mask = block_causal_mask(position_ids, impl, embeds.dtype)
        out = self.lm(
            inputs_embeds=embeds,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=output_hidden_states,
            use_cache=False,
        )
        loss = causal_lm_loss(out.logits, labels)[0] if labels is not None else None
        return CausalLMOutputWithPast(loss=loss, logits=out.logits, hidden_states=out.hidden_states)

    def image_attention_mask(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        dtype: torch.dtype,
        position_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """GIT's block mask for these rows, in the form the LM's attention kernel takes."""
        from vlmtrain.model.attention import image_block_mask

        if position_ids is not None:
            raise ValueError("bidirectional image attention does not take packed rows")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        impl = self.lm.config._attn_implementation
        return image_block_mask(input_ids == self.image_token_id, attention_mask, impl, dtype)

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """New tokens only. Prompts may be right- or left-padded (they are left-aligned here).

        The prompt ids are passed along with the embeddings, so logits processors see
        `input_ids.shape[1]` prompt positions first (use that as a trie's prompt_length).
        """
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        input_ids, attention_mask = left_align(input_ids, attention_mask, self._pad_id())
        embeds = self.embed(input_ids, pixel_values)
        kwargs.setdefault("pad_token_id", self._pad_id())
        kwargs.setdefault("eos_token_id", self.tokenizer.eos_token_id)
        out = self.lm.generate(
            input_ids=input_ids, inputs_embeds=embeds, attention_mask=attention_mask, **kwargs
        )
        return out[:, input_ids.shape[1] :]

    # ---- retrieval embeddings --------------------------------------------------------------

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised image embeddings (projected CLIP pooled embedding)."""
        heads = self._heads()
        _, pooled = self.vision(pixel_values)
        return F.normalize(heads.image_proj(pooled.to(heads.image_proj.weight.dtype)), dim=-1)

    def encode_texts(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised text embeddings: the projected hidden state of each row's last
        retrieval token (`ret_token`), or of its last real token when it has none."""
        self._heads()  # no heads: fail before the LM pass
        out = self.lm(
            inputs_embeds=self.embed(input_ids, None),
            attention_mask=attention_mask,
            output_hidden_states=True,
            use_cache=False,
        )
        return self.ret_embeddings(out.hidden_states[-1], input_ids, attention_mask)

    def ret_embeddings(
        self, hidden: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(N, D) normalised projections of the last layer's `hidden` at each row's retrieval
        token (as `encode_texts`), for callers that also need that forward's logits."""
        heads = self._heads()
        pos = token_positions(input_ids, attention_mask, self.ret_token_id)
        picked = hidden[torch.arange(len(pos), device=hidden.device), pos]
        return F.normalize(heads.text_proj(picked.to(heads.text_proj.weight.dtype)), dim=-1)

    def encode_ret(self, hidden: torch.Tensor) -> torch.Tensor:
        """(N, D) normalised `<ret>` embeddings from LM hidden states at `<ret>`: AutoVER's
        ret projector with an entity encoder, else the retrieval heads' text map."""
        proj = self.ret_proj if self.entity_encoder is not None else self._heads().text_proj
        weight = next(proj.parameters())
        return F.normalize(proj(hidden.to(weight.dtype)), dim=-1)

    def encode_entities(
        self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(N, D) normalised entity embeddings from the entity encoder (name + summary, image)."""
        if self.entity_encoder is None:
            raise ConfigError("this model has no entity encoder (set model.entity_encoder)")
        return F.normalize(self.entity_encoder(pixel_values, input_ids, attention_mask), dim=-1)

    def _heads(self) -> RetrievalHeads:
        if self.heads is None:
            raise ConfigError("this model has no retrieval heads (set model.retrieval_dim > 0)")
        return self.heads

    def _pad_id(self) -> int:
        from vlmdata.core.tokenizer import pad_id

        return pad_id(self.tokenizer)


def token_positions(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, token_id: int | None
) -> torch.Tensor:
    """Per row: index of the last `token_id`, else of the last attended position."""
    idx = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    last_real = (idx * attention_mask.bool()).amax(dim=1)
    if token_id is None:
        return last_real
    hits = (input_ids == token_id) & attention_mask.bool()
    last_hit = torch.where(hits, idx, torch.full_like(idx, -1)).amax(dim=1)
    return torch.where(last_hit >= 0, last_hit, last_real)


def left_align(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's attended tokens to the right end (decoder-only generation needs it)."""
    keep = attention_mask.bool()
    order = torch.argsort(keep.to(torch.int8), dim=1, stable=True)  # pads first, order kept
    ids = torch.gather(input_ids, 1, order)
    mask = torch.gather(attention_mask, 1, order)
    return ids.masked_fill(mask == 0, pad_id), mask


def enable_checkpointing(lm: nn.Module) -> None:
    """HF activation checkpointing; with frozen embeddings the inputs must require grad, or the
    checkpointed blocks see no grad path and the trainable parts get none."""
    kwargs = {"use_reentrant": False}
    if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    lm.enable_input_require_grads()


def added_token_ids(tokenizer) -> set[int]:
    """Ids of the tokens added on top of the tokenizer's vocabulary, special ones excluded."""
    special = set(tokenizer.all_special_ids)
    return {int(i) for i in tokenizer.get_added_vocab().values()} - special


def _token_id(tokenizer, token: str) -> int:
    tid = tokenizer.convert_tokens_to_ids(token)
    if tid is None or tid == tokenizer.unk_token_id:
        raise ConfigError(
            f"token {token!r} is not in the tokenizer (model.tokenizer / model.new_tokens)"
        )
    return int(tid)


def add_model_tokens(tokenizer, cfg: ModelConfig) -> list[str]:
    """Add the image token and new tokens as special tokens if missing; set pad = eos if unset.

    Returns the tokens that were added (the caller must save this tokenizer with the model).
    """
    vocab = tokenizer.get_vocab()
    missing = [t for t in [cfg.image_token, *cfg.new_tokens] if t not in vocab]
    missing = list(dict.fromkeys(missing))
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return missing


def build_model(cfg: ModelConfig, tokenizer) -> VLM:
    """Build the VLM from `cfg`; adds cfg's special tokens to `tokenizer` (see add_model_tokens)."""
    add_model_tokens(tokenizer, cfg)
    visual, preprocess = build_visual(cfg.vision, cfg.vision_pretrained, cfg.vision_config)
    vision = VisionTower(visual, preprocess, cfg.vision_feature)
    lm = build_lm(cfg.lm, cfg.lm_config, tokenizer, cfg.dtype, cfg.attn_implementation)
    model = VLM(cfg, vision, lm, tokenizer)
    model.entity_tokenizer = None
    if model.entity_encoder is not None:
        from vlmdata.core.tokenizer import load_tokenizer

        # a tiny random tower (entity_encoder_config) reads the LM's tokenizer unless told
        path = cfg.entity_tokenizer or cfg.entity_encoder or cfg.tokenizer or cfg.lm
        model.entity_tokenizer = load_tokenizer(path)
    if cfg.dtype != "float32":
        model.to(lm.dtype)
    return model
