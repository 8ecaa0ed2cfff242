"""The one rule for turning an identifier into tokens, shared by tries and training targets.

The identifier is tokenized on its own (never jointly with the prompt before it), so the token
sequence the model is trained to emit is exactly the path stored in the trie. BPE merges across
the prompt/identifier boundary would otherwise make the two disagree.
"""

from __future__ import annotations

import contextlib
import gc
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
    newline = _newline(backend) if backend is not None else None
    for i in range(0, len(identifiers), batch_size):
        texts = identifiers[i : i + batch_size]
        texts = [prefix + s for s in texts] if prefix else list(texts)
        if backend is not None:
            flat, lengths = _backend_tokens(backend, texts, newline)
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


def join_parts(parts: list, dtype=None):
    """np.concatenate(parts) (in `dtype`, default their common type), each part dropped once
    copied: the parts and the result are not all held at once (np.concatenate: twice the
    tokens at its peak). `parts` is emptied."""
    import numpy as np

    out = np.empty(sum(len(p) for p in parts), dtype or np.result_type(*parts))
    parts.reverse()
    at = 0
    while parts:
        part = parts.pop()
        out[at : at + len(part)] = part
        at += len(part)
    return out


def _backend_tokens(backend, texts: list[str], newline: tuple | None = None):
    """(flat int32 ids, int64 lengths) of the texts by the `tokenizers` backend, without
    special tokens. `newline` (`_newline`): names that may be are joined 256 to a text
    (`vlmdata.ids.joined`), the rest go one text each. Per text, the results are joined by
    `Encoding.merge` (ids concatenated in Rust), so one id list crosses into Python per batch,
    not one per text. A post-processor that only places special tokens
    (`_adds_only_specials`) is set aside for the call (~13% of it, no id changes), and
    Python's cyclic GC is paused (`_gc_paused`)."""
    from vlmdata.ids import joined

    with _gc_paused(), _post_processor_aside(backend):
        if newline is None:
            return _encode_each(backend, texts)
        mask = joined.joinable(texts, newline[1])
        if mask.all():
            return joined.encode_joined(backend, texts, newline[0])
        picked = [(t, m) for t, m in zip(texts, mask.tolist(), strict=True)]
        together = joined.encode_joined(backend, [t for t, m in picked if m], newline[0])
        alone = _encode_each(backend, [t for t, m in picked if not m])
        return joined.interleave(mask, together, alone)


def _encode_each(backend, texts: list[str]):
    """(flat int32 ids, int64 lengths), one tokenizer text per name."""
    import numpy as np
    from tokenizers import Encoding

    encs = backend.encode_batch_fast(texts, add_special_tokens=False)
    lengths = np.fromiter(map(len, encs), dtype=np.int64, count=len(encs))
    ids = Encoding.merge(encs, growing_offsets=False).ids if encs else []
    del encs
    return np.array(ids, dtype=np.int32), lengths


def _newline(backend) -> tuple[int, list[str]] | None:
    """(the newline's id, the stripping added tokens) when names may be joined for this
    backend (`vlmdata.ids.joined.newline_id`), else None."""
    from vlmdata.ids import joined

    with _post_processor_aside(backend):
        newline = joined.newline_id(backend)
    return None if newline is None else (newline, joined.strip_tokens(backend))


@contextlib.contextmanager
def _post_processor_aside(backend):
    """The backend without its post-processor while inside, when that only places special
    tokens (`_adds_only_specials`); put back on the way out, whatever happens."""
    post = backend.post_processor
    aside = post is not None and _adds_only_specials(post)
    if aside:
        backend.post_processor = None
    try:
        yield backend
    finally:
        if aside:
            backend.post_processor = post


@contextlib.contextmanager
def _gc_paused():
    """Python's cyclic GC off while inside (back to how it was on the way out). A batch's
    16,384 result objects live until merged; each such wave of survivors set off full
    collections over every object the imports made (transformers': ~15% of build-trie's CPU
    at 10^6 names, measured). The call makes no reference cycles, so nothing is left over."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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
