"""`build_ids`: the identifier map (docs/DESIGN.md, contract 4), `ids.parquet`.

Columns: key, split, identifier, tokens (list<int32>, null without a tokenizer) and, for the
semantic scheme, identifiers (list<str>: all texts of the image). Row order = index order. The
scheme, its parameters, the seed and the tokenizer go in the Parquet metadata, and nothing
time- or path-dependent does, so the same inputs and seed give a byte-identical file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.choices import ID_SCHEMES
from vlmdata.core.errors import DataError
from vlmdata.core.heap import lean_allocators, release_free_heap
from vlmdata.ids import schemes, semantic, structured
from vlmdata.ids.source import checked_source, read_images, source_path
from vlmdata.ids.tokens import identifier_sequences, join_parts
from vlmdata.ids.write import (
    ArrayColumn,
    Column,
    NullColumn,
    PositionSlices,
    SourceSlices,
    TokensColumn,
    write_map,
)

SCHEMES = ID_SCHEMES  # declared with the CLI's other choices
POSITION_SCHEMES = ("numeric", "string", "atomic")
META_KEYS = ("scheme", "params", "seed", "tokenizer", "stats")


@lean_allocators()
def build_ids(
    out: str | os.PathLike,
    output: str | os.PathLike,
    *,
    scheme: str,
    seed: int | None = None,
    tokenizer: str | os.PathLike | None = None,
    pseudo_queries: str | os.PathLike | None = None,
    embeddings: str | os.PathLike | None = None,
    k: int = 30,
    leaf_size: int = 30,
    add_tokens: str | os.PathLike | None = None,
    kmeans: str = "grace",
    progress: bool = False,
) -> dict[str, Any]:
    """Write ids.parquet for the images of `out`; returns a summary (rows, collisions, …).
    `progress`: a bar over the structured scheme's k-means (the one slow scheme)."""
    if scheme not in SCHEMES:
        raise DataError(f"unknown scheme {scheme!r}; choose from {', '.join(SCHEMES)}")
    images: pa.Table | None = None
    source: Path | None = None
    if scheme in POSITION_SCHEMES:  # keys and splits are only copied: read when written
        source, n = checked_source(out)
        release_free_heap()  # the key check's hash runs: large blocks come from mmap later
    else:
        images = read_images(out, texts=True)
        n = images.num_rows
    params: dict[str, Any] = {}
    stats: dict[str, Any] = {"rows": n}
    many: list[list[str]] | None = None
    ids: list[str] | pa.Array | schemes.PositionIds
    # Position schemes: distinct positions, distinct identifiers (no check). Made a row group
    # at a time (and tokenized from the positions), unless new tokens are made from them all.
    if scheme in POSITION_SCHEMES and add_tokens is None:
        ids = schemes.PositionIds(scheme, n, seed)
    elif scheme in POSITION_SCHEMES:
        ids = schemes.position_id_array(scheme, n, seed)
    elif scheme == "semantic":
        many, stats["collisions"] = _semantic(images, pseudo_queries, out)
        params["pseudo_queries"] = Path(pseudo_queries).name if pseudo_queries else None
        params["choice_seed"] = 0 if seed is None else seed
        ids = semantic.choose(many, params["choice_seed"])
        stats["no_identifier"] = sum(1 for i in ids if i is None)
    else:
        ids = _structured(n, embeddings, k, leaf_size, seed, kmeans, progress)
        params.update(
            k=k, leaf_size=leaf_size, kmeans=kmeans, embeddings=Path(str(embeddings)).name
        )
    if scheme == "structured" and len(set(ids)) != n:
        raise DataError(f"{n - len(set(ids))} duplicate identifiers (scheme {scheme})")
    tok_name, tokens_flat = _tokenize(scheme, ids, tokenizer, add_tokens, stats)
    release_free_heap()  # the tokenizer's freed heap, before the write
    if add_tokens is not None:
        params["add_tokens"] = True
    columns = _columns(images, source, n, ids, tokens_flat, many)
    del tokens_flat, ids  # the columns hold what is written (lengths: 8 MB at 10^6 ids)
    meta = {
        "scheme": scheme,
        "params": json.dumps(params, sort_keys=True),
        "seed": "" if seed is None else str(seed),
        "tokenizer": tok_name,
        "stats": json.dumps(stats, sort_keys=True),
    }
    write_map(output, columns, n, meta)
    return stats


def _semantic(images: pa.Table, pseudo_queries, out) -> tuple[list, dict[str, int]]:
    pseudo = semantic.load_pseudo_queries(pseudo_queries) if pseudo_queries else None
    paths = (
        images.column("path").to_pylist()
        if "path" in images.column_names
        else [None] * images.num_rows
    )
    return semantic.semantic_ids(
        images.column("key").to_pylist(),
        images.column("split").to_pylist(),
        images.column("texts").to_pylist(),
        paths,
        pseudo,
        source=str(source_path(out)),
    )


def _structured(
    n: int,
    embeddings,
    k: int,
    leaf_size: int,
    seed: int | None,
    kmeans: str,
    progress: bool = False,
) -> list[str]:
    try:
        structured.check_params(k, leaf_size)
    except ValueError as e:
        raise DataError(f"--k / --leaf-size: {e}") from e
    if kmeans not in structured.KMEANS:
        raise DataError(f"--kmeans {kmeans!r}: choose from {', '.join(structured.KMEANS)}")
    if embeddings is None:
        raise DataError("the structured scheme needs --embeddings (see `vlmdata embed`)")
    try:
        emb = np.load(embeddings, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read embeddings: {e}", file=str(embeddings)) from e
    if emb.ndim != 2 or len(emb) != n:
        raise DataError(f"embeddings shape {emb.shape}, expected ({n}, dim)", file=str(embeddings))
    if not np.issubdtype(emb.dtype, np.number):
        raise DataError(f"embeddings of dtype {emb.dtype}, expected numbers", file=str(embeddings))
    bad = np.flatnonzero(~np.isfinite(emb).all(axis=1))
    if bad.size:
        raise DataError(f"{bad.size} rows hold NaN or infinity (first: row {bad[0]}, the index's "
                        "row of the same number)", file=str(embeddings))  # fmt: skip
    return structured.structured_ids(
        emb, k=k, leaf_size=leaf_size, seed=seed, kmeans=kmeans, progress=progress
    )


def _tokenize(scheme, ids, tokenizer, add_tokens, stats) -> tuple[str, tuple | None]:
    """Tokens of each identifier (`identifier_sequence` rule, no prefix, no eos)."""
    if tokenizer is None:
        if add_tokens is not None:
            raise DataError("--add-tokens needs --tokenizer (the tokenizer to extend)")
        return "", None
    from vlmdata.core.tokenizer import load_tokenizer

    tok = load_tokenizer(tokenizer)
    name = str(tokenizer)
    if scheme == "atomic" and add_tokens is None:
        raise DataError("the atomic scheme needs --add-tokens DIR (one new token per image)")
    if add_tokens is not None:
        new = structured.pieces(ids) if scheme == "structured" else _as_list(ids)
        if scheme not in ("structured", "atomic"):
            raise DataError("--add-tokens applies to the structured and atomic schemes")
        stats["added_tokens"] = tok.add_tokens(new)
        Path(add_tokens).mkdir(parents=True, exist_ok=True)
        tok.save_pretrained(str(add_tokens))
        name = str(add_tokens)
    flats, lens = [], []
    for i in range(0, len(ids), schemes.CHUNK):  # a slice of Python strings at a time
        chunk = _texts(ids, i, i + schemes.CHUNK)
        present = [x for x in chunk if x is not None]  # semantic: val images may have none
        chunk_lens = np.zeros(len(chunk), np.int32)
        where = np.flatnonzero([x is not None for x in chunk])
        got = []
        for flat, lengths in identifier_sequences(tok, present, eos=False):
            flats.append(_narrow(flat))
            got.append(lengths)
        if got:
            chunk_lens[where] = np.concatenate(got)
        lens.append(_narrow(chunk_lens))
    if isinstance(ids, schemes.PositionIds):
        ids.drop()  # drawn again for the identifier column, after the key column's write
    # each in the narrowest dtype of its parts (`write.TokensColumn` makes them int32)
    flat = join_parts(flats) if flats else np.zeros(0, np.int32)
    return name, (flat, join_parts(lens) if lens else np.zeros(0, np.int32))


def _texts(ids, start: int, stop: int) -> list:
    """Identifiers [start, stop) as Python strings (None where an image has none)."""
    if isinstance(ids, schemes.PositionIds):
        return ids.texts(start, stop)
    chunk = ids[start:stop]
    return chunk.to_pylist() if isinstance(chunk, pa.Array) else chunk


def _narrow(values: np.ndarray) -> np.ndarray:
    """Non-negative ints (token ids, lengths) as uint8 / uint16 where they fit, else int32."""
    top = int(values.max()) if len(values) else 0
    return values.astype(np.min_scalar_type(top) if top < 2**16 else np.int32)


def _as_list(ids: list[str] | pa.Array) -> list[str]:
    return ids.to_pylist() if isinstance(ids, pa.Array) else list(ids)


def _columns(
    images: pa.Table | None, source: Path | None, n: int, ids, tokens_flat: tuple | None, many
) -> dict[str, Column]:
    """The map's columns: key and split from `images`, or read from `source` as they are
    written; `tokens_flat`: (flat tokens, lengths) of all identifiers (narrow dtypes), or
    None."""
    tokens: Column
    if tokens_flat is None:
        tokens = NullColumn(pa.list_(pa.int32()))
    else:
        missing = np.array([i is None for i in ids], bool) if isinstance(ids, list) else None
        if missing is not None and not missing.any():
            missing = None  # semantic: no identifier, no tokens (a null list)
        tokens = TokensColumn(*tokens_flat, missing)
    cols: dict[str, Column] = {}
    for name in ("key", "split"):
        if images is not None:
            cols[name] = ArrayColumn(images.column(name))
        else:
            cols[name] = SourceSlices(source, name, pq.read_schema(source).field(name).type)
    if isinstance(ids, schemes.PositionIds):
        cols["identifier"] = PositionSlices(ids)
    else:
        identifier = ids if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
        cols["identifier"] = ArrayColumn(identifier)
    cols["tokens"] = tokens
    if many is not None:
        cols["identifiers"] = ArrayColumn(pa.array(many, pa.list_(pa.string())))
    return cols


def read_ids(path: str | os.PathLike) -> tuple[pa.Table, dict[str, Any]]:
    """(ids table, metadata with params/stats parsed) of an ids.parquet."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"identifier map not found: {path}")
    table = pq.read_table(path)
    raw = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if "scheme" not in raw or "identifier" not in table.column_names:
        raise DataError(
            "not an identifier map (no scheme metadata / identifier column)", file=str(path)
        )
    meta: dict[str, Any] = {k: raw.get(k, "") for k in META_KEYS}
    meta["params"] = json.loads(meta["params"] or "{}")
    meta["stats"] = json.loads(meta["stats"] or "{}")
    meta["seed"] = int(meta["seed"]) if meta["seed"] else None
    return table, meta
