"""Contract 2: `rejects/rejects.parquet`, one row per dropped input row or image, with its reason.

Every stage writes the same schema so `vlmdata inspect` can count reasons across stages:
`stage`, `reason`, `file`, `line` (1-based, null when not line-based), `key`, `detail` (a human
message, e.g. img2dataset's error) and `record` (the original fields as JSON text).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from vlmdata.core.parquet_rows import RowsWriter
from vlmdata.core.parquet_source import ParquetSource

REJECT_SCHEMA = pa.schema(
    [
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("key", pa.string()),
        ("detail", pa.string()),
        ("record", pa.string()),
    ]
)


def record_json(record: Any) -> str:
    """JSON text of the original fields; bytes and other odd values become readable strings."""
    return json.dumps(record, ensure_ascii=False, sort_keys=True, default=repr)


class RejectWriter(RowsWriter):
    """Streams reject rows to Parquet in bounded memory; renamed into place on `close()`."""

    def __init__(
        self, path: str | os.PathLike, batch_rows: int = 8192, empty_group: bool = False
    ) -> None:
        super().__init__(path, REJECT_SCHEMA, batch_rows, empty_group)
        self.counts: Counter[str] = Counter()

    def add(
        self,
        reason: str,
        *,
        stage: str,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
        detail: str = "",
        record: Any = None,
    ) -> None:
        self.counts[reason] += 1
        self.write(
            {
                "stage": stage,
                "reason": reason,
                "file": None if file is None else str(file),
                "line": line,
                "key": key,
                "detail": detail,
                "record": None if record is None else record_json(record),
            }
        )

    def add_file(self, path: str | os.PathLike) -> None:
        """Append an earlier rejects file's rows as `pq.read_table(path)` would give them, in
        row groups of up to 1,048,576 rows, read and written a piece at a time."""
        self._flush()
        with ParquetSource(path, REJECT_SCHEMA) as source:
            for reasons in source.batches("reason"):
                self.counts.update(reasons.to_pylist())
            self._writer.write_file(source)
            self.count += source.rows

    def stream_table(self, table: pa.Table) -> None:
        """Append rows in REJECT_SCHEMA columns, buffered like single rows (bounded memory;
        row groups of `batch_rows`, as one `add_table` of all of them would write)."""
        for reason, n in Counter(table.column("reason").to_pylist()).items():
            self.counts[reason] += n
        self.write_table(table)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RejectRatioExceeded(Exception):
    """Raised (and turned into a non-zero exit by the CLI) when too much input was dropped."""


def check_reject_ratio(kept: int, rejected: int, max_ratio: float, what: str = "rows") -> None:
    total = kept + rejected
    if total and rejected / total > max_ratio:
        raise RejectRatioExceeded(
            f"{rejected} of {total} {what} rejected ({rejected / total:.1%}), "
            f"above --max-reject-ratio {max_ratio:g}; see rejects/rejects.parquet"
        )


def format_summary(kept: int, counts: Counter[str] | dict[str, int], what: str = "rows") -> str:
    """A small aligned table: kept, then each reject reason by count (largest first)."""
    lines = [f"kept      {kept:>10,} {what}"]
    for reason, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        lines.append(f"rejected  {n:>10,}  {reason}")
    return "\n".join(lines)


@dataclass
class Tally:
    """Kept items and rejects by reason: the summary every stage returns (nothing is dropped
    without a count here). Stages extend it with what else they report."""

    kept: int = 0
    rejects: Counter = field(default_factory=Counter)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    def table(self, what: str = "rows") -> str:
        return format_summary(self.kept, self.rejects, what)

    def check(self, max_reject_ratio: float, what: str = "rows") -> None:
        """Raise RejectRatioExceeded when the rejects pass the ratio."""
        check_reject_ratio(self.kept, self.rejected, max_reject_ratio, what)
