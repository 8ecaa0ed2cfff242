"""`vlmdata view`: a page of a shard folder to look at (the work is in vlmdata.view; the
options besides OUT, -o and --storage-options are ViewOptions' fields, by name)."""

import click

from cli.common import handle_errors
from cli.shard_options import storage_option


@click.command("view")
@click.argument("out")
@click.option(
    "-o", "--output", required=True, help="The HTML file to write (a path or an fsspec URL)."
)
@click.option(
    "--samples", default=24, show_default=True, type=click.IntRange(1), help="Images per split."
)
@click.option(
    "--seed", default=0, show_default=True, type=click.IntRange(0), help="Which images are drawn."
)
@click.option(
    "--max-records", default=20, show_default=True, type=click.IntRange(1),
    help="Records listed under one image (the rest are counted).",
)  # fmt: skip
@click.option(
    "--examples", "reject_examples", default=3, show_default=True, type=click.IntRange(0),
    help="Examples shown per reject reason.",
)  # fmt: skip
@click.option(
    "--thumb-side", default=160, show_default=True, type=click.IntRange(16, 1024),
    help="Thumbnail size (px, longer side).",
)  # fmt: skip
@click.option(
    "--images", type=click.Path(exists=True, file_okay=False),
    help="The local image folder the shard run read: rejected images are shown from it.",
)  # fmt: skip
@storage_option
@handle_errors
def view(out: str, output: str, storage_options, **options) -> None:
    """Write one self-contained HTML page of shard folder OUT: per split a seeded sample of
    images with all their records (captions, questions/answers, conversations, entity),
    the reject reasons as a chart with a few examples each, and histograms of image size
    and caption length.

    The page embeds small JPEG thumbnails and no script; it opens from disk or object
    storage. Its size is bounded by the options (about samples x splits + examples x
    reasons thumbnails of a few KB each), not by the data set.

    \b
    Examples:
      vlmdata view shards/ -o shards.html
      vlmdata view cc3m/ -o cc3m.html --samples 48 --seed 1 --images cc3m-images/
      AWS_ENDPOINT_URL=http://127.0.0.1:9000 vlmdata view s3://bucket/f30k -o f30k.html
    """
    from vlmdata.view import ViewOptions, write_view

    size = write_view(out, output, ViewOptions(**options), storage_options)
    click.echo(f"page: {output} ({size / 1e6:.2f} MB)")


COMMANDS = [view]
