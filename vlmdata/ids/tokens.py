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
