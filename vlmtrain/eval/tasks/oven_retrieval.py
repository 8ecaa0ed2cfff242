"""`vlmtrain eval oven --retrieve K`: AutoVER's retrieval-augmented decoding, end to end.

As AutoVER's `universal_trie_decoder.py`: every knowledge-base entity is embedded once by the
checkpoint's entity side, each query's `<ret>` hidden state (prompt + `<ret>`, the point where
decoding starts) is projected and normalised, the K entities of highest cosine become the query's
candidates, and the name is decoded under the trie of those candidates alone.

- Entity side: AutoVER's entity encoder (NAME: SUMMARY + image, `model.entity_encoder`), else the
  LM's own encoding of "entity: NAME<ret>" (the recipe's InfoNCE variant trains that one).
- KB embeddings are written once to `CACHE/kb-<fingerprint>.npy` (float32 rows in entities.parquet
  order, an .npy memory map written to a temporary name and renamed when complete), in batches
  streamed from the parquet file, so memory stays bounded at 6M entities (~12 GB on disk at 512-d).
  The fingerprint covers the entities file (path, size, mtime), the embedding width and the
  entity-side parameters, so another checkpoint never reads a stale cache.
- Search is exact, as AutoVER's (`ret_scores = ret @ entity_embeddings.T`, then topk): the cached
  matrix is read a block of rows at a time and multiplied with a chunk of queries on the model's
  device, a running top-K kept per query. No approximate index is needed (docs/DESIGN.md has the
  measured time at 6M).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vlmdata.core.errors import DataError

KB_BATCH = 256  # entities embedded per forward pass
SEARCH_ROWS = 262_144  # cached rows read per search block (1 GiB at 1024-d float32)
QUERY_CHUNK = 1024  # queries scored at once (a chunk x block score matrix)


def entity_fingerprint(model, entities: str | os.PathLike) -> str:
    """A short hash of what the KB embeddings depend on (see the module doc)."""
    h = hashlib.blake2b(digest_size=8)
    st = os.stat(entities)
    h.update(f"{os.path.abspath(entities)}|{st.st_size}|{st.st_mtime_ns}".encode())
    for name, p in sorted(_entity_side(model).items()):
        flat = p.detach().reshape(-1)[:4096].float().cpu().numpy()  # a sample of each tensor
        h.update(f"{name}{tuple(p.shape)}".encode())
        h.update(flat.tobytes())
    return h.hexdigest()


def _entity_side(model) -> dict[str, torch.Tensor]:
    if model.entity_encoder is not None:
        return {f"e.{n}": p for n, p in model.entity_encoder.named_parameters()}
    named = {f"l.{n}": p for n, p in model.lm.named_parameters()}
    named.update({f"h.{n}": p for n, p in model._heads().text_proj.named_parameters()})
    return named


@torch.no_grad()
def _embed_entries(model, recipe, ctx, kb, entries: list[dict]) -> np.ndarray:
    """(len(entries), D) normalised float32 embeddings of KB entries."""
    from vlmtrain.recipes.base import SequenceBuilder, pad_sequences

    device = next(model.parameters()).device
    if ctx.entity is not None:
        made = [ctx.entity.make(e, kb.image_bytes(e["entity_id"])) for e in entries]
        ids = pad_sequences([m[0] for m in made], 0).to(device)
        mask = pad_sequences([[1] * len(m[0]) for m in made], 0).to(device)
        pixels = torch.stack([m[1] for m in made]).to(device)
        out = model.encode_entities(pixels, ids, mask)
    else:
        ret = ctx.ret_token_id
        texts = [
            SequenceBuilder(ctx).text(f"{recipe.entity_prompt}{e['entity_name']}").input_ids
            for e in entries
        ]
        texts = [t[: ctx.max_length - 1] + [ret] for t in texts]
        ids = pad_sequences(texts, model._pad_id()).to(device)
        mask = pad_sequences([[1] * len(t) for t in texts], 0).to(device)
        out = model.encode_texts(ids, mask)
    return out.float().cpu().numpy()


def kb_embeddings(
    model, recipe, ctx, kb, cache_dir: str | os.PathLike, *, batch_size: int = KB_BATCH,
    progress: bool = False,
) -> np.ndarray:  # fmt: skip
    """The KB's (N, D) embeddings as a read-only memory map, computed once per fingerprint."""
    from vlmdata.core.atomic import atomic_path

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"kb-{entity_fingerprint(model, kb.path)}.npy"
    if not path.exists():
        dim = model.cfg.retrieval_dim
        bar = _bar(len(kb), progress)
        with atomic_path(path) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(len(kb), dim))
            row = 0
            for entries in kb.batches(batch_size):
                out[row : row + len(entries)] = _embed_entries(model, recipe, ctx, kb, entries)
                row += len(entries)
                bar.update(len(entries))
            out.flush()
            del out
        bar.close()
    emb = np.load(path, mmap_mode="r")
    if emb.shape[0] != len(kb):
        raise DataError(f"cached embeddings hold {emb.shape[0]} rows, the KB {len(kb)}",
                        file=str(path))  # fmt: skip
    return emb


@torch.no_grad()
def query_embeddings(model, prompts: Sequence[list[int]], pixels, batch_size: int) -> np.ndarray:
    """(Q, D) normalised `<ret>` embeddings of prompts that end with `<ret>`."""
    from vlmtrain.model.vlm import token_positions
    from vlmtrain.recipes.base import pad_sequences

    device = next(model.parameters()).device
    out = []
    for i in range(0, len(prompts), batch_size):
        ids = pad_sequences(list(prompts[i : i + batch_size]), model._pad_id()).to(device)
        mask = pad_sequences([[1] * len(p) for p in prompts[i : i + batch_size]], 0).to(device)
        pix = torch.stack(list(pixels[i : i + batch_size])).to(device)
        hidden = model(ids, mask, pixel_values=pix, output_hidden_states=True).hidden_states[-1]
        pos = token_positions(ids, mask, model.ret_token_id)
        picked = hidden[torch.arange(len(pos), device=device), pos]
        out.append(model.encode_ret(picked).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.cfg.retrieval_dim), np.float32)


def top_k(
    queries: np.ndarray, kb: np.ndarray, k: int, *, device: str | torch.device = "cpu",
    block_rows: int = SEARCH_ROWS, query_chunk: int = QUERY_CHUNK,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Exact top-k by inner product: (scores, rows), each (Q, k), best first. `kb` may be a
    memory map: it is read `block_rows` rows at a time."""
    k = min(k, kb.shape[0])
    n_q = queries.shape[0]
    best_s = torch.full((n_q, k), float("-inf"), device=device)
    best_i = torch.zeros((n_q, k), dtype=torch.long, device=device)
    q_all = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32)).to(device)
    for start in range(0, kb.shape[0], block_rows):
        block = torch.from_numpy(np.array(kb[start : start + block_rows], np.float32))  # a copy
        block = block.to(device)
        for q0 in range(0, n_q, query_chunk):
            scores = q_all[q0 : q0 + query_chunk] @ block.T
            idx = torch.arange(start, start + block.shape[0], device=device).expand_as(scores)
            s = torch.cat([best_s[q0 : q0 + query_chunk], scores], dim=1)
            i = torch.cat([best_i[q0 : q0 + query_chunk], idx], dim=1)
            top = torch.topk(s, k, dim=1)
            best_s[q0 : q0 + query_chunk] = top.values
            best_i[q0 : q0 + query_chunk] = torch.gather(i, 1, top.indices)
    return best_s.cpu().numpy(), best_i.cpu().numpy()


def retrieve_candidates(
    model_bundle, data_dir, data_ids: Sequence[str], entities, k: int, *,
    cache_dir: str | os.PathLike | None = None, kb_images: str | os.PathLike | None = None,
    batch_size: int = 8, progress: bool = False,
) -> dict[str, list[str]]:  # fmt: skip
    """{data_id: the K entity ids nearest to its `<ret>` embedding, best first}."""
    from vlmtrain.eval.generation import recipe_of
    from vlmtrain.eval.tasks.oven_decoding import oven_samples
    from vlmtrain.recipes.autover import open_kb
    from vlmtrain.recipes.base import RecipeContext

    if k < 1:
        raise DataError(f"--retrieve needs K >= 1, got {k}")
    model = model_bundle.model
    if not model.cfg.retrieval_dim or model.ret_token_id is None:
        raise DataError("--retrieve needs a model with <ret> and retrieval heads (retrieval_dim)")
    recipe = recipe_of(model_bundle.cfg, "autover")
    ctx = RecipeContext.for_model(model)
    images = kb_images if kb_images is not None else getattr(recipe, "kb_images", None)
    kb = open_kb(str(entities), str(images) if images else None)
    cache = cache_dir if cache_dir is not None else Path(entities).parent / "kb-embeddings"
    emb = kb_embeddings(model, recipe, ctx, kb, cache, progress=progress)
    samples = oven_samples(data_dir, data_ids)
    prompts = [recipe.prompt(ctx, s["meta"].get("question") or "").input_ids for s in samples]
    pixels = [ctx.pixel_values(s) for s in samples]
    queries = query_embeddings(model, prompts, pixels, batch_size)
    _, rows = top_k(queries, emb, k, device=next(model.parameters()).device)
    ids = kb.ids()
    return {d: [ids[r] for r in rows[j]] for j, d in enumerate(data_ids)}


def recall_at_k(refs: list[dict], candidates: dict[str, list[str]]) -> tuple[float, int]:
    """(percent of references whose gold entity is among their candidates, references)."""
    hits = sum(r["entity_id"] in candidates.get(r["data_id"], ()) for r in refs)
    return (100.0 * hits / len(refs) if refs else 0.0), len(refs)


def write_candidates(path: str | os.PathLike, candidates: dict[str, list[str]]) -> None:
    """JSONL {data_id, candidates}: what `--candidates` reads back."""
    import json

    from vlmdata.core.atomic import atomic_open

    with atomic_open(path, "w", encoding="utf-8") as f:
        for d, c in candidates.items():
            f.write(json.dumps({"data_id": d, "candidates": c}, ensure_ascii=False) + "\n")


def _bar(total: int, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc="embedding KB", unit="entity", disable=not enabled)
