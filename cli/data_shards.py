"""`vlmdata download`, `shard`, `inspect`, `verify`, `get`: the shards stage."""

import sys
from collections.abc import Callable

import click

from cli.common import handle_errors

DATASETS = ["cc3m", "coco", "oven-kb", "karpathy", "flickr30k", "flickr8k", "oven", "llava"]


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
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


@click.command("download")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option(
    "--images", type=click.Path(file_okay=False), help="Local image folder (no download)."
)
@click.option("--split", help="Split for every row (default: from the file name or the data).")
@click.option("--restval", type=click.Choice(["train", "skip"]), help="karpathy: restval images.")
@click.option(
    "--image-size", type=click.IntRange(1), help="img2dataset resize target (implies border)."
)
@click.option(
    "--resize-mode",
    type=click.Choice(["no", "border", "keep_ratio", "keep_ratio_largest", "center_crop"]),
    help="img2dataset resize mode (default: keep the downloaded bytes as they are).",
)
@click.option(
    "--encode-format",
    default="jpg",
    show_default=True,
    type=click.Choice(["jpg", "png", "webp"]),
    help="Format of resized images.",
)
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=64, show_default=True, type=click.IntRange(1))
@click.option("--retries", default=0, show_default=True, type=click.IntRange(0))
@click.option("--timeout", default=10, show_default=True, type=click.IntRange(1), help="Seconds.")
@click.option(
    "--distributor",
    default="multiprocessing",
    show_default=True,
    type=click.Choice(["multiprocessing", "pyspark", "ray"]),
)
@click.option(
    "--incremental/--overwrite",
    default=True,
    show_default=True,
    help="Resume earlier downloads in OUT, or throw them away first.",
)
@click.option("--keep-raw", is_flag=True, help="Keep img2dataset's raw output in OUT/.download.")
@click.option("--allow-private", is_flag=True, help="Allow loopback/private/link-local hosts.")
@click.option("--denylist", type=click.Path(dir_okay=False), help="Domains to skip, one a line.")
@click.option("--user-agent-token", help="Token added to img2dataset's User-Agent.")
@click.option(
    "--download-shard-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="URLs per img2dataset shard (its unit of resume).",
)
@shard_layout_options
@click.option(
    "--image-check",
    type=click.Choice(["decode", "structure"]),
    default="decode",
    show_default=True,
    help="As in `vlmdata shard`: decode every image, or header + end marker only.",
)
@click.option(
    "--max-reject-ratio", default=0.5, show_default=True, help="Exit 1 above this reject ratio."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def download(dataset, inputs, out, **opts):
    """Download (or read locally) a data set's images into indexed shards in OUT.

    \b
    URL data sets go through img2dataset, then are repacked into the `vlmdata shard` layout:
      cc3m      Train_GCC-training.tsv ...   (caption<TAB>url)
      coco      captions_train2014.json ...  (coco_url)
      oven-kb   Wiki6M_ver_1_0.jsonl         (wikipedia_image_url)
    With --images DIR nothing is fetched: the data set's files name local images
    (karpathy/flickr30k/flickr8k, coco, oven, llava, FROMAGe cc3m), as in `vlmdata shard`.

    \b
    OUT gets: shards/NAME-000000.tar (KEY.jpg|png|webp sniffed, KEY.json, KEY.txt),
    index.parquet, manifest.parquet, wids.json, shards/*_stats.json, and rejects.parquet with
    every dropped row: source rows, filter-urls reasons, failed URLs (stage "download":
    http_404, timeout, connection_failed, private_redirect, decode_failed ... with
    img2dataset's message in `detail`), image checks (not_an_image, duplicate_image ...).

    \b
    Examples:
      vlmdata download cc3m Validation_GCC-1.1.0-Validation.tsv -o cc3m-val/ \\
          --processes 4 --threads 64 --timeout 10 --retries 1
      vlmdata download coco captions_val2014.json -o coco-val/ --image-size 384 \\
          --resize-mode keep_ratio
      vlmdata download oven-kb Wiki6M_ver_1_0.jsonl -o kb/ --distributor pyspark
      vlmdata download flickr30k dataset_flickr30k.json --images flickr30k-images/ -o f30k/

    A killed download, rerun with the same arguments, resumes: finished img2dataset shards are
    kept (its incremental mode) and the output ends byte-identical. Private, loopback and
    link-local hosts are refused unless --allow-private, as URLs (filter-urls) and as redirect
    targets (private_redirect). Exit 1 above --max-reject-ratio.
    """
    from vlmdata.core.rejects import check_reject_ratio
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import ShardOptions, download

    resize_mode = opts["resize_mode"]
    if resize_mode is None and opts["image_size"] is not None:
        resize_mode = "border"  # img2dataset's default mode
    fetch = FetchOptions(
        image_size=opts["image_size"] or 256,
        resize_mode=resize_mode,
        encode_format=opts["encode_format"],
        processes=opts["processes"],
        threads=opts["threads"],
        retries=opts["retries"],
        timeout=opts["timeout"],
        distributor=opts["distributor"],
        user_agent_token=opts["user_agent_token"],
        raw_shard_size=opts["download_shard_size"],
    )
    shard = ShardOptions(
        name=opts["name"],
        samples_per_shard=opts["samples_per_shard"],
        max_shard_bytes=opts["max_shard_bytes"],
        workers=opts["workers"],
        min_side=opts["min_side"],
        max_pixels=opts["max_pixels"],
        decode_check=opts["image_check"] == "decode",
    )
    summary = download(
        dataset,
        inputs,
        out,
        images=opts["images"],
        split=opts["split"],
        restval=opts["restval"],
        fetch=fetch,
        shard=shard,
        allow_private=opts["allow_private"],
        denylist=opts["denylist"],
        overwrite=not opts["incremental"],
        keep_raw=opts["keep_raw"],
        progress=not opts["quiet"],
    )
    click.echo(summary.format())
    check_reject_ratio(summary.kept, summary.rejected, opts["max_reject_ratio"], what="images")


@click.command("shard")
@click.argument("manifest", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", required=True, type=click.Path(file_okay=False), help="Image folder.")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@shard_layout_options
@click.option(
    "--resize",
    type=click.Choice(["keep_ratio", "center_crop", "border"]),
    help="Resize images (off by default: original bytes are kept).",
)
@click.option("--image-size", default=256, show_default=True, help="Target side for --resize.")
@click.option("--reencode", type=click.Choice(["jpg", "png", "webp"]), help="Re-encode images.")
@click.option(
    "--image-check",
    type=click.Choice(["decode", "structure"]),
    default="decode",
    show_default=True,
    help="decode: decode every image (catches corrupt data); structure: header + end marker "
    "only (~20x faster; catches cut-off files).",
)
@click.option(
    "--max-reject-ratio", default=0.5, show_default=True, help="Exit 1 above this reject ratio."
)
@click.option("--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def shard(
    manifest,
    images,
    out,
    name,
    samples_per_shard,
    max_shard_bytes,
    workers,
    min_side,
    max_pixels,
    resize,
    image_size,
    reencode,
    image_check,
    max_reject_ratio,
    quiet,
):
    """Pack a manifest's local images into indexed WebDataset shards in OUT.

    \b
    Writes:
      OUT/shards/NAME-000000.tar ...  KEY.jpg|png|webp (format sniffed from the bytes),
                                      KEY.json (manifest row), KEY.txt (first text)
      OUT/shards/NAME-000000_stats.json, OUT/wids.json (wids-shard-index-v1)
      OUT/index.parquet   byte offset/size/sha256 of every member, width, height, metadata
      OUT/rejects.parquet missing_file, path_escape, empty_file, not_an_image, truncated,
                          too_large, too_small, duplicate_image, bad_key, duplicate_key
      OUT/manifest.parquet (a copy of MANIFEST)

    \b
    Examples:
      vlmdata shard work/manifest.parquet --images flickr30k-images/ -o shards/
      vlmdata shard cc3m/manifest.parquet --images imgs/ -o out/ --workers 4 \\
          --max-shard-bytes 500000000 --min-side 64
      vlmdata shard m.parquet --images imgs/ -o out/ --resize center_crop --image-size 224

    Same inputs give byte-identical output. A killed run, rerun with the same arguments,
    keeps the shards it finished and ends identical to an uninterrupted run.
    """
    from vlmdata.core.rejects import check_reject_ratio
    from vlmdata.shards import write_shards

    summary = write_shards(
        manifest,
        images,
        out,
        name=name,
        samples_per_shard=samples_per_shard,
        max_shard_bytes=max_shard_bytes,
        workers=workers,
        min_side=min_side,
        max_pixels=max_pixels,
        resize=resize,
        image_size=image_size,
        reencode=reencode,
        decode_check=image_check == "decode",
        progress=not quiet,
    )
    click.echo(summary.format())
    check_reject_ratio(summary.kept, summary.rejected, max_reject_ratio, what="images")


@click.command("inspect")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
@handle_errors
def inspect(out, as_json):
    """Summarise a shard folder: samples per split and source, sizes, captions, rejects.

    \b
    Examples:
      vlmdata inspect shards/
      vlmdata inspect shards/ --json | jq .rejects
    """
    import json

    from vlmdata.shards.inspect import format_report, summarize

    s = summarize(out)
    click.echo(json.dumps(s, indent=2) if as_json else format_report(s))


@click.command("verify")
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def verify(out, quiet):
    """Re-read every sample in OUT against index.parquet and wids.json.

    Checks each member's tar header and sha256 and each shard's size and md5. Prints one line
    per mismatch (shard, key, problem) and exits 1 if there is any.

    \b
    Example:
      vlmdata verify shards/
    """
    from cli.common import EXIT_REJECTS
    from vlmdata.shards.verify import verify_shards

    report = verify_shards(out, progress=not quiet)
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
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.argument("key")
@click.option("-o", "--dest", type=click.Path(file_okay=False), help="Write the members here.")
@handle_errors
def get(out, key, dest):
    """Fetch one sample by key with a single random-access read.

    \b
    Examples:
      vlmdata get shards/ flickr30k_1000092795            # prints KEY.json + image facts
      vlmdata get shards/ flickr30k_1000092795 -o /tmp/s  # writes KEY.jpg KEY.json KEY.txt
    """
    import json
    from pathlib import Path

    from vlmdata.core.errors import DataError
    from vlmdata.shards import ShardReader

    reader = ShardReader(out)
    try:
        row = reader.row_of(key)
    except KeyError:
        raise DataError(
            f"key {key!r} not in the index", file=str(Path(out) / "index.parquet")
        ) from None
    if dest is None:
        s = reader[row]
        info = {"image_ext": s["image_ext"], "image_bytes": len(s["image"])}
        click.echo(json.dumps({**s["meta"], **info}, indent=2, ensure_ascii=False))
        return
    from vlmdata.core.atomic import atomic_open

    parts = reader.members(row)
    ext = reader.index["format"][row]
    for suffix, data in ((ext, parts["image"]), ("json", parts["json"]), ("txt", parts["txt"])):
        path = Path(dest) / f"{key}.{suffix}"
        with atomic_open(path, "wb") as f:
            f.write(data)
        click.echo(str(path))


COMMANDS = [
    download,
    shard,
    inspect,
    verify,
    get,
]
