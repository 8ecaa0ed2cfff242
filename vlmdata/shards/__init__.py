"""Indexed WebDataset shards (docs/DESIGN.md, contract 3): writers, the index, random-access
and streaming readers.

from vlmdata.shards import write_shards, ShardReader, RecordReader, iter_samples
write_shards("work/manifest/manifest.parquet", "images/", "out/")
r = ShardReader("out/", filter=pl.col("split") == "test"); r[0]["image"]   # one per image
q = RecordReader("out/", filter=pl.col("split") == "train"); q[0]["meta"]   # one per record
"""

from vlmdata.shards.options import ShardOptions
from vlmdata.shards.reader import Sample, ShardReader, iter_samples, iter_tar_samples, list_shards
from vlmdata.shards.records import RecordReader, load_records, records_of_sample
from vlmdata.shards.writer import ShardSummary, write_samples, write_shards

__all__ = [
    "RecordReader",
    "Sample",
    "ShardOptions",
    "ShardReader",
    "ShardSummary",
    "iter_samples",
    "iter_tar_samples",
    "list_shards",
    "load_records",
    "records_of_sample",
    "write_samples",
    "write_shards",
]
