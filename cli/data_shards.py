"""`vlmdata shard`, `inspect`, `verify`, `get`: local images in, indexed shards out, and the
commands that read shards back (`cli/data_download.py` fetches)."""

import sys

import click

from cli.common import handle_errors, max_reject_ratio_option, out_option
from cli.shard_options import (
    distributor_option,
    shard_layout_options,
    shard_options,
    storage_option,
)
from vlmdata.core.choices import DUPLICATE_IMAGE_RULES, REENCODE_FORMATS, RESIZE_MODES


def _refuse_url_manifest(manifest: str) -> None:
    """A manifest of URLs only (cc3m, coco, oven-kb) has no local files to shard: say so on
    screen, naming the command that fetches them, instead of rejecting every row missing_file."""
    import polars as pl

    from vlmdata.core.errors import DataError

    try:
        lf = pl.scan_parquet(manifest)
        if not {"path", "url", "source"} <= set(lf.collect_schema().names()):
            return
        counts = lf.select(
            pl.col("path").is_not_null().sum().alias("paths"),
            pl.col("url").is_not_null().sum().alias("urls"),
            pl.col("source").first().alias("source"),
        ).collect()
    except Exception:  # not Parquet, wrong types: the writer's own check names what is wrong
        return
    if counts["paths"][0] == 0 and counts["urls"][0] > 0:
        src = counts["source"][0]
        raise DataError(f"every row names a URL and no local file (a {src} manifest): "
                        f"`vlmdata download {src} ...` fetches and shards them",
                        file=manifest)  # fmt: skip


@click.command("shard")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Image folder.")
@out_option()
@shard_layout_options
@click.option(
    "--resize",
    type=click.Choice(RESIZE_MODES),
    help="Resize images (off by default: original bytes are kept).",
)
@click.option(
    "--resize-side",
    "resize_side",
    default=256,
    show_default=True,
    type=click.IntRange(1),
    help="Target side for --resize.",
)
@click.option("--reencode", type=click.Choice(REENCODE_FORMATS), help="Re-encode images.")
@distributor_option(
    "Where the image checks and the one-task-per-shard writes run: --workers local "
    "processes, the active Spark session (else local[--workers]) or Ray (RAY_ADDRESS, else "
    "local with --workers CPUs). The output is the same on every engine."
)
@click.option(
    "--duplicate-images",
    type=click.Choice(DUPLICATE_IMAGE_RULES),
    help="A byte-identical image under another image id: another record of the stored image "
    "(share), or a duplicate_image reject. Default per source: share for llava, vqav2, oven; "
    "reject where the image is the retrieval or contrastive target (flickr8k/30k, coco, demo, "
    "cc3m, oven-kb) and for unknown sources.",
)
@max_reject_ratio_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def shard(
    manifest, images, out, resize, resize_side, reencode, distributor, duplicate_images, **opts
):
    """Pack a manifest's records and their local images into indexed WebDataset shards in OUT.

    Each manifest row is a record; records naming the same image (image_key, or the same
    bytes where the source shares images) share one stored sample: every image is written once.

    \b
    Writes:
      OUT/shards/SPLIT/NAME-000000.tar ...  one folder per split (a shard never mixes splits):
                                KEY.jpg|png|webp (format sniffed from the bytes), KEY.json (first
                                record's fields; `records`: every record on the image), KEY.txt
                                (first text; --every-text: one sample per text)
      OUT/shards/SPLIT/sizes.json (OpenCLIP's), NAME-000000_stats.json, OUT/wids.json
      One folder per table, so read_parquet('OUT/index/*.parquet') reads that table alone:
      OUT/index/index.parquet   one row per sample: sample_offset/size, offset/size/sha256 of
                                every member, width, height, n_records, the first record's
                                metadata
      OUT/records/records.parquet  one row per record: key, image_key, split, texts, ...
      OUT/rejects/rejects.parquet  missing_file, path_escape, empty_file, not_an_image,
                                truncated, too_large, too_small, duplicate_image, bad_key,
                                duplicate_key, image_key_conflict, bad_split
      OUT/manifest/manifest.parquet  a copy of MANIFEST

    A path that is missing is also looked for with its other JPEG spellings (.jpg/.JPEG) and,
    when its folder does not exist, at the top of --images (a flat folder such as coco_images/).

    \b
    Examples:
      vlmdata shard work/manifest/manifest.parquet --images flickr30k-images/ -o shards/
      vlmdata shard coco/manifest/manifest.parquet --images coco_images/ -o out/ --workers 4 \\
          --max-shard-bytes 500000000 --min-side 64
      vlmdata shard m.parquet --images imgs/ -o out/ --resize center_crop --resize-side 224
      vlmdata shard m.parquet --images imgs/ -o s3://bucket/prefix  # AWS_* in the environment

    Same inputs give byte-identical output. A killed run, rerun with the same arguments,
    keeps the shards it finished and ends identical to an uninterrupted run; worker processes
    end with the command, even on kill -9. One run at a time per OUT (a second is refused).
    A bad row (unreadable, looping or over-long path, FIFO, null or empty texts, bad key) is
    a reject with its reason; a manifest of the wrong schema is one error before any work.

    \b
    Exit codes:
      0  done
      1  done, but more than --max-reject-ratio of the images were rejected
      2  could not run: bad input or options (file, row, reason), OUT in use, disk full
      3  crashed: a bug (the traceback is printed)
    """
    from vlmdata.core.rejects import check_reject_ratio
    from vlmdata.shards import write_shards

    side_given = click.get_current_context().get_parameter_source("resize_side")
    if resize is None and side_given is click.core.ParameterSource.COMMANDLINE:
        raise click.UsageError(
            f"--resize-side {resize_side} does nothing without --resize (keep_ratio, "
            "center_crop or border): the images would keep their size"
        )
    _refuse_url_manifest(manifest)
    options = shard_options(
        opts,
        resize=resize,
        resize_side=resize_side,
        reencode=reencode,
        distributor=distributor,
        duplicate_images=duplicate_images,
    )
    summary = write_shards(
        manifest,
        images,
        out,
        options,
        storage_options=opts["storage_options"],
        progress=not opts["quiet"],
    )
    click.echo(summary.format())
    check_reject_ratio(summary.kept, summary.rejected, opts["max_reject_ratio"], what="records")


@click.command("inspect")
@click.argument("out")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@storage_option
@handle_errors
def inspect(out, as_json, storage_options):
    """Summarise a shard folder: samples per split and source, sizes, captions, rejects.

    \b
    Examples:
      vlmdata inspect shards/
      vlmdata inspect shards/ --json | jq .rejects
      AWS_ENDPOINT_URL=http://127.0.0.1:9000 vlmdata inspect s3://bucket/f30k
    """
    import json

    from vlmdata.shards.inspect import format_report, summarize

    s = summarize(out, storage_options)
    click.echo(json.dumps(s, indent=2) if as_json else format_report(s, out))


@click.command("verify")
@click.argument("out")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@storage_option
@handle_errors
def verify(out, quiet, storage_options):
    """Re-read every sample in OUT against index/index.parquet and wids.json.

    Checks each member's tar header and sha256 and each shard's size and xxh3_128. Prints one line
    per mismatch (shard, key, problem) and exits 1 if there is any.

    \b
    Example:
      vlmdata verify shards/
      vlmdata verify s3://bucket/f30k    # one GET per shard
    """
    from cli.common import EXIT_REJECTS
    from vlmdata.shards.verify import verify_shards

    report = verify_shards(out, progress=not quiet, storage_options=storage_options)
    for m in report.mismatches:
        click.echo(str(m))
    keys = {m.key for m in report.mismatches if m.key}
    click.echo(
        f"checked {report.samples:,} samples in {report.shards:,} shards: "
        + ("ok" if report.ok else f"{len(report.mismatches)} mismatches in {len(keys)} samples"),
        err=not report.ok,
    )
    if not report.ok:
        sys.exit(EXIT_REJECTS)


@click.command("get")
@click.argument("out")
@click.argument("key")
@click.option(
    "-o",
    "--output",
    "--dest",
    "dest",
    type=click.Path(file_okay=False),
    help="Write the members here.",
)
@storage_option
@handle_errors
def get(out, key, dest, storage_options):
    """Fetch one sample by key with a single random-access read.

    With -o, files are written only inside that folder: the key and image format read from
    index/index.parquet must pass the key rule and be jpg/png/webp (a crafted index is refused).

    \b
    Examples:
      vlmdata get shards/ flickr30k_0            # prints KEY.json + image facts
      vlmdata get shards/ flickr30k_0 -o /tmp/s  # writes KEY.jpg KEY.json KEY.txt
      vlmdata get s3://bucket/f30k flickr30k_0   # one ranged GET
    """
    import json

    from vlmdata.core import layout
    from vlmdata.core.errors import DataError
    from vlmdata.shards import ShardReader

    reader = ShardReader(out, storage_options=storage_options)
    try:
        row = reader.row_of(key)
    except KeyError:
        index = reader.location.join(layout.INDEX)
        raise DataError(f"key {key!r} not in the index", file=index) from None
    if dest is None:
        s = reader[row]
        info = {"image_ext": s["image_ext"], "image_bytes": len(s["image"])}
        click.echo(json.dumps({**s["meta"], **info}, indent=2, ensure_ascii=False))
        return
    from vlmdata.shards.get import write_members

    for path in write_members(reader, row, dest):
        click.echo(str(path))


COMMANDS = [shard, inspect, verify, get]
