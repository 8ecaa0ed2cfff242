"""`--save-predictions` of the retrieval tasks: one JSON line per query, its ranked list.

A row: {"direction": "t2i" | "i2t", "key", "query", "answers", "ranked", "rank"}. `key` names
the query: an image key (i2t), or a text as KEY#i, the i-th text of image KEY (t2i). `query` is
the text (t2i only). `answers` are the right items (t2i: the text's image; i2t: the image's texts
as KEY#i) and `ranked` the retrieved ones, best first, in the same vocabulary as the HTML
report's examples. `rank` is the 1-based rank Recall@K counts (0: not retrieved), so
Recall@K = share of rows with 0 < rank <= K, and also the first position in `ranked` of an
answer, counting distinct non-null items (generative beams may repeat an image or leave the
trie: null).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from vlmdata.core.atomic import write_jsonl
from vlmtrain.eval.metrics.recall import positive_ranks, ranked_indices


def text_ids(text_keys: Sequence[str]) -> list[str]:
    """KEY#i for each text, i counting the texts of image KEY (texts image-major or not)."""
    seen: dict[str, int] = {}
    out = []
    for key in text_keys:
        i = seen.get(key, 0)
        seen[key] = i + 1
        out.append(f"{key}#{i}")
    return out


def generative_rows(
    texts: Sequence[str],
    text_keys: Sequence[str],
    ranked: Sequence[Sequence[str | None]],
    ranks: Sequence[int],
) -> list[dict]:
    """t2i rows of generative retrieval: `ranked` is every returned beam's image key."""
    return [
        _row("t2i", tid, text, [key], list(beams), rank)
        for tid, text, key, beams, rank in zip(
            text_ids(text_keys), texts, text_keys, ranked, ranks, strict=True
        )
    ]


def _row(direction: str, key: str, query: str | None, answers, ranked, rank) -> dict:
    row = {"direction": direction, "key": key, "query": query, "answers": answers}
    if query is None:  # an image query: no text
        del row["query"]
    return {**row, "ranked": ranked, "rank": int(rank)}


def embedding_rows(
    text_emb: np.ndarray,
    image_emb: np.ndarray,
    texts: Sequence[str],
    text_keys: Sequence[str],
    image_keys: Sequence[str],
    top: int,
) -> list[dict]:
    """t2i then i2t rows from L2-normalised embeddings: `ranked` is the `top` best (cosine)."""
    scores = np.asarray(text_emb, np.float64) @ np.asarray(image_emb, np.float64).T
    pos = np.asarray(text_keys, dtype=object)[:, None] == np.asarray(image_keys, dtype=object)
    tids = text_ids(text_keys)
    texts_of: dict[str, list[str]] = {}
    for tid, key in zip(tids, text_keys, strict=True):
        texts_of.setdefault(key, []).append(tid)
    rows = []
    order, ranks = ranked_indices(scores, pos, top), positive_ranks(scores, pos)
    for t, tid in enumerate(tids):
        ranked = [image_keys[j] for j in order[t]]
        rows.append(_row("t2i", tid, texts[t], [text_keys[t]], ranked, ranks[t]))
    order, ranks = ranked_indices(scores.T, pos.T, top), positive_ranks(scores.T, pos.T)
    for i, key in enumerate(image_keys):
        ranked = [tids[j] for j in order[i]]
        rows.append(_row("i2t", key, None, texts_of.get(key, []), ranked, ranks[i]))
    return rows


def write_ranked_predictions(path: str | os.PathLike, rows: list[dict]) -> None:
    """The rows as JSONL, atomically."""
    write_jsonl(path, rows)
