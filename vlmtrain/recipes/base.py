"""What every recipe shares: the context it tokenizes with, a sequence builder, collate, LM loss.

A recipe turns one shard Sample (dict: key, image bytes, image_ext, meta, txt) into an example:
`input_ids` and `labels` (lists of ints, -100 where not supervised), `pixel_values` (a (3, H, W)
tensor or None), plus `key`, `kind` and `pad_id`. Prompt and target pieces are tokenized
SEPARATELY and concatenated, so the label mask is exact by construction and target tokens are
the same ones constrained decoding will later allow.

Examples a recipe cannot make (no identifier for the key, sequence too long, ...) return None and
are counted by reason in `ctx.skipped`, so the data loader can report them: nothing is dropped
without a count.
"""

from __future__ import annotations

import dataclasses
import random
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from vlmdata.core.errors import DataError
from vlmdata.core.manifest import texts_problem
from vlmdata.core.tokenizer import pad_id
from vlmdata.shards.reader import Sample  # the shard sample (docs/DESIGN.md, contract 3)
from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.model.losses import causal_lm_loss

Example = dict[str, Any]


@dataclass
class RecipeContext:
    """Everything a recipe needs besides the sample; build it with `for_model`."""

    tokenizer: Any
    image_transform: Callable | None
    num_image_tokens: int
    image_token_id: int
    max_length: int = 512
    identifiers: Mapping[str, str] | None = None  # grace: key -> identifier (ids.parquet)
    kind: str | None = None  # which example kind `example()` makes (None: drawn by `rng`)
    rng: random.Random | None = None  # caption / kind choice; None: seeded by the sample key
    ret_token_id: int | None = None
    entity: Any = None  # EntityInputs of a model with AutoVER's entity encoder, else None
    skipped: Counter = field(default_factory=Counter)  # reason -> count of examples not made

    @classmethod
    def for_model(cls, model, **kwargs: Any) -> RecipeContext:
        """A context that matches `model` (tokenizer, transform, placeholder count, tokens)."""
        return cls(
            tokenizer=model.tokenizer,
            image_transform=model.image_transform,
            num_image_tokens=model.num_image_tokens,
            image_token_id=model.image_token_id,
            ret_token_id=model.ret_token_id,
            entity=entity_inputs_of(model),
            **kwargs,
        )

    def rng_for(self, sample: Sample) -> random.Random:
        return self.rng if self.rng is not None else random.Random(str(sample["key"]))

    def pixel_values(self, sample: Sample) -> torch.Tensor:
        from vlmtrain.data.transforms import decode_image

        if self.image_transform is None:
            raise ValueError("this recipe needs images: RecipeContext.image_transform is None")
        try:
            image = decode_image(sample["image"])
        except Exception as e:  # PIL raises many types for bad bytes
            raise DataError(f"sample {sample['key']}: cannot decode image ({e})") from e
        return self.image_transform(image)


@dataclass(frozen=True)
class EntityInputs:
    """What turns a KB entry into entity-encoder inputs (vlmtrain.model.entity_encoder)."""

    tokenizer: Any
    transform: Callable
    context_length: int
    image_size: int

    def make(self, entry: dict, image: bytes | None) -> tuple[list[int], torch.Tensor]:
        from vlmtrain.model.entity_encoder import entity_inputs

        return entity_inputs(self.tokenizer, self.transform, self.context_length,
                             self.image_size, entry, image)  # fmt: skip


def entity_inputs_of(model) -> EntityInputs | None:
    """The model's EntityInputs, None without an entity encoder."""
    enc = getattr(model, "entity_encoder", None)
    if enc is None:
        return None
    from vlmtrain.model.entity_encoder import entity_image_transform

    aspect = model.cfg.image_aspect
    return EntityInputs(model.entity_tokenizer, entity_image_transform(enc.image_size, aspect),
                        enc.context_length, enc.image_size)  # fmt: skip


class SequenceBuilder:
    """Append prompt/target pieces; keeps `input_ids` and `labels` aligned token by token."""

    def __init__(self, ctx: RecipeContext, bos: bool = True):
        self.ctx, self.input_ids, self.labels = ctx, [], []
        bos_id = ctx.tokenizer.bos_token_id
        if bos and bos_id is not None:
            self.tokens([bos_id], train=False)

    def tokens(self, ids: list[int], train: bool) -> SequenceBuilder:
        self.input_ids += list(ids)
        self.labels += list(ids) if train else [IGNORE_INDEX] * len(ids)
        return self

    def text(self, text: str, train: bool = False) -> SequenceBuilder:
        """`text`'s tokens; a text that holds the image placeholder itself (a caption or question
        with a literal `<image>`) is bad input: the model would find more slots than images."""
        ids = self.ctx.tokenizer(text, add_special_tokens=False)["input_ids"]
        if self.ctx.image_token_id in ids:
            mark = self.ctx.tokenizer.convert_ids_to_tokens(self.ctx.image_token_id)
            raise DataError(f"text {text[:80]!r} holds the image placeholder {mark!r} itself; "
                            "only the recipe places images (remove it from the data or the "
                            "prompt)")  # fmt: skip
        return self.tokens(ids, train)

    def image(self) -> SequenceBuilder:
        return self.tokens([self.ctx.image_token_id] * self.ctx.num_image_tokens, train=False)

    def eos(self, train: bool = True) -> SequenceBuilder:
        return self.tokens([self.ctx.tokenizer.eos_token_id], train)

    def fits(self) -> bool:
        return len(self.input_ids) <= self.ctx.max_length

    def truncated(self) -> tuple[list[int], list[int]] | None:
        """Cut to max_length, unless that would cut an image or leave no supervised token."""
        n = self.ctx.max_length
        ids, labels = self.input_ids[:n], self.labels[:n]
        dropped_images = self.input_ids[n:].count(self.ctx.image_token_id)
        if dropped_images or all(label == IGNORE_INDEX for label in labels[1:]):
            return None
        return ids, labels


def sample_texts(sample: Sample) -> list[str]:
    """The sample's captions/queries: meta["texts"], else the .txt member."""
    listed = (sample.get("meta") or {}).get("texts") or []
    texts = [t for t in listed if texts_problem([t]) is None]  # the one texts rule, per text
    if not texts and sample.get("txt"):
        texts = [sample["txt"]]
    return texts


def pad_sequences(seqs: list[list[int]], value: int) -> torch.Tensor:
    width = max(len(s) for s in seqs)
    out = torch.full((len(seqs), width), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def collate_examples(items: list[Example]) -> dict[str, Any]:
    """Right-pad every `*input_ids` field (pad id) with its `*attention_mask`, every `*labels`
    field with -100; stack the images present (example order = placeholder order)."""
    pad = items[0]["pad_id"]
    batch: dict[str, Any] = {
        "key": [it["key"] for it in items],
        "kind": [it["kind"] for it in items],
    }
    for name in items[0]:
        if name.endswith("input_ids"):
            seqs = [it[name] for it in items]
            batch[name] = pad_sequences(seqs, pad)
            mask_name = name[: -len("input_ids")] + "attention_mask"
            batch[mask_name] = pad_sequences([[1] * len(s) for s in seqs], 0)
        elif name.endswith("labels"):
            batch[name] = pad_sequences([it[name] for it in items], IGNORE_INDEX)
    images = [it["pixel_values"] for it in items if it.get("pixel_values") is not None]
    batch["pixel_values"] = torch.stack(images) if images else None
    return batch


@dataclass(frozen=True)
class NoOptions:
    """The options of a recipe that takes none."""


class Recipe:
    """Base recipe: one example kind, LM loss on the supervised tokens.

    A recipe is built once from its typed `Options` (a frozen dataclass per recipe, filled from
    the config's `recipe.options` by `vlmtrain.recipes.get_recipe`) and a packing row length,
    and not changed after: `packed(n)` is a new recipe. Each option is also an attribute of the
    recipe (unless a method has its name); a subclass adds what it derives from them.
    """

    Options: type = NoOptions
    name = "base"
    kinds: tuple[str, ...] = ("default",)
    mix: dict[str, int] = {"default": 1}  # per-step mixing weights the data loader applies
    packable = True  # the loss reads nothing per row: examples may share rows (data.packing)
    columns: tuple[tuple[str, ...], ...] = ()  # index columns read: each entry, one of these

    def __init__(self, options: Any = None, pack_length: int | None = None) -> None:
        self.options = self.Options() if options is None else options
        self.pack_length = pack_length  # collate packs rows of this many tokens (None: pads)
        for f in dataclasses.fields(self.options):
            if not callable(getattr(type(self), f.name, None)):
                setattr(self, f.name, getattr(self.options, f.name))

    def packed(self, row_length: int) -> Recipe:
        """This recipe with the same options, collating packed rows of `row_length` tokens."""
        return type(self)(self.options, pack_length=row_length)

    def config_problems(self, data) -> list[str]:
        """What this recipe needs of the data config (a DataConfig) that it lacks; checked by
        the launcher's pre-flight before any rank starts."""
        return []

    def required_columns(self) -> tuple[tuple[str, ...], ...]:
        """Columns the shards' index must carry (each entry: any one of its names); checked by
        the launcher's pre-flight before any rank starts."""
        return self.columns

    def example(self, sample: Sample, ctx: RecipeContext) -> Example | None:
        """One example of kind `ctx.kind` (or a kind drawn by the `mix` weights)."""
        kind = ctx.kind or self.draw_kind(ctx.rng_for(sample))
        return self.make(sample, ctx, kind)

    def examples(self, sample: Sample, ctx: RecipeContext) -> list[Example]:
        """Every example the sample yields (all kinds; each caption once where that applies)."""
        out = [self.make(sample, ctx, kind) for kind in self.kinds]
        return [e for e in out if e is not None]

    def draw_kind(self, rng: random.Random) -> str:
        kinds = list(self.mix)
        return rng.choices(kinds, weights=[self.mix[k] for k in kinds])[0]

    def make(self, sample: Sample, ctx: RecipeContext, kind: str, **kw: Any) -> Example | None:
        raise NotImplementedError

    def collate(self, items: list[Example]) -> dict[str, Any]:
        if self.pack_length:
            from vlmtrain.data.packing import pack_examples

            return pack_examples(items, self.pack_length)
        return collate_examples(items)

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        return lm_loss(model, batch)

    def after_step(self, engine) -> None:
        """Called with the DeepSpeed engine (a bare model in tests) after every
        `engine.step()` (FROMAGe rescales [RET] there)."""

    @staticmethod
    def finish(
        seq: SequenceBuilder,
        sample: Sample,
        ctx: RecipeContext,
        kind: str,
        pixel_values=None,
        truncate: bool = False,
        **extra: Any,
    ) -> Example | None:
        """Package a built sequence; too long -> truncated (captions) or skipped (targets)."""
        ids, labels = seq.input_ids, seq.labels
        if not seq.fits():
            cut = seq.truncated() if truncate else None
            if cut is None:
                ctx.skipped["too_long"] += 1
                return None
            ids, labels = cut
        return {
            "key": sample["key"],
            "kind": kind,
            "input_ids": ids,
            "labels": labels,
            "pixel_values": pixel_values,
            "pad_id": pad_id(ctx.tokenizer),
            **extra,
        }


def lm_loss(model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
    """Next-token loss on the labelled tokens; metrics: loss and supervised token count."""
    out = model(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        pixel_values=batch.get("pixel_values"),
        position_ids=batch.get("position_ids"),  # packed rows
    )
    loss, n_tokens = causal_lm_loss(out.logits, batch["labels"])
    return loss, {"loss": float(loss.detach()), "tokens": float(n_tokens)}
