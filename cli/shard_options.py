"""Options the shard-writing commands share (`download`, `shard`, `ingest-img2dataset`, and
`--storage-options` on every command that reads or writes OUT): declared once here."""

from collections.abc import Callable

import click

from vlmdata.core.choices import DISTRIBUTORS

STORAGE_HELP = (
    "JSON object of fsspec storage options for an OUT URL, e.g. "
    '\'{"endpoint_url": "http://127.0.0.1:9000"}\' (credentials usually come from the '
    "environment: AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...)."
)


def storage_option(fn: Callable) -> Callable:
    """`--storage-options JSON`, parsed into a dict (fsspec's storage_options)."""

    def parse(ctx, param, value):
        from vlmdata.core.storage import parse_storage_options

        try:
            return parse_storage_options(value)
        except ValueError as e:
            raise click.BadParameter(str(e)) from None

    return click.option("--storage-options", callback=parse, help=STORAGE_HELP)(fn)


def shard_options(opts: dict, **image):
    """The one ShardOptions object from the flags `shard_layout_options` declared."""
    from vlmdata.shards.options import ShardOptions

    return ShardOptions(
        name=opts["name"],
        samples_per_shard=opts["samples_per_shard"],
        max_shard_bytes=opts["max_shard_bytes"],
        workers=opts["workers"],
        min_side=opts["min_side"],
        max_pixels=opts["max_pixels"],
        decode_check=opts["image_check"] == "decode",
        every_text=opts["every_text"],
        **image,
    )


def shard_layout_options(fn: Callable) -> Callable:
    """The shard layout and image-limit options `download` and `shard` share."""
    options = [
        click.option("--name", default="data", show_default=True, help="Shard name prefix."),
        click.option(
            "--samples-per-shard", default=1000, show_default=True, type=click.IntRange(1)
        ),
        click.option(
            "--max-shard-bytes", type=click.IntRange(1), help="Also cut shards at this size."
        ),
        click.option("--workers", default=1, show_default=True, type=click.IntRange(1)),
        click.option(
            "--min-side", default=0, show_default=True, help="Reject smaller images (px)."
        ),
        click.option(
            "--max-pixels", default=89_478_485, show_default=True, help="Decompression-bomb limit."
        ),
        click.option(
            "--image-check",
            type=click.Choice(["decode", "structure"]),
            default="decode",
            show_default=True,
            help="decode: decode every image (catches corrupt data); structure: header + end "
            "marker only (~20x faster; catches cut-off files).",
        ),
        click.option(
            "--every-text",
            is_flag=True,
            help="One tar sample per text (KEY, KEY_t1, KEY_t2, ...), the image repeated: a "
            "peer that reads one txt per sample (OpenCLIP) sees every caption. Costs one more "
            "copy of the image per extra text (README, Use the shards elsewhere).",
        ),
        storage_option,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def distributor_option(help: str) -> Callable:
    """`--distributor`: where a command's parallel work runs (its help says what runs there)."""
    return click.option(
        "--distributor",
        default="multiprocessing",
        show_default=True,
        type=click.Choice(DISTRIBUTORS),
        help=help,
    )
