"""vlmdata: vision-language data sets → manifest → WebDataset shards → identifiers and tries.

Nothing heavy is imported here: `vlmdata --help` must stay fast (no torch, polars, webdataset).
"""

__version__ = "0.1.0"
