"""Contract 1: `manifest/manifest.parquet`, one row per RECORD, written by every source reader.

A record is the unit of training and evaluation (a caption set, a conversation, a question);
several records may name the same image (docs/DESIGN.md, "Records"). Core columns: `key`
(unique, `[A-Za-z0-9_-]`, no dots, as WebDataset splits keys at the first dot), `source`,
`split`, `url`, `path` (relative to the image folder), `texts: list<str>`. Optional columns a
source may add are declared in OPTIONAL_COLUMNS; all are strings (JSON text for structured
values such as LLaVA `conversations` or VQA `answers`), so manifests from different sources
concat. `image_key` names the stored image a record shares with others (null: the record's own
key). A source id that repeats gets a deterministic suffix (`_1`, `_2`, ...) on its key; the
original id stays in the source's id column (`data_id`, `image_id`).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from vlmdata.core import layout
from vlmdata.core.choices import DUPLICATE_IMAGE_RULES
from vlmdata.core.errors import DataError
from vlmdata.core.keyset import DISK_PAST, HashSet, hash128
from vlmdata.core.parquet_rows import RowsWriter
from vlmdata.core.rejects import RejectWriter, check_reject_ratio, format_summary

CORE_FIELDS: list[tuple[str, pa.DataType]] = [
    ("key", pa.string()),
    ("source", pa.string()),
    ("split", pa.string()),
    ("url", pa.string()),
    ("path", pa.string()),
    ("texts", pa.list_(pa.string())),
]
OPTIONAL_COLUMNS: tuple[str, ...] = (
    "image_id",
    "data_id",
    "entity_id",
    "entity_name",
    "question",
    "answers",
    "conversations",
    "image_key",
)
KEY_RE = re.compile(r"[A-Za-z0-9_-]+\Z")  # \Z: `$` would also match before a final "\n"
# Sources whose records are questions / conversations ABOUT an image: a second image id with
# the same bytes becomes another record of the stored image. Where the image itself is what is
# retrieved or contrasted (Flickr30k, COCO Karpathy, the demo: Recall@K would have two right
# answers; CC3M: a FROMAGe in-batch false negative; the OVEN KB's entity images) and for unknown
# sources, it is a `duplicate_image` reject.
SHARED_IMAGE_SOURCES = frozenset({"llava", "vqav2", "oven"})
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


def key_problem(key: object) -> str | None:
    """Why `key` cannot name a sample (None: it can). THE key rule: manifests, shards and
    `vlmdata get` (which turns keys into file names) all ask this one function."""
    if not isinstance(key, str) or KEY_RE.match(key) is None:
        return f"key {key!r} is not [A-Za-z0-9_-]+"
    return None


def texts_problem(texts: object, *, blank_ok: bool = False) -> tuple[str, str] | None:
    """THE texts rule: (reason, detail) when `texts` cannot caption a sample: null, empty, a
    null or blank element (empty_text), or not a list of strings (wrong_type). `blank_ok`
    checks the type alone (what a source reader may write: a null is then wrong_type);
    `texts_ok` is the same rule over a column."""
    missing = "wrong_type" if blank_ok else "empty_text"
    if texts is None:
        return missing, "texts is null"
    if not isinstance(texts, list | tuple):
        return "wrong_type", f"texts is a {type(texts).__name__}, not a list of strings"
    if not texts and not blank_ok:
        return "empty_text", "texts is an empty list"
    for i, text in enumerate(texts):
        if text is None:
            return missing, f"texts[{i}] is null"
        if not isinstance(text, str):
            return "wrong_type", f"texts[{i}] is a {type(text).__name__}, not a string"
        if not blank_ok and not text.strip():
            return "empty_text", f"texts[{i}] is blank"
    return None


def texts_ok(column: str = "texts"):
    """`texts_problem` (blank_ok False) as a polars expression over a list<string> column:
    true where the texts can caption a sample, false or null where not."""
    import polars as pl  # lazily: the CLI must start fast

    col = pl.col(column)
    blank = pl.element().str.strip_chars() == ""
    return (col.list.len() > 0) & ~col.list.eval(blank.fill_null(True)).list.any()


def make_key(*parts: object) -> str:
    """A WebDataset-safe key from parts: invalid characters (dots included) become `_`."""
    return "_".join(_BAD_KEY_CHARS.sub("_", str(p)) for p in parts)


def duplicate_image_rule(source: Any, override: str | None = None) -> str:
    """ "share" or "reject": what a byte-identical second image of `source` becomes."""
    if override is not None:
        if override not in DUPLICATE_IMAGE_RULES:
            raise ValueError(
                f"duplicate image rule must be one of {DUPLICATE_IMAGE_RULES}, not {override!r}"
            )
        return override
    return "share" if source in SHARED_IMAGE_SOURCES else "reject"


def manifest_schema(extra_columns: Sequence[str] = ()) -> pa.Schema:
    unknown = [c for c in extra_columns if c not in OPTIONAL_COLUMNS]
    if unknown:
        raise ValueError(f"unknown manifest columns {unknown}; known: {OPTIONAL_COLUMNS}")
    extra = [(c, pa.string()) for c in OPTIONAL_COLUMNS if c in extra_columns]
    return pa.schema(CORE_FIELDS + extra)


def _is_text(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)


def _is_text_list(t: pa.DataType) -> bool:
    is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
    return pa.types.is_null(t) or (is_list and _is_text(t.value_type))


# Checked before any work: a wrong type is one error, not a reject per row (a `texts` column of
# plain strings would otherwise be read as lists of characters).
_COLUMN_TYPES = [
    ("key", "string", _is_text),
    ("path", "string", _is_text),
    ("texts", "list<string>", _is_text_list),
    *[(c, "string", _is_text) for c in ("source", "split", "url", *OPTIONAL_COLUMNS)],
]


def check_manifest_schema(
    schema: pa.Schema, required: Sequence[str], file: str | os.PathLike
) -> None:
    """THE manifest schema check (contract 1): one DataError naming `file` when a `required`
    column is missing or a known column has the wrong type; the stage says what it needs."""
    missing = [c for c in required if c not in schema.names]
    if missing:
        raise DataError(f"manifest lacks columns {missing} (contract 1)", file=str(file))
    wrong = [
        f"{name} is {schema.field(name).type}, not {want}"
        for name, want, ok in _COLUMN_TYPES
        if name in schema.names and not ok(schema.field(name).type)
    ]
    if wrong:
        raise DataError(f"manifest column types: {'; '.join(wrong)} (contract 1)", file=str(file))


class ManifestWriter(RowsWriter):
    """Streams manifest rows to Parquet in bounded memory; atomic rename on `close()`."""

    def __init__(
        self, path: str | os.PathLike, extra_columns: Sequence[str] = (), batch_rows: int = 65536
    ) -> None:
        super().__init__(path, manifest_schema(extra_columns), batch_rows)


def validate_row(row: dict[str, Any]) -> tuple[str, str] | None:
    """(reason, detail) if the row breaks the manifest contract, else None."""
    problem = key_problem(row.get("key"))
    if problem is not None:
        return "bad_key", problem
    if row.get("image_key") is not None and (problem := key_problem(row["image_key"])):
        return "bad_key", f"image_key: {problem}"
    if not row.get("url") and not row.get("path"):
        return "missing_field", "neither url nor path"
    return texts_problem(row.get("texts"), blank_ok=True)


class ManifestSink:
    """What a source reader writes to: kept rows to the manifest, dropped rows to rejects.

    Checks the contract on every row (key format, url or path, texts) so a reader cannot write
    a manifest that a later stage chokes on, and makes keys unique: a key seen before gets the
    first free suffix `_1`, `_2`, ... (deterministic: input order), counted in `renamed`.
    Memory does not grow with the rows: kept rows wait in batches of KEY_BATCH, whose keys are
    then settled against a `HashSet` of every earlier key (16 bytes a key, no Python object).
    """

    KEY_BATCH = 8192
    SUFFIX_MEMORY = 1 << 16  # next-suffix hints kept (a cache: correctness never needs it)

    def __init__(
        self,
        out_dir: str | os.PathLike,
        extra_columns: Sequence[str] = (),
        stage: str = "source",
        progress: bool = False,
    ) -> None:
        """`progress`: a running count of the rows read (3.3M CC3M rows take half a minute)."""
        from tqdm import tqdm

        self._bar = tqdm(desc=stage, unit=" rows", disable=not progress, mininterval=0.5)
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.stage = stage
        self.manifest = ManifestWriter(self.out_dir / layout.MANIFEST, extra_columns)
        self.rejects = RejectWriter(self.out_dir / layout.REJECTS)
        self._keys = HashSet(disk_past=DISK_PAST)
        self._pending: list[dict[str, Any]] = []
        self._next_suffix: dict[str, int] = {}
        self.renamed = 0

    def keep(self, row: dict[str, Any], *, file: str | None = None, line: int | None = None):
        problem = validate_row(row)
        if problem is not None:
            self.reject(problem[0], file=file, line=line, detail=problem[1], record=row)
            return
        self._pending.append(row)
        self._bar.update()
        if len(self._pending) >= self.KEY_BATCH:
            self._settle()

    def _settle(self) -> None:
        """Give the pending rows unique keys (in order) and write them to the manifest."""
        rows, self._pending = self._pending, []
        if not rows:
            return
        keys = [r["key"] for r in rows]
        earlier = self._keys.contains(*hash128(keys))
        taken = self._taken_suffixes(keys, earlier)
        batch: set[str] = set()  # final keys of this batch so far
        for row, seen in zip(rows, earlier, strict=True):
            key = row["key"]
            if seen or key in batch:
                key = self._suffixed(key, batch, taken)
                row = {**row, "key": key}
                self.renamed += 1
            batch.add(key)
            self.manifest.write(row)
        self._keys.add(*hash128(list(batch)))

    def _taken_suffixes(self, keys: list[str], earlier) -> dict[str, bool]:
        """For each key that will need a suffix: whether its next candidate names (as many as
        it repeats, plus 16) are taken by earlier batches; one hash lookup for the batch."""
        counts = Counter(keys)
        names = []
        for key in {k for k, e in zip(keys, earlier, strict=True) if e or counts[k] > 1}:
            n = self._next_suffix.get(key, 1)
            names.extend(f"{key}_{i}" for i in range(n, n + counts[key] + 16))
        if not names:
            return {}
        return dict(zip(names, self._keys.contains(*hash128(names)).tolist(), strict=True))

    def _suffixed(self, key: str, batch: set[str], taken: dict[str, bool]) -> str:
        """The first `key_N` (N = 1, 2, ...) not taken yet, in earlier batches or this one."""
        n = self._next_suffix.get(key, 1)
        while True:
            name = f"{key}_{n}"
            if name not in taken:  # beyond the names looked up ahead: 16 more
                more = [f"{key}_{i}" for i in range(n, n + 16)]
                taken.update(zip(more, self._keys.contains(*hash128(more)).tolist(), strict=True))
            if not taken[name] and name not in batch:
                break
            n += 1
        if len(self._next_suffix) >= self.SUFFIX_MEMORY:
            self._next_suffix.clear()
        self._next_suffix[key] = n + 1
        return name

    def reject(
        self,
        reason: str,
        *,
        file: str | None = None,
        line: int | None = None,
        detail: str = "",
        record: Any = None,
        key: str | None = None,
    ) -> None:
        if key is None and isinstance(record, dict) and isinstance(record.get("key"), str):
            key = record["key"]
        self.rejects.add(
            reason, stage=self.stage, file=file, line=line, key=key, detail=detail, record=record
        )
        self._bar.update()

    def close(self) -> None:
        try:
            self._settle()
        except BaseException:
            self.abort()
            raise
        self._bar.close()
        self.manifest.close()
        self.rejects.close()

    def abort(self) -> None:
        self._bar.close()
        self.manifest.abort()
        self.rejects.abort()

    def __enter__(self) -> ManifestSink:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    @property
    def kept(self) -> int:
        return self.manifest.count + len(self._pending)

    def summary(self) -> str:
        return format_summary(self.kept, self.rejects.counts)

    def check(self, max_reject_ratio: float) -> None:
        check_reject_ratio(self.kept, self.rejects.total, max_reject_ratio)
