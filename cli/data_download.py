"""`vlmdata download`, `ingest-img2dataset`: published data sets and img2dataset folders in,
indexed shards out (the fetch side of the shards stage; `cli/data_shards.py` is the local side)."""

import click

from cli.common import handle_errors, max_reject_ratio_option, out_option
from cli.shard_options import distributor_option, shard_layout_options, shard_options
from vlmdata.core.choices import (
    FETCH_ENCODE_FORMATS,
    FETCH_RESIZE_MODES,
    RESTVAL_RULES,
)

DATASETS = ["cc3m", "coco", "oven-kb", "karpathy", "flickr30k", "flickr8k", "oven", "llava"]


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
@distributor_option(
    "Engine of the fetch (img2dataset's) and of the repack (image checks, then one task "
    "per output shard); the output is the same on every engine."
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


@click.command("ingest-img2dataset")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@out_option()
@click.option("--split", help="The split of every row (a folder under shards/; default nosplit).")
@click.option("--source", default="img2dataset", show_default=True, help="The source column.")
@shard_layout_options
@distributor_option("Where the image checks and the one-task-per-shard writes run (as for shard).")
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


COMMANDS = [download, ingest_img2dataset]
