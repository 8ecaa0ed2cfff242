"""`vlmdata download`, `shard`, `inspect`, `verify`, `get`: the shards stage."""

import sys
from collections.abc import Callable

import click

from cli.common import handle_errors, max_reject_ratio_option, out_option
from vlmdata.core.choices import (
    DISTRIBUTORS,
    DUPLICATE_IMAGE_RULES,
    FETCH_ENCODE_FORMATS,
    FETCH_RESIZE_MODES,
    REENCODE_FORMATS,
    RESIZE_MODES,
    RESTVAL_RULES,
)

DATASETS = ["cc3m", "coco", "oven-kb", "karpathy", "flickr30k", "flickr8k", "oven", "llava"]


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


@click.command("download")
@click.argument("dataset", type=click.Choice(DATASETS))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option()
@click.option(
    "--images", type=click.Path(file_okay=False), help="Local image folder (no download)."
)
@click.option(
    "--work-dir",
    type=click.Path(file_okay=False),
    help="Work files (raw downloads, state) for resuming; default OUT/.download, or a "
    "folder in ~/.cache/vlmdata for an OUT URL.",
)
@click.option("--split", help="Split for every row (default: from the file name or the data).")
@click.option("--restval", type=click.Choice(RESTVAL_RULES), help="karpathy: restval images.")
@click.option(
    "--resize-side",
    "--image-size",
    "image_size",
    type=click.IntRange(1),
    help="Target side for --resize (implies border; --image-size: img2dataset's name).",
)
@click.option(
    "--resize",
    "--resize-mode",
    "resize_mode",
    type=click.Choice(FETCH_RESIZE_MODES),
    help="Resize mode (img2dataset's; with --images as `vlmdata shard --resize`: border, "
    "keep_ratio, center_crop). Default: keep the bytes as they are. --resize-mode: "
    "img2dataset's name.",
)
@click.option(
    "--encode-format",
    default="jpg",
    show_default=True,
    type=click.Choice(FETCH_ENCODE_FORMATS),
    help="Format of resized images.",
)
@click.option("--processes", default=1, show_default=True, type=click.IntRange(1))
@click.option("--threads", default=64, show_default=True, type=click.IntRange(1))
@click.option("--retries", default=0, show_default=True, type=click.IntRange(0))
@click.option(
    "--timeout", default=10, show_default=True, type=click.IntRange(1), help="Seconds per read."
)
@click.option(
    "--max-image-bytes",
    default=50_000_000,
    show_default=True,
    type=click.IntRange(1),
    help="Refuse a response larger than this (response_too_large).",
)
@click.option(
    "--deadline",
    default=60.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds for a whole response, redirects included (download_deadline).",
)
@click.option(
    "--distributor",
    default="multiprocessing",
    show_default=True,
    type=click.Choice(DISTRIBUTORS),
    help="Engine of the fetch (img2dataset's) and of the repack (image checks, then one task "
    "per output shard); the output is the same on every engine.",
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
@max_reject_ratio_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
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
    OUT gets: shards/SPLIT/NAME-000000.tar (one folder per split; KEY.jpg|png|webp sniffed,
    KEY.json, KEY.txt), shards/SPLIT/sizes.json (OpenCLIP's), wids.json, and one folder per
    table (DuckDB: read_parquet('OUT/index/*.parquet')): index/, records/, manifest/, and
    rejects/ with every dropped row: source rows, filter-urls reasons, failed URLs (stage
    "download": http_404, timeout, connection_failed, redirect_refused, response_too_large,
    download_deadline, decode_failed ... with img2dataset's message in `detail`), image checks
    (not_an_image, duplicate_image ...).

    \b
    Examples:
      vlmdata download cc3m Validation_GCC-1.1.0-Validation.tsv -o cc3m-val/ \\
          --processes 4 --threads 64 --timeout 10 --retries 1
      vlmdata download coco captions_val2014.json -o coco-val/ --resize keep_ratio \\
          --resize-side 384
      vlmdata download oven-kb Wiki6M_ver_1_0.jsonl -o kb/ --distributor pyspark
      vlmdata download flickr30k dataset_flickr30k.json --images flickr30k-images/ -o f30k/

    A killed download, rerun with the same arguments, resumes: finished img2dataset shards are
    kept (its incremental mode) and the output ends byte-identical; img2dataset's processes
    end with this command, even on kill -9. URLs (filter-urls) and every redirect target, in
    every worker of every distributor, pass one rule: private, loopback, link-local and
    single-label hosts (unless --allow-private), numeric IP forms such as 2130706433,
    .onion/.internal and Tor gateways are refused (redirect_refused).

    \b
    Exit codes:
      0  done
      1  done, but more than --max-reject-ratio of the images were rejected
      2  could not run: bad input or options (file, row, reason), OUT in use, disk full
      3  crashed (a bug: the traceback is printed)
    """
    from vlmdata.core.rejects import check_reject_ratio
    from vlmdata.download.img2dataset_run import FetchOptions
    from vlmdata.download.pipeline import download

    resize_mode = opts["resize_mode"]
    if resize_mode is None and opts["image_size"] is not None:
        resize_mode = "border"  # img2dataset's default mode
    local_resize = _local_resize(opts["images"], resize_mode, opts["image_size"])
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
        max_image_bytes=opts["max_image_bytes"],
        deadline=opts["deadline"],
    )
    summary = download(
        dataset,
        inputs,
        out,
        work_dir=opts["work_dir"],
        storage_options=opts["storage_options"],
        images=opts["images"],
        split=opts["split"],
        restval=opts["restval"],
        fetch=fetch,
        shard=shard_options(opts, distributor=opts["distributor"], **local_resize),
        allow_private=opts["allow_private"],
        denylist=opts["denylist"],
        overwrite=not opts["incremental"],
        keep_raw=opts["keep_raw"],
        progress=not opts["quiet"],
    )
    click.echo(summary.format())
    check_reject_ratio(summary.kept, summary.rejected, opts["max_reject_ratio"], what="images")


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


def _local_resize(images: str | None, mode: str | None, side: int | None) -> dict:
    """With --images nothing goes through img2dataset: the resize is the shard writer's (the
    same modes but keep_ratio_largest), so it is not silently dropped."""
    from vlmdata.core.errors import DataError

    if images is None or mode in (None, "no"):
        return {}
    if mode not in ("border", "keep_ratio", "center_crop"):
        raise DataError(f"--resize {mode} resizes downloads only; with --images use border, "
                        "keep_ratio or center_crop")  # fmt: skip
    return {"resize": mode, "resize_side": side or 256}


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
@click.option(
    "--distributor",
    default="multiprocessing",
    show_default=True,
    type=click.Choice(DISTRIBUTORS),
    help="Where the image checks and the one-task-per-shard writes run: --workers local "
    "processes, the active Spark session (else local[--workers]) or Ray (RAY_ADDRESS, else "
    "local with --workers CPUs). The output is the same on every engine.",
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


@click.command("ingest-img2dataset")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@out_option()
@click.option("--split", help="The split of every row (a folder under shards/; default nosplit).")
@click.option("--source", default="img2dataset", show_default=True, help="The source column.")
@shard_layout_options
@click.option(
    "--distributor",
    default="multiprocessing",
    show_default=True,
    type=click.Choice(DISTRIBUTORS),
    help="Where the image checks and the one-task-per-shard writes run (as for shard).",
)
@max_reject_ratio_option
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@handle_errors
def ingest_img2dataset(folder, out, split, source, distributor, **opts):
    """Take in a folder img2dataset already wrote (no network access): indexed shards in OUT.

    Its output_format webdataset (NNNNN.tar + .parquet), parquet (images in a column) or files
    (NNNNN/ + .parquet), as img2dataset writes them; only shards it finished (NNNNN_stats.json)
    are read. Keys, captions, urls and per-row status come from its parquet, the images are
    its bytes unchanged; its failed rows are rejects with their reasons (http_404, timeout,
    ...). Resumable, on the same distributors as `shard`. OUT is laid out as `shard` writes it:
    shards/SPLIT/, wids.json and one folder per table (index/, records/, manifest/, rejects/).

    \b
    Examples:
      vlmdata ingest-img2dataset cc3m-img2dataset/ -o cc3m/ --split train --source cc3m
      vlmdata ingest-img2dataset laion/ -o s3://bucket/laion --distributor pyspark
    """
    from vlmdata.core.rejects import check_reject_ratio
    from vlmdata.download.ingest import ingest_img2dataset as ingest

    summary = ingest(
        folder,
        out,
        shard_options(opts, distributor=distributor),
        split=split,
        source=source,
        storage_options=opts["storage_options"],
        progress=not opts["quiet"],
    )
    click.echo(summary.format())
    check_reject_ratio(summary.kept, summary.rejected, opts["max_reject_ratio"], what="rows")


COMMANDS = [
    download,
    shard,
    ingest_img2dataset,
    inspect,
    verify,
    get,
]
