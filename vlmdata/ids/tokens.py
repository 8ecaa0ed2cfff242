"""The one rule for turning an identifier into tokens, shared by tries and training targets.

The identifier is tokenized on its own (never jointly with the prompt before it), so the token
sequence the model is trained to emit is exactly the path stored in the trie. BPE merges across
the prompt/identifier boundary would otherwise make the two disagree.
"""

from __future__ import annotations


def identifier_sequence(
    tokenizer, identifier: str, prefix: str = "", eos: bool = True
) -> list[int]:
    """Token ids of `prefix + identifier` without special tokens, plus the eos id if asked."""
    ids = list(tokenizer(prefix + identifier, add_special_tokens=False)["input_ids"])
    if eos:
        if tokenizer.eos_token_id is None:
            raise ValueError("tokenizer has no eos token; pass eos=False or add one")
        ids.append(int(tokenizer.eos_token_id))
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
