"""Building tries from the project's files: an identifier map or an entity table.

Sequences follow the shared rule `vlmdata.ids.tokens.identifier_sequence` (prefix + identifier,
tokenized alone, then eos), so the paths in the trie are exactly the training targets. Names are
tokenized in batches and kept as flat int32 arrays: OVEN's 6M Wikipedia titles never become
millions of Python lists.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vlmdata.core.errors import DataError
from vlmdata.core.heap import fix_mmap_threshold, release_free_heap
from vlmdata.ids.tokens import append_eos, eos_token_id, identifier_sequences, join_parts
from vlmdata.trie.build import narrow_tokens
from vlmdata.trie.core import Trie

BATCH = 16384  # names per tokenizer call: its result objects are the batch's transient memory


def _eos_id(tok, eos_token: str | None) -> int:
    """The shared rule (`vlmdata.ids.tokens.eos_token_id`), its failure as a DataError."""
    try:
        return eos_token_id(tok, eos_token)
    except ValueError as e:
        raise DataError(f"{e} (--eos TOKEN)") from e


def _encode(tok, names: list[str], prefix: str, eos_id: int, flats: list, lens: list) -> None:
    """Append the sequences of `names` (eos = the chosen eos token) to flats/lens, tokens
    already in the trie file's dtype (uint16 for vocabularies up to 2^16): half of int32;
    lengths in the narrowest dtype that holds them (uint8 for names, a quarter of int32)."""
    for flat, lengths in identifier_sequences(
        tok, names, prefix=prefix, eos=False, batch_size=BATCH
    ):
        flats.append(append_eos(narrow_tokens(flat, len(tok)), lengths, eos_id))
        lengths += 1
        top = int(lengths.max()) if len(lengths) else 0
        lens.append(lengths.astype(np.min_scalar_type(top)))


def trie_from_ids(
    ids_path: str | os.PathLike,
    tokenizer: str | os.PathLike,
    *,
    split: str | None = None,
    prefix: str = "",
    eos_token: str | None = None,
    out: str | os.PathLike | None = None,
) -> Trie:
    """Trie over an ids.parquet (optionally one split); lookup gives the ids.parquet row.
    With `out`, written there as it is built (`Trie.write_flat`) and returned mapped.

    Semantic maps contribute every text of an image (column `identifiers`), all leading to the
    image's row; a text shared by several images leads to the first (collisions are counted).
    """
    from vlmdata.core.tokenizer import load_tokenizer
    from vlmdata.ids.build import read_ids

    fix_mmap_threshold()  # 3-7 MB less peak RSS at 10^6 names, ~0.3 s system CPU (measured)
    table, meta = read_ids(ids_path)
    tok = load_tokenizer(tokenizer)
    eos_id = _eos_id(tok, eos_token)
    rows = np.arange(table.num_rows)
    if split is not None:
        rows = rows[np.asarray(table.column("split").to_pylist(), dtype=object) == split]
        if rows.size == 0:
            raise DataError(f"no rows with split {split!r}", file=str(ids_path))
    if "identifiers" in table.column_names:
        lists = [t or [] for t in table.column("identifiers").to_pylist()]  # val: none
        names = [t for r in rows for t in lists[r]]
        seq_rows = np.repeat(rows, [len(lists[r]) for r in rows])
    else:
        ident = table.column("identifier").to_pylist()
        rows = np.asarray([r for r in rows if ident[r] is not None], dtype=np.int64)
        names = [ident[r] for r in rows]
        seq_rows = rows
    flats: list = []
    lens: list = []
    _encode(tok, names, prefix, eos_id, flats, lens)
    info = {"source": "ids", "file": Path(ids_path).name, "scheme": meta["scheme"]}
    meta = info | {"split": split, "prefix": prefix}
    return _finish(flats, lens, seq_rows, tok, tokenizer, eos_id, meta, out)


def trie_from_entities(
    entities_path: str | os.PathLike,
    tokenizer: str | os.PathLike,
    *,
    prefix: str = "",
    eos_token: str | None = None,
    column: str = "entity_name",
    out: str | os.PathLike | None = None,
) -> Trie:
    """Trie over entity names (AutoVER); lookup gives the entities.parquet row. Streamed.
    With `out`, written there as it is built (`Trie.write_flat`) and returned mapped."""
    from vlmdata.core.tokenizer import load_tokenizer

    fix_mmap_threshold()
    path = Path(entities_path)
    if not path.exists():
        raise FileNotFoundError(f"entities not found: {path}")
    if column not in pq.read_schema(path).names:
        raise DataError(f"no column {column!r}", file=str(path))
    tok = load_tokenizer(tokenizer)
    eos_id = _eos_id(tok, eos_token)
    flats: list = []
    lens: list = []
    start = 0
    for names in _name_batches(path, column, BATCH):
        _check_names(names, start, column, path)
        _encode(tok, names.to_pylist(), prefix, eos_id, flats, lens)
        start += len(names)
    rows = None  # entity row i is sequence i
    info = {"source": "entities", "file": path.name, "column": column, "prefix": prefix}
    return _finish(flats, lens, rows, tok, tokenizer, eos_id, info, out)


def _name_batches(path: Path, column: str, rows: int) -> Iterator[pa.Array]:
    """Column `column` of the file in order, `rows` names at a time (the last batch fewer).
    Read a row group at a time, buffered: one `iter_batches` over the whole file kept
    more resident the more row groups it had read (measured, reading alone: 86 / 104 MB at
    10^5 / 10^6 names in 25 / 244 row groups, against 83 / 84 MB this way)."""
    parts: list[pa.Array] = []
    held = 0
    with pq.ParquetFile(path, buffer_size=1 << 20, pre_buffer=False) as f:
        for group in range(f.num_row_groups):
            batches = f.iter_batches(rows, row_groups=[group], columns=[column], use_threads=False)
            for batch in batches:
                part = batch.column(0)
                while held + len(part) >= rows:  # a full batch: hand it over
                    take = rows - held
                    parts.append(part.slice(0, take))
                    yield _joined_names(parts)
                    parts, held, part = [], 0, part.slice(take)
                if len(part):
                    parts.append(part)
                    held += len(part)
    if parts:
        yield _joined_names(parts)


def _joined_names(parts: list[pa.Array]) -> pa.Array:
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)


def _check_names(names: pa.Array, start: int, column: str, path: Path) -> None:
    """DataError naming the first null or empty name (Arrow kernels: no Python loop per row)."""
    if pa.types.is_null(names.type) and len(names):
        raise DataError(f"row {start}: empty or null {column}", file=str(path))
    if not (pa.types.is_string(names.type) or pa.types.is_large_string(names.type)):
        raise DataError(f"column {column!r} holds {names.type}, not names", file=str(path))
    bad = pc.fill_null(pc.equal(pc.binary_length(names), 0), True)
    if pc.any(bad).as_py():
        first = int(np.flatnonzero(bad.to_numpy(zero_copy_only=False))[0])
        raise DataError(f"row {start + first}: empty or null {column}", file=str(path))


def _finish(flats, lens, rows, tok, tokenizer, eos_id: int, meta: dict[str, Any], out) -> Trie:
    # joined part by part, each dropped once copied: np.concatenate held the batches and the
    # whole once more (at 10^6 names that was build-trie's peak, 12 MB of tokens twice)
    flat = join_parts(flats) if flats else np.zeros(0, np.int32)
    lengths = join_parts(lens) if lens else np.zeros(0, np.int32)
    release_free_heap()  # the tokenizer's per-batch objects leave 25-40 MB of free heap
    return (Trie.from_flat if out is None else partial(Trie.write_flat, out))(
        flat,
        lengths,
        rows,
        vocab_size=len(tok),
        eos_id=eos_id,
        tokenizer_name=str(tokenizer),
        meta=meta,
    )
