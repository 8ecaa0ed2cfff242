"""The one rule for turning an identifier into tokens, shared by tries and training targets.

The identifier is tokenized on its own (never jointly with the prompt before it), so the token
sequence the model is trained to emit is exactly the path stored in the trie. BPE merges across
the prompt/identifier boundary would otherwise make the two disagree.
"""

from __future__ import annotations


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
    """`identifier_sequence` for many identifiers, tokenized in batches (fast tokenizers batch
    in Rust). Yields (flat int64 tokens, lengths) per batch, so millions of entity names never
    exist as Python lists all at once.
    """
    import numpy as np

    if eos and tokenizer.eos_token_id is None:
        raise ValueError("tokenizer has no eos token; pass eos=False or add one")
    for i in range(0, len(identifiers), batch_size):
        texts = [prefix + s for s in identifiers[i : i + batch_size]]
        enc = tokenizer(texts, add_special_tokens=False)["input_ids"]
        lengths = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        flat = np.fromiter((t for ids in enc for t in ids), dtype=np.int64, count=lengths.sum())
        if eos:
            flat = np.insert(flat, np.cumsum(lengths), tokenizer.eos_token_id)
            lengths = lengths + 1
        yield flat, lengths
