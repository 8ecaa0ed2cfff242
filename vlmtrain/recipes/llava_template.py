"""The Vicuna v1 conversation template (LLaVA-1.5) and its label mask by character offsets.

The whole conversation is tokenized ONCE, as the model will see it at inference, and a token is
supervised when its character span lies inside an assistant answer (the space before the
answer through its `</s>`). A token that straddles an answer boundary means the template cannot
be split into "prompt" and "answer" for this tokenizer: LLaVA's preprocess then silently sets
the whole example to -100 (zero loss); here it raises, naming the sample.
"""

from __future__ import annotations

import json
from typing import Any

from vlmdata.core.errors import DataError

SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
ROLES = {"human": "USER", "user": "USER", "gpt": "ASSISTANT", "assistant": "ASSISTANT"}


def parse_conversation(raw: Any, key: str) -> list[tuple[str, str]]:
    """[(USER|ASSISTANT, text)] from the manifest's `conversations` (JSON text or a list).

    A leading assistant turn is dropped (as LLaVA does); roles must then alternate.
    """
    try:
        turns = json.loads(raw) if isinstance(raw, str) else raw
        pairs = [(ROLES[t["from"].lower()], str(t["value"])) for t in turns]
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise DataError(f"sample {key}: bad conversations field ({e!r})") from e
    if pairs and pairs[0][0] == "ASSISTANT":
        pairs = pairs[1:]
    for i, (role, _) in enumerate(pairs):
        if role != ("USER" if i % 2 == 0 else "ASSISTANT"):
            raise DataError(f"sample {key}: conversation turn {i} is {role}, roles must alternate")
    if not pairs or pairs[-1][0] != "ASSISTANT":
        raise DataError(f"sample {key}: conversation has no final assistant answer")
    return pairs


def render(pairs: list[tuple[str, str]], eos: str, system: str = SYSTEM):
    """(text, answer spans): "SYS USER: q ASSISTANT: a</s>USER: ..." with the [start, end)
    character span of each " answer</s>"."""
    text, spans = system + " ", []
    for i in range(0, len(pairs), 2):
        text += f"USER: {pairs[i][1]} ASSISTANT:"
        start = len(text)
        text += f" {pairs[i + 1][1]}{eos}"
        spans.append((start, len(text)))
    return text, spans


def answer_mask(
    offsets: list[tuple[int, int]], spans: list[tuple[int, int]], text: str, key: str
) -> list[bool]:
    """Per token: inside an answer span? Raises on a token crossing a span boundary."""
    mask = []
    for s, e in offsets:
        inside = False
        for a, b in spans:
            if s < a < e or s < b < e:
                raise DataError(
                    f"sample {key}: tokenization mismatch: token {text[s:e]!r} (chars {s}-{e}) "
                    f"crosses the answer boundary at {a if s < a < e else b}; the label mask "
                    "would be wrong for this tokenizer/template"
                )
            inside = inside or (a <= s and e <= b and e > s)
        mask.append(inside)
    for a, b in spans:
        if not any(m and a <= s < b for m, (s, _) in zip(mask, offsets, strict=True)):
            raise DataError(f"sample {key}: tokenization mismatch: no token for the answer at {a}")
    return mask
