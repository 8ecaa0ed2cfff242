"""AutoVER: image + question -> `<ret>` -> entity name, decoded under an entity trie.

  <s> <image>*n "question: Q answer:" | <ret> NAME-TOKENS </s>
NAME-TOKENS = identifier_sequence(tokenizer, entity_name, prefix=id_prefix, eos=True): the paths
of `vlmdata build-trie --entities ... --prefix ID_PREFIX`, so constrained decoding after `<ret>`
reaches exactly the names trained on. model.ret_token must be "<ret>".

One id -> name map (`kb`: the entities.parquet the trie is built from): the target of a record
is the KB's name of its entity_id, never the record's own spelling (AutoVER's `qid_to_entity`),
so every target is a path of the trie; a record whose entity the KB lacks is skipped (counted).
Without `kb` the record's entity_name is the target.

Optional contrastive term (`contrastive=True`, needs model.retrieval_dim), `objective`:
- "autover" (default; AutoVER's code): cosine without temperature, `<ret>` -> entity only, the
  term skipped for a global batch in which an entity repeats (`losses.autover_contrastive`).
- "infonce": the project's earlier variant: symmetric InfoNCE with a learned temperature (from
  1/0.07), rows of the same entity masked out as negatives.
Entities embed through the model's AutoVER entity encoder when it has one (model.entity_encoder:
NAME: SUMMARY from `kb`'s content + the entity image from `kb_images`), else as the LM's own
encoding of "entity: NAME<ret>" (encode_texts).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmdata.ids.tokens import identifier_sequence
from vlmtrain.errors import ConfigError
from vlmtrain.model.vlm import token_positions
from vlmtrain.recipes.base import Example, Recipe, RecipeContext, Sample, SequenceBuilder
from vlmtrain.recipes.fromage import require_ret
from vlmtrain.recipes.losses import autover_contrastive, causal_lm_loss, info_nce

ENTITY = "entity"
OBJECTIVES = ("autover", "infonce")


@dataclass(frozen=True)
class AutoverOptions:
    question_prompt: str = "question: "
    answer_prompt: str = " answer:"
    id_prefix: str = ""
    entity_prompt: str = "entity: "
    contrastive: bool = False
    contrastive_weight: float = 1.0
    eos_token: str | None = None  # None: the tokenizer's eos (the trie's --eos must match)
    objective: str = "autover"
    kb: str | None = None  # entities.parquet: targets are the KB's names
    kb_images: str | None = None  # the KB's image shards (the entity encoder's images)

    def __post_init__(self) -> None:
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")


@functools.lru_cache(maxsize=4)
def open_kb(entities: str, images: str | None = None):
    """One EntityKB per process and path (recipes are copied into data-loader workers)."""
    from vlmtrain.data.entity_kb import EntityKB

    return EntityKB(entities, images)


def entity_group(entity_id: str) -> int:
    """A stable 63-bit integer for an entity id (same entity -> same group on every rank)."""
    return int.from_bytes(hashlib.blake2b(entity_id.encode(), digest_size=8).digest()) >> 1


class AutoverRecipe(Recipe):
    name = "autover"
    kinds = (ENTITY,)
    mix = {ENTITY: 1}
    columns = (("question",), ("entity_name",))

    Options = AutoverOptions

    def __init__(self, options: AutoverOptions | None = None, pack_length: int | None = None):
        super().__init__(options, pack_length)
        self.packable = not self.contrastive  # the contrastive term reads each row's <ret> state

    def config_problems(self, data) -> list[str]:
        """The KB files the options name must be there."""
        out = []
        if self.kb and not Path(self.kb).is_file():
            out.append(f"recipe.options.kb: {self.kb} does not exist (entities.parquet)")
        if self.kb_images and not Path(self.kb_images).is_dir():
            out.append(f"recipe.options.kb_images: {self.kb_images} is not a shard folder")
        return out

    def required_columns(self) -> tuple[tuple[str, ...], ...]:
        """With a KB the entity_id column names each record's target too."""
        return self.columns + ((("entity_id",),) if self.kb else ())

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
        question, name, entity_id = meta.get("question"), meta.get("entity_name"), None
        if self.kb is not None:
            entity_id = meta.get("entity_id")
            kb = open_kb(self.kb, self.kb_images)
            if not entity_id or entity_id not in kb:
                ctx.skipped["entity_not_in_kb"] += 1
                return None
            name = kb.name(entity_id)
        if not question or not name:
            ctx.skipped["no_question_or_entity"] += 1
            return None
        seq = self.prompt(ctx, question, with_ret=False).tokens([ret], train=True)
        seq.tokens(self.target(ctx, name), train=True)
        extra: dict[str, Any] = {"entity_name": name}
        if self.contrastive:
            extra.update(self._entity_side(ctx, meta, name, entity_id))
        return self.finish(seq, sample, ctx, kind, ctx.pixel_values(sample), **extra)

    def _entity_side(self, ctx: RecipeContext, meta: dict, name: str, entity_id) -> dict:
        """The entity-encoder inputs (AutoVER) or the LM text of the entity, and its group."""
        out: dict[str, Any] = {"entity_group": entity_group(str(meta.get("entity_id") or name))}
        if ctx.entity is not None:
            entry, image = {"entity_name": name, "content": None}, None
            if entity_id is not None:
                kb = open_kb(self.kb, self.kb_images)
                entry, image = kb.entry(entity_id), kb.image_bytes(entity_id)
            out["entity_clip_ids"], out["entity_pixel_values"] = ctx.entity.make(entry, image)
        else:
            text = SequenceBuilder(ctx).text(f"{self.entity_prompt}{name}").input_ids
            out["entity_input_ids"] = text[: ctx.max_length - 1] + [require_ret(ctx, self.name)]
        return out

    def collate(self, items: list[Example]) -> dict[str, Any]:
        batch = super().collate(items)
        batch["entity_name"] = [it["entity_name"] for it in items]
        if self.contrastive:
            batch["entity_group"] = torch.tensor([it["entity_group"] for it in items])
        if "entity_clip_ids" in items[0]:
            from vlmtrain.recipes.base import pad_sequences

            ids = [it["entity_clip_ids"] for it in items]
            batch["entity_clip_ids"] = pad_sequences(ids, 0)  # masked: any id in the vocab
            batch["entity_clip_mask"] = pad_sequences([[1] * len(x) for x in ids], 0)
            batch["entity_pixel_values"] = torch.stack([it["entity_pixel_values"] for it in items])
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
            nce, used = self._contrastive(model, batch, out.hidden_states[-1])
            loss = lm + self.contrastive_weight * nce
            metrics["contrastive_loss"] = float(nce.detach())
            metrics["contrastive_skipped"] = float(not used)
        metrics["loss"] = float(loss.detach())
        return loss, metrics

    def _contrastive(
        self, model, batch: dict[str, Any], hidden: torch.Tensor
    ) -> tuple[torch.Tensor, bool]:
        """(contrastive term, whether it was computed) for this batch's `<ret>` states."""
        pos = token_positions(batch["input_ids"], batch["attention_mask"], model.ret_token_id)
        picked = hidden[torch.arange(len(pos), device=hidden.device), pos]
        queries = model.encode_ret(picked)
        if "entity_clip_ids" in batch:
            entities = model.encode_entities(
                batch["entity_pixel_values"], batch["entity_clip_ids"], batch["entity_clip_mask"]
            )
        else:
            entities = model.encode_texts(batch["entity_input_ids"], batch["entity_attention_mask"])
        groups = batch["entity_group"].to(queries.device)
        if self.objective == "autover":
            return autover_contrastive(queries, entities, groups)
        scale = model._heads()()  # read through forward: ZeRO-3-safe
        return info_nce(queries, entities, scale, groups=groups), True
