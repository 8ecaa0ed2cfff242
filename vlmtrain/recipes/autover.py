"""AutoVER: image + question -> `<ret>` -> entity name, decoded under an entity trie.

  <s> <image>*n "question: Q answer:" | <ret> NAME-TOKENS </s>
NAME-TOKENS = identifier_sequence(tokenizer, entity_name, prefix=id_prefix, eos=True): the paths
of `vlmdata build-trie --entities ... --prefix ID_PREFIX`, so constrained decoding after `<ret>`
reaches exactly the names trained on. model.ret_token must be "<ret>".

Optional contrastive term (`contrastive=True`, needs model.retrieval_dim): the `<ret>` hidden
state (projected) against entity embeddings, here the same model's text embedding of
"entity: NAME<ret>" (encode_texts), InfoNCE over the global batch with questions about the same
entity (equal entity_id) masked out as negatives.
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
import torch.nn.functional as F

from vlmdata.ids.tokens import identifier_sequence
from vlmtrain.model.vlm import token_positions
from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import require_ret
from vlmtrain.recipes.losses import causal_lm_loss, info_nce

ENTITY = "entity"


def entity_group(entity_id: str) -> int:
    """A stable 63-bit integer for an entity id (same entity -> same group on every rank)."""
    return int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8).digest()) >> 1


class AutoverRecipe(Recipe):
    name = "autover"
    kinds = (ENTITY,)
    mix = {ENTITY: 1}
    columns = (("question",), ("entity_name",))

    def __init__(
        self,
        question_prompt: str = "question: ",
        answer_prompt: str = " answer:",
        id_prefix: str = "",
        entity_prompt: str = "entity: ",
        contrastive: bool = False,
        contrastive_weight: float = 1.0,
        eos_token: str | None = None,
    ):
        self.question_prompt, self.answer_prompt = question_prompt, answer_prompt
        self.id_prefix, self.entity_prompt = id_prefix, entity_prompt
        self.contrastive, self.contrastive_weight = contrastive, contrastive_weight
        self.eos_token = eos_token  # None: the tokenizer's eos (the trie's --eos must match)
        self.packable = not contrastive  # the contrastive term reads each row's <ret> state

    def prompt(self, ctx: RecipeContext, question: str, with_ret: bool = True) -> SequenceBuilder:
        """The unsupervised prompt; with `<ret>` appended, the trie constrains what follows."""
        seq = SequenceBuilder(ctx).image()
        seq.text(f"{self.question_prompt}{question}{self.answer_prompt}")
        return seq.tokens([require_ret(ctx, self.name)], False) if with_ret else seq

    def target(self, ctx: RecipeContext, entity_name: str) -> list[int]:
        return identifier_sequence(
            ctx.tokenizer, entity_name, prefix=self.id_prefix, eos=True, eos_token=self.eos_token
        )

    def make(self, sample: Sample, ctx: RecipeContext, kind: str, **_) -> Example | None:
        ret = require_ret(ctx, self.name)
        meta = sample.get("meta") or {}
        question, name = meta.get("question"), meta.get("entity_name")
        if not question or not name:
            ctx.skipped["no_question_or_entity"] += 1
            return None
        seq = self.prompt(ctx, question, with_ret=False).tokens([ret], train=True)
        seq.tokens(self.target(ctx, name), train=True)
        extra: dict[str, Any] = {"entity_name": name}
        if self.contrastive:
            text = SequenceBuilder(ctx).text(f"{self.entity_prompt}{name}").input_ids
            extra["entity_input_ids"] = text[: ctx.max_length - 1] + [ret]
            extra["entity_group"] = entity_group(str(meta.get("entity_id") or name))
        return self.finish(seq, sample, ctx, kind, ctx.pixel_values(sample), **extra)

    def collate(self, items: list[Example]) -> dict[str, Any]:
        batch = super().collate(items)
        batch["entity_name"] = [it["entity_name"] for it in items]
        if self.contrastive:
            batch["entity_group"] = torch.tensor([it["entity_group"] for it in items])
        return batch

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch["pixel_values"],
            output_hidden_states=self.contrastive,
            position_ids=batch.get("position_ids"),  # packed rows (never with contrastive)
        )
        lm, n_tokens = causal_lm_loss(out.logits, batch["labels"])
        metrics = {"lm_loss": float(lm.detach()), "tokens": float(n_tokens)}
        loss = lm
        if self.contrastive:
            nce = self._contrastive(model, batch, out.hidden_states[-1])
            loss = lm + self.contrastive_weight * nce
            metrics["contrastive_loss"] = float(nce.detach())
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _contrastive(self, model, batch: dict[str, Any], hidden: torch.Tensor) -> torch.Tensor:
        heads = model._heads()
        pos = token_positions(batch["input_ids"], batch["attention_mask"], model.ret_token_id)
        picked = hidden[torch.arange(len(pos), device=hidden.device), pos]
        queries = F.normalize(heads.text_proj(picked), dim=-1)
        entities = model.encode_texts(batch["entity_input_ids"], batch["entity_attention_mask"])
        groups = batch["entity_group"].to(queries.device)
        return info_nce(queries, entities, heads(), groups=groups)  # heads(): ZeRO-3-safe
