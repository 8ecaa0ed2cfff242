"""`vlmtrain`: DeepSpeed training on vlmdata shards, and the benchmarks."""

from __future__ import annotations

import click

from cli import train_eval, train_launch, train_plot


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="vlm")
def main() -> None:
    """Train vision-language models on vlmdata shards (DeepSpeed) and evaluate them.

    \b
      vlmtrain launch examples/configs/grace_tiny.yaml --num-gpus 2
      vlmtrain eval retrieval-generative --checkpoint runs/grace --data shards/ \\
          --split test --trie test.trie --ids ids.parquet -o report.json
      vlmtrain plot runs/grace        # PNGs of loss per stream, lr, samples/s, MFU/padding
    """


main.add_command(train_launch.launch)
main.add_command(train_eval.eval_cmd)
main.add_command(train_plot.plot)
