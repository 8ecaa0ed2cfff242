"""Many names in one tokenizer text, joined by newlines, where that provably gives each name's
own ids: a byte-level BPE (GPT-2's pre-tokenizer, no normalizer) and names that start and end
with a letter, number, punctuation or symbol and hold no newline.

Why: the `tokenizers` backend's fixed work per text (a NormalizedString, the added-token split,
an Encoding, its Python object, its merge) is ~10-15% of `build-trie`'s tokenizer CPU on
OVEN-shaped entity names; a text of 256 joined names pays it once (benchmarks/RESULTS.md).

Why it is exact: the added-token split, the GPT-2 pattern
`'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+` and the BPE
model all work per piece, left to right, with no look-behind. Between a name ending in a
non-space and one starting with a non-space, a newline is matched alone (`\\s+`: the next
character is no space, so `\\s+(?!\\S)` fails), no match of either name can take it in (only the
space alternatives match a newline, and each name's space runs lie inside it), and matching
starts again at the next name's first character as it does for that name alone. So the ids
are each name's ids with the newline's single token after each, and no name's token is that
one (its piece holds the newline byte). An added token's single_word test sees the newline
as it sees the text's end (no word character); added tokens with lstrip / rstrip could swallow
it, so names holding one are tokenized alone. Everything else goes by name, as before.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

GROUP = 256  # names per joined text: 64 texts per 16,384-name batch, still spread over threads
EDGE = r"[\p{L}\p{N}\p{P}\p{S}]"  # a first / last character that is surely not a space


def newline_id(backend) -> int | None:
    """The one id of "\\n" when `backend` (a `tokenizers.Tokenizer`, post-processor set aside)
    joins exactly: no normalizer, a ByteLevel pre-tokenizer with the GPT-2 pattern and no
    prefix space, a BPE model without dropout, no added token holding a newline. Else None."""
    from tokenizers import models, pre_tokenizers

    pre = backend.pre_tokenizer
    if backend.normalizer is not None or not isinstance(pre, pre_tokenizers.ByteLevel):
        return None
    if pre.add_prefix_space or not pre.use_regex:
        return None
    if not isinstance(backend.model, models.BPE) or backend.model.dropout is not None:
        return None
    if any("\n" in t.content for t in backend.get_added_tokens_decoder().values()):
        return None
    ids = backend.encode("\n", add_special_tokens=False).ids
    return ids[0] if len(ids) == 1 else None


def strip_tokens(backend) -> list[str]:
    """Added tokens that take in the spaces beside them (lstrip / rstrip): a name holding one
    is tokenized alone, since such a token next to the joining newline would swallow it."""
    return [t.content for t in backend.get_added_tokens_decoder().values() if t.lstrip or t.rstrip]


def joinable(texts: list[str], stripping: list[str]) -> np.ndarray:
    """Bool per text: it may be joined (see the module doc). Decided from the UTF-8 bytes:
    a printable ASCII non-space at both ends is enough; a non-ASCII end character is checked
    against `EDGE` (Unicode letter, number, punctuation, symbol) by Arrow's RE2."""
    arr = pa.array(texts, type=pa.large_string())
    offsets = np.frombuffer(arr.buffers()[1], np.int64)[: len(arr) + 1]
    data = np.frombuffer(arr.buffers()[2], np.uint8) if len(arr) and offsets[-1] else None
    ok = offsets[1:] > offsets[:-1]  # empty texts go alone
    if data is None:
        return ok
    first = data[np.minimum(offsets[:-1], len(data) - 1)]
    last = data[np.maximum(offsets[1:] - 1, 0)]
    ok &= ((first > 0x20) & (first != 0x7F)) & ((last > 0x20) & (last != 0x7F))
    for end, byte in (("^", first), ("$", last)):
        wide = np.flatnonzero(ok & (byte >= 0x80))
        if wide.size:
            pattern = f"^{EDGE}" if end == "^" else f"{EDGE}$"
            hit = pc.match_substring_regex(arr.take(pa.array(wide)), pattern)
            ok[wide[~hit.to_numpy(zero_copy_only=False)]] = False
    newlines = np.flatnonzero(data == 0x0A)
    ok[np.searchsorted(offsets, newlines, side="right") - 1] = False
    for content in stripping:
        ok &= ~pc.match_substring(arr, content).to_numpy(zero_copy_only=False)
    return ok


def encode_joined(backend, texts: list[str], newline: int) -> tuple[np.ndarray, np.ndarray]:
    """(flat int32 ids, int64 lengths) of `texts`, all `joinable`, GROUP to a text. Each text
    ends with a newline too, so every name is followed by exactly one `newline` id. Each
    result's ids are read alone (`Encoding.merge` would copy its tokens and offsets too: twice
    the CPU for these 64 long results, measured)."""
    joined = ["\n".join(texts[i : i + GROUP]) + "\n" for i in range(0, len(texts), GROUP)]
    encs = backend.encode_batch_fast(joined, add_special_tokens=False)
    ids = np.concatenate([np.array(e.ids, np.int32) for e in encs] or [np.zeros(0, np.int32)])
    del encs
    ends = np.flatnonzero(ids == newline)
    if len(ends) != len(texts):  # the module doc's argument failed: a bug, not bad input
        raise RuntimeError(f"joined names gave {len(ends)} newlines for {len(texts)} names")
    lengths = np.diff(ends, prepend=-1) - 1
    return ids[ids != newline], lengths


def interleave(mask: np.ndarray, a: tuple, b: tuple) -> tuple[np.ndarray, np.ndarray]:
    """(flat, lengths) of all texts in order, from those of the texts where `mask` is True
    (`a`) and False (`b`), each (flat ids, lengths) in their own order."""
    lengths = np.empty(len(mask), np.int64)
    lengths[mask], lengths[~mask] = a[1], b[1]
    flat = np.empty(int(lengths.sum()), np.int32)
    starts = np.cumsum(lengths) - lengths
    for part, (ids, lens) in ((mask, a), (~mask, b)):
        flat[_positions(starts[part], lens)] = ids
    return flat, lengths


def _positions(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Every index of the segments [start, start + length), in order."""
    before = np.cumsum(lengths) - lengths
    return np.repeat(starts - before, lengths) + np.arange(int(lengths.sum()))
