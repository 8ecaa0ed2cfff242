"""A streaming, atomic Parquet writer: rows (dicts) in bounded memory, a complete file or none.

Used by the manifest (docs/DESIGN.md, contract 1) and by readers' side outputs (entities,
text-only rows).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from vlmdata.core.atomic import temp_path_for


class RowsWriter:
    """Rows to Parquet `batch_rows` at a time; the file appears (renamed) on `close()` only."""

    def __init__(self, path: str | os.PathLike, schema: pa.Schema, batch_rows: int = 8192):
        self.path = Path(path)
        self.schema = schema
        self._tmp = temp_path_for(self.path)
        self._writer = pq.ParquetWriter(self._tmp, schema)
        self._rows: list[dict[str, Any]] = []
        self._batch_rows = batch_rows
        self.count = 0

    def write(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self._batch_rows:
            self._flush()

    def _flush(self) -> None:
        if self._rows:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=self.schema))
            self._rows = []

    def close(self) -> None:
        """Write what is buffered and rename the file into place (on failure: no file)."""
        try:
            self._flush()
            self._writer.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise

    def abort(self) -> None:
        """Drop the partial file: nothing appears at `path`, even if closing fails (disk full)."""
        try:
            self._writer.close()
        except OSError:
            pass
        finally:
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> RowsWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close() if exc_type is None else self.abort()
