"""`vlmdata view`: one self-contained HTML page of a shard folder (samples, rejects, histograms)."""

from vlmdata.view.page import ViewOptions, write_view

__all__ = ["ViewOptions", "write_view"]
