"""Indexed WebDataset shards (docs/DESIGN.md, contract 3): writers, the index, random-access
and streaming readers.

from vlmdata.shards import write_shards, ShardReader, iter_samples
write_shards("work/manifest.parquet", "images/", "out/")
r = ShardReader("out/", filter=pl.col("split") == "test"); r[0]["image"]
"""

from vlmdata.shards.options import ShardOptions
from vlmdata.shards.reader import Sample, ShardReader, iter_samples, iter_tar_samples, list_shards
from vlmdata.shards.writer import ShardSummary, write_samples, write_shards

__all__ = [
    "Sample",
    "ShardOptions",
    "ShardReader",
    "ShardSummary",
    "iter_samples",
    "iter_tar_samples",
    "list_shards",
    "write_samples",
    "write_shards",
]
