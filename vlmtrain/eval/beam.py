"""Beam search under GIT's image attention (image tokens see each other both ways).

Hugging Face `generate` builds a causal mask itself, so a model trained with the block mask of
vlmtrain.model.attention decodes here instead. Each step runs the LM over the whole sequence
with that mask (no KV cache: the prompt's image rows must see each other, and captions are a few
dozen tokens). The search is GIT's `GeneratorWithBeamSearch` (generativeimage2text/layers/
decoder.py): 2 x beams candidates per step, a candidate ending in eos becomes a finished
hypothesis scored sum(log p) / len ** length_penalty, where len counts the text so far (<s> and
the prompt included, the eos not), and a row is done once its best finished hypothesis beats
what any live beam could still reach at the current length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

NEG = -1e9  # GIT's score for the beams that start empty


@torch.no_grad()
def image_block_generate(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    pixel_values: torch.Tensor | None,
    *,
    eos_id: int,
    num_beams: int = 1,
    length_penalty: float = 1.0,
    max_new_tokens: int = 30,
) -> list[list[int]]:
    """Per row, the best hypothesis's new tokens (ending with eos when it finished)."""
    from vlmtrain.model.vlm import left_align

    ids, mask = left_align(input_ids, attention_mask, model._pad_id())
    embeds = model.embed(ids, pixel_values)
    is_img = ids == model.image_token_id
    b, k = ids.shape[0], num_beams
    text_len = ((mask == 1) & ~is_img).sum(1).tolist()
    ids, mask, embeds, is_img = (t.repeat_interleave(k, 0) for t in (ids, mask, embeds, is_img))
    scores = torch.full((b, k), NEG, device=ids.device)
    scores[:, 0] = 0.0
    gen: list[list[int]] = [[] for _ in range(b * k)]
    best: list[tuple[float, list[int]] | None] = [None] * b
    for step in range(max_new_tokens):
        logp = F.log_softmax(next_token_logits(model, embeds, mask, is_img).float(), dim=-1)
        vocab = logp.shape[-1]
        cand = (scores.view(-1, 1) + logp).view(b, k * vocab)
        top_s, top_i = cand.topk(min(2 * k, k * vocab), dim=1)
        src, tok, new_scores = [], [], []
        for r in range(b):
            picked = _step_row(r, top_s[r].tolist(), top_i[r].tolist(), vocab, k, eos_id,
                               text_len[r] + step, length_penalty, gen, best)  # fmt: skip
            for s, beam, t in picked:
                src.append(r * k + beam)
                tok.append(t)
                new_scores.append(s)
        if all(best[r] is not None and best[r][2] for r in range(b)):
            break
        src_t = torch.tensor(src, device=ids.device)
        tok_t = torch.tensor(tok, device=ids.device)
        gen = [gen[s] + [t] for s, t in zip(src, tok, strict=True)]
        scores = torch.tensor(new_scores, device=ids.device).view(b, k)
        step_embeds = model.embed_tokens(tok_t[:, None]).to(embeds.dtype)
        embeds = torch.cat([embeds[src_t], step_embeds], dim=1)
        mask = torch.cat([mask[src_t], torch.ones_like(tok_t)[:, None]], dim=1)
        is_img = torch.cat([is_img[src_t], torch.zeros_like(tok_t, dtype=torch.bool)[:, None]], 1)
    else:
        step = max_new_tokens
    out = []
    for r in range(b):
        if best[r] is None or not best[r][2]:
            length = text_len[r] + step
            for j in range(k):
                _keep(best, r, float(scores[r, j]) / length**length_penalty, gen[r * k + j])
        out.append(best[r][1])
    return out


def next_token_logits(
    model, embeds: torch.Tensor, mask: torch.Tensor, is_img: torch.Tensor
) -> torch.Tensor:
    """(rows, vocab) logits after left-aligned rows under GIT's block mask; positions count
    from each row's first real token, so padding on the left changes nothing."""
    from vlmtrain.model.attention import image_block_mask

    impl = model.lm.config._attn_implementation
    attn = image_block_mask(is_img, mask, impl, embeds.dtype)
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    out = model.lm(inputs_embeds=embeds, attention_mask=attn, position_ids=pos, use_cache=False)
    return out.logits[:, -1]


def _step_row(r, top_s, top_i, vocab, k, eos_id, cur_len, lp, gen, best):
    """The next k (score, beam, token) of row r; eos candidates among the top k finish."""
    if best[r] is not None and best[r][2]:  # done: keep the row's shape, it is not read again
        return [(NEG, 0, eos_id)] * k
    picked = []
    for rank, (s, i) in enumerate(zip(top_s, top_i, strict=True)):
        beam, t = divmod(i, vocab)
        if t == eos_id:
            if rank < k:
                _keep(best, r, s / cur_len**lp, gen[r * k + beam] + [eos_id])
        else:
            picked.append((s, beam, t))
        if len(picked) == k:
            break
    if best[r] is not None and best[r][0] >= max(top_s) / cur_len**lp:
        best[r] = (best[r][0], best[r][1], True)
    return picked + [(NEG, 0, eos_id)] * (k - len(picked))


def _keep(best, r, score: float, tokens: list[int]) -> None:
    """Keep the better of row r's finished hypothesis and this one (GIT keeps 1 per row)."""
    if best[r] is None or score > best[r][0]:
        best[r] = (score, tokens, False)
