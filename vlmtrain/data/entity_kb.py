"""The OVEN knowledge base as AutoVER reads it: one id -> name map, summaries, entity images.

`entities.parquet` (entity_id, entity_name[, content]) is what `vlmdata manifest oven-kb`
writes and what `vlmdata build-trie --entities` builds the trie from, so its names are the one
spelling used for training targets, the trie and retrieval (AutoVER's `qid_to_entity` map).
`content` is the Wikipedia text the summary is cut from. Entity images come from the KB's own
shards (`wiki_{QID}` keys, `vlmdata shard` of the oven-kb manifest); an entity without one gets
a black image, as AutoVER does.

Memory stays bounded for the 6M-entity KB: only the id column is held (for the row of an id);
names and text are read a parquet row group at a time (a few kept), and `batches` streams the
whole file in order.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator

from vlmdata.core.errors import DataError

KEEP_GROUPS = 4  # row groups held for random access (training reads entities in any order)


class EntityKB:
    """Random and sequential access to entities.parquet (+ optional KB image shards)."""

    def __init__(self, entities: str | os.PathLike, images: str | os.PathLike | None = None):
        import pyarrow.parquet as pq

        self.path, self.images_dir = str(entities), images
        try:
            self._file = pq.ParquetFile(self.path)
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read entities parquet: {e}", file=self.path) from e
        cols = set(self._file.schema_arrow.names)
        if not {"entity_id", "entity_name"} <= cols:
            raise DataError("entities need entity_id and entity_name columns", file=self.path)
        self.columns = [c for c in ("entity_id", "entity_name", "content") if c in cols]
        starts, n = [], 0
        for g in range(self._file.num_row_groups):
            starts.append(n)
            n += self._file.metadata.row_group(g).num_rows
        self._starts, self._groups = starts, OrderedDict()
        self._row_of: dict[str, int] | None = None
        self._images = None

    def __len__(self) -> int:
        return self._file.metadata.num_rows

    def ids(self) -> list[str]:
        """Every entity id in row order."""
        return self._file.read(columns=["entity_id"]).column(0).to_pylist()

    def row_of(self, entity_id: str) -> int:
        """The entity's row (its trie row); KeyError when the KB lacks it."""
        if self._row_of is None:
            self._row_of = {e: i for i, e in enumerate(self.ids())}
        return self._row_of[entity_id]

    def __contains__(self, entity_id: str) -> bool:
        try:
            self.row_of(entity_id)
        except KeyError:
            return False
        return True

    def entry(self, entity_id: str) -> dict:
        """{entity_id, entity_name, content} of one entity (KeyError when absent)."""
        import bisect

        row = self.row_of(entity_id)
        g = bisect.bisect_right(self._starts, row) - 1
        if g not in self._groups:
            if len(self._groups) >= KEEP_GROUPS:
                self._groups.popitem(last=False)
            self._groups[g] = self._file.read_row_group(g, columns=self.columns).to_pylist()
        self._groups.move_to_end(g)
        return self._groups[g][row - self._starts[g]]

    def name(self, entity_id: str) -> str:
        return self.entry(entity_id)["entity_name"]

    def batches(self, size: int) -> Iterator[list[dict]]:
        """Every entity in row order, `size` at a time (streamed: bounded memory)."""
        for batch in self._file.iter_batches(batch_size=size, columns=self.columns):
            yield batch.to_pylist()

    def image_bytes(self, entity_id: str) -> bytes | None:
        """The entity's image from the KB shards (key `wiki_{QID}`), None when it has none."""
        if self.images_dir is None:
            return None
        if self._images is None:
            from vlmdata.shards import ShardReader

            self._images = ShardReader(self.images_dir)
        from vlmdata.core.manifest import make_key

        try:
            return self._images.get(make_key("wiki", entity_id))["image"]
        except KeyError:
            return None
