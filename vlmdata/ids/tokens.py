"""The one rule for turning an identifier into tokens, shared by tries and training targets.

The identifier is tokenized on its own (never jointly with the prompt before it), so the token
sequence the model is trained to emit is exactly the path stored in the trie. BPE merges across
the prompt/identifier boundary would otherwise make the two disagree.
"""

from __future__ import annotations

import itertools


def eos_token_id(tokenizer, eos_token: str | None = None) -> int:
    """The id identifiers end with: `eos_token` (one token of the vocabulary, e.g. GRACE's
    `<|endofchunk|>`) or, by default, the tokenizer's eos. ValueError if there is none."""
    if eos_token is None:
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos token; pass eos=False or add one")
        return int(tokenizer.eos_token_id)
    ids = tokenizer.convert_tokens_to_ids([eos_token])
    if not ids or ids[0] is None or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"eos token {eos_token!r} is not a token of the tokenizer")
    return int(ids[0])


def identifier_sequence(
    tokenizer, identifier: str, prefix: str = "", eos: bool = True, eos_token: str | None = None
) -> list[int]:
    """Token ids of `prefix + identifier` without special tokens, then the eos id if asked
    (`eos_token`'s, default the tokenizer's: the trie must be built with the same one)."""
    ids = list(tokenizer(prefix + identifier, add_special_tokens=False)["input_ids"])
    if eos:
        ids.append(eos_token_id(tokenizer, eos_token))
    return ids


def identifier_sequences(
    tokenizer,
    identifiers: list[str],
    prefix: str = "",
    eos: bool = True,
    batch_size: int = 65536,
):
    """`identifier_sequence` for many identifiers, tokenized in batches. Yields (flat int32
    tokens, int64 lengths) per batch, so millions of entity names never exist as Python lists
    all at once. A fast tokenizer is called through its `tokenizers` backend (`_backend`):
    the same ids at half the CPU of transformers' per-result Python objects.
    """
    import numpy as np

    if eos and tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos token; pass eos=False or add one")
    backend = _backend(tokenizer)
    for i in range(0, len(identifiers), batch_size):
        texts = identifiers[i : i + batch_size]
        texts = [prefix + s for s in texts] if prefix else list(texts)
        if backend is not None:
            flat, lengths = _backend_tokens(backend, texts)
        else:
            enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
            lengths = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
            flat = np.fromiter(itertools.chain.from_iterable(enc), np.int32, count=lengths.sum())
            del enc
        if eos:
            flat, lengths = append_eos(flat, lengths, tokenizer.eos_token_id), lengths + 1
        yield flat, lengths


def append_eos(flat, lengths, eos_id: int):
    """`flat` with `eos_id` after each sequence, written once into its final array (np.insert
    would copy the tokens again)."""
    import numpy as np

    out = np.empty(len(flat) + len(lengths), dtype=flat.dtype)
    ends = np.cumsum(lengths + 1) - 1
    keep = np.ones(len(out), dtype=bool)
    keep[ends] = False
    out[keep] = flat
    out[ends] = eos_id
    return out


def _backend_tokens(backend, texts: list[str]):
    """(flat int32 ids, int64 lengths) of the texts by the `tokenizers` backend, without
    special tokens. The results are joined by `Encoding.merge` (ids concatenated in Rust), so
    one id list crosses into Python per batch, not one per text (half the conversion's CPU). A
    post-processor that only places special tokens (`_adds_only_specials`) is set aside for the
    call: building its per-text copies is ~13% of the call and changes no id."""
    import numpy as np
    from tokenizers import Encoding

    post = backend.post_processor
    aside = post is not None and _adds_only_specials(post)
    if aside:
        backend.post_processor = None
    try:
        encs = backend.encode_batch_fast(texts, add_special_tokens=False)
    finally:
        if aside:
            backend.post_processor = post
    lengths = np.fromiter(map(len, encs), dtype=np.int64, count=len(encs))
    ids = Encoding.merge(encs, growing_offsets=False).ids if encs else []
    return np.array(ids, dtype=np.int32), lengths


def _adds_only_specials(post) -> bool:
    """True for the `tokenizers` post-processors whose only change to the ids, without special
    tokens, is none (they add special tokens, type ids, trimmed offsets): ByteLevel, Bert,
    Roberta, a Template whose single-sequence template holds sequence A once, and Sequences
    of those. Anything else (a custom processor) is kept."""
    import json

    try:
        state = json.loads(post.__getstate__())
    except (AttributeError, TypeError, ValueError):
        return False
    return _specials_only(state)


def _specials_only(state) -> bool:
    kind = state.get("type") if isinstance(state, dict) else None
    if kind in ("ByteLevel", "BertProcessing", "RobertaProcessing"):
        return True
    if kind == "TemplateProcessing":
        pieces = state.get("single") or []
        seqs = [p for p in pieces if "Sequence" in p]
        specials = [p for p in pieces if "SpecialToken" in p]
        return (
            len(seqs) == 1
            and seqs[0]["Sequence"].get("id") == "A"
            and (len(seqs) + len(specials) == len(pieces))
        )
    if kind == "Sequence":
        return all(_specials_only(p) for p in state.get("processors") or [])
    return False


def _backend(tokenizer):
    """The `tokenizers.Tokenizer` behind a fast transformers tokenizer when calling it gives
    exactly what `tokenizer(texts, add_special_tokens=False)` gives: none configured with
    truncation or padding (transformers turns those off per call). None otherwise."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "encode_batch_fast"):
        return None
    if backend.truncation is not None or backend.padding is not None:
        return None
    return backend
