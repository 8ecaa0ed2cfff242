"""`vlmdata`: data sets → manifest → shards → identifiers and tries."""

from __future__ import annotations

from vlmdata.core.heap import system_arrow_pool_for_process

system_arrow_pool_for_process()  # before pyarrow is first used (issue 23)

import click  # noqa: E402

from cli import data_demo, data_download, data_ids, data_shards, data_sources, data_view  # noqa: E402


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vlm")
def main() -> None:
    """Prepare vision-language data: published data sets in, indexed WebDataset shards out.

    \b
    Typical flow:
      vlmdata manifest karpathy dataset_flickr30k.json -o work/      # read a data set
      vlmdata filter-urls Train_GCC-training.tsv --format cc3m -o cc3m/
      vlmdata shard work/manifest/manifest.parquet --images flickr30k-images/ -o shards/
      vlmdata build-ids shards/ --scheme numeric -o ids.parquet
      vlmdata build-trie --ids ids.parquet --tokenizer tok/ --split test -o ids.trie
    """


for _module in (data_sources, data_download, data_shards, data_ids, data_demo, data_view):
    for _cmd in _module.COMMANDS:
        main.add_command(_cmd)
