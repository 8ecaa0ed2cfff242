"""GRACE (ACL 2024): memorise image -> identifier, and retrieve query -> identifier.

Two example kinds per sample:
  image2id:  <s> "image:" <image>*n " id:" | ID-TOKENS </s>
  query2id:  <s> "caption: QUERY id:"      | ID-TOKENS </s>      (no image)
Only the identifier tokens (and eos) are supervised. ID-TOKENS come from
`vlmdata.ids.tokens.identifier_sequence(tokenizer, identifier, prefix=id_prefix, eos=True)`,
tokenized apart from the prompt: exactly the paths of a trie built with the same prefix
(default "", as `vlmdata build-trie --prefix`) and eos (option `eos_token`, default the
tokenizer's; GRACE ends identifiers with `<|endofchunk|>`: `build-trie --eos` the same), so
constrained beam search can reach every identifier the model was trained on.
GRACE mixes 16 image2id and 48 query2id examples per step: `mix`, applied by the data loader;
the loss is the sum of the two streams' mean losses (packed rows included: each token counts
for its own example's kind). Image2id memorises every image that can be retrieved, test images
included (GRACE selects `split != 'restval'`); query2id learns from the train captions only: the
shipped configs say so with two `data.streams` filters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vlmdata.core.errors import DataError
from vlmdata.ids.tokens import identifier_sequence
from vlmtrain.contract import IGNORE_INDEX
from vlmtrain.errors import ConfigError
from vlmtrain.recipes.base import (
    Example,
    Recipe,
    RecipeContext,
    Sample,
    SequenceBuilder,
    sample_texts,
)

IMAGE2ID, QUERY2ID = "image2id", "query2id"


@dataclass(frozen=True)
class GraceOptions:
    id_prefix: str = ""
    image_prompt: str = "image:"
    query_prompt: str = "caption: "
    id_prompt: str = " id:"
    mix: dict[str, int] | None = None  # kind -> weight; None: GRACE's 16 image2id : 48 query2id
    eos_token: str | None = None  # None: the tokenizer's eos; GRACE's own: "<|endofchunk|>"

    def __post_init__(self) -> None:
        unknown = set(self.mix or {}) - {IMAGE2ID, QUERY2ID}
        if unknown:
            raise ConfigError(
                f"grace mix: unknown kind(s) {sorted(unknown)}; kinds: {(IMAGE2ID, QUERY2ID)}"
            )


class GraceRecipe(Recipe):
    name = "grace"
    kinds = (IMAGE2ID, QUERY2ID)
    columns = (("texts",),)  # the queries (captions)

    Options = GraceOptions

    def __init__(self, options: GraceOptions | None = None, pack_length: int | None = None):
        super().__init__(options, pack_length)
        self.mix = dict(self.options.mix or {IMAGE2ID: 16, QUERY2ID: 48})

    def config_problems(self, data) -> list[str]:
        if data.ids:
            return []
        return ["data.ids: the grace recipe needs an ids.parquet (vlmdata build-ids)"]

    def prompt(self, ctx: RecipeContext, kind: str, query: str | None = None) -> SequenceBuilder:
        """The unsupervised prompt of `kind` (also what retrieval evaluation generates from)."""
        seq = SequenceBuilder(ctx)
        if kind == IMAGE2ID:
            return seq.text(self.image_prompt).image().text(self.id_prompt)
        if kind == QUERY2ID:
            return seq.text(f"{self.query_prompt}{query}{self.id_prompt}")
        raise ValueError(f"grace: unknown example kind {kind!r}")

    def target(self, ctx: RecipeContext, identifier: str) -> list[int]:
        return identifier_sequence(
            ctx.tokenizer, identifier, prefix=self.id_prefix, eos=True, eos_token=self.eos_token
        )

    def make(
        self, sample: Sample, ctx: RecipeContext, kind: str, text_index: int | None = None
    ) -> Example | None:
        identifier = (ctx.identifiers or {}).get(sample["key"])
        if identifier is None:
            ctx.skipped["no_identifier"] += 1
            return None
        pixel_values, query = None, None
        if kind == QUERY2ID:
            texts = sample_texts(sample)
            if not texts:
                ctx.skipped["no_query"] += 1
                return None
            i = ctx.rng_for(sample).randrange(len(texts)) if text_index is None else text_index
            query = texts[i]
        else:
            pixel_values = ctx.pixel_values(sample)
        seq = self.prompt(ctx, kind, query).tokens(self.target(ctx, identifier), train=True)
        return self.finish(seq, sample, ctx, kind, pixel_values, identifier=identifier)

    def examples(self, sample: Sample, ctx: RecipeContext) -> list[Example]:
        """image2id once, and query2id once per caption."""
        out = [self.make(sample, ctx, IMAGE2ID)]
        out += [self.make(sample, ctx, QUERY2ID, i) for i in range(len(sample_texts(sample)))]
        return [e for e in out if e is not None]

    def collate(self, items: list[Example]) -> dict[str, Any]:
        batch = super().collate(items)
        batch["identifier"] = [it["identifier"] for it in items]
        return batch

    def loss(self, model, batch: dict[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """L_image2id + L_query2id, each the token mean of its own stream's examples (GRACE's
        sum of per-task losses; one mean over the mixed batch would weight memorisation by its
        share of the tokens, about 3x less at 16:48)."""
        import torch.nn.functional as F

        out = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            pixel_values=batch.get("pixel_values"),
            position_ids=batch.get("position_ids"),  # packed rows
        )
        logits = out.logits[:, :-1, :].float()
        labels = batch["labels"][:, 1:].to(logits.device).reshape(-1)
        kinds = self.token_kinds(batch)[:, 1:].to(logits.device).reshape(-1)
        flat = logits.reshape(-1, logits.shape[-1])
        per_token = F.cross_entropy(flat, labels, ignore_index=IGNORE_INDEX, reduction="none")
        supervised = labels != IGNORE_INDEX
        total, metrics = per_token.sum() * 0.0, {}
        for k, kind in enumerate(self.kinds):
            sel = supervised & (kinds == k)
            if bool(sel.any()):
                part = per_token[sel].mean()
                total = total + part
                metrics[f"{kind}_loss"] = float(part.detach())
        metrics.update(loss=float(total.detach()), tokens=float(supervised.sum()))
        return total, metrics

    def token_kinds(self, batch: dict[str, Any]) -> torch.Tensor:
        """(rows, width): the index in `kinds` of the example each token belongs to (-1: none).

        Unpacked, row i is example i; packed, `example_index` says which example a token is."""
        of_example = torch.tensor([self.kinds.index(k) for k in batch["kind"]])
        index = batch.get("example_index")
        if index is None:
            rows = torch.arange(len(batch["kind"]))[:, None]
            return of_example[rows].expand(batch["labels"].shape)
        index = index.cpu()
        return torch.where(index >= 0, of_example[index.clamp(min=0)], -1)


def load_identifiers(path, tokenizer=None, *, check_tokens: bool = True) -> dict[str, str]:
    """key -> identifier from ids.parquet.

    When the file stores `tokens` (identifier alone, no prefix, no eos: `vlmdata build-ids
    --tokenizer`) and a tokenizer is given, each must equal
    identifier_sequence(tokenizer, identifier, eos=False): a mismatch means the ids were built
    with another tokenizer, and training would teach paths no trie of this tokenizer holds.
    """
    import polars as pl

    df = pl.read_parquet(path)
    for col in ("key", "identifier"):
        if col not in df.columns:
            raise DataError(f"missing column {col!r}", file=str(path))
    ids = dict(zip(df["key"].to_list(), df["identifier"].to_list(), strict=True))
    if tokenizer is None or not check_tokens or "tokens" not in df.columns:
        return ids
    for row, (ident, stored) in enumerate(zip(df["identifier"], df["tokens"], strict=True)):
        if stored is None:
            continue
        expected = identifier_sequence(tokenizer, ident, eos=False)
        if list(stored) != expected:
            raise DataError(
                f"tokens of identifier {ident!r} are {list(stored)}, but this tokenizer gives "
                f"{expected}: ids.parquet was built with another tokenizer",
                file=str(path),
                line=row,
            )
    return ids
