"""`vlmdata manifest` (published data set files -> manifest) and `vlmdata filter-urls`."""

from __future__ import annotations

import click

from cli.common import handle_errors, max_reject_ratio_option, out_option
from vlmdata.core.choices import RESTVAL_RULES, SOURCE_NAMES


@click.command("manifest")
@click.argument("source", type=click.Choice(SOURCE_NAMES))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option("Output folder.", local=True)
@click.option("--images", type=click.Path(file_okay=False), help="Image folder (oven: .jpg/.JPEG).")
@click.option("--restval", type=click.Choice(RESTVAL_RULES), help="karpathy: restval images.")
@click.option("--split", help="Split for every row (default: from the file name or the data).")
@max_reject_ratio_option
@click.option("-q", "--quiet", is_flag=True, help="No running count of the rows read.")
@handle_errors
def manifest(source, inputs, out, images, restval, split, max_reject_ratio, quiet):
    """Read a published data set's files into OUT/manifest/ + OUT/rejects/ (one table each).

    \b
    Sources and their files:
      cc3m      Train_GCC-training.tsv, Validation_GCC-1.1.0-Validation.tsv (caption<TAB>url),
                or FROMAGe's cc3m_{train,val}.tsv (header caption<TAB>image)
      karpathy  dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json
      coco      captions_train2014.json, captions_val2014.json
      oven      oven_{entity,query}_{train,val,test}.jsonl (test files without data_split:
                the split from --split, else from the file name)
      oven-kb   Wiki6M_ver_1_0.jsonl (also writes OUT/entities.parquet)
      llava     llava_v1_5_mix665k.json, llava_instruct_150k.json, LLaVAR json
                (text-only records: OUT/text_only/text_only.parquet)
      vqav2     v2_OpenEnded_mscoco_{train,val}2014_questions.json together with
                v2_mscoco_{train,val}2014_annotations.json (test: questions only)

    One row per record (a caption set, a conversation, a question). Records may share an
    image (llava, vqav2, oven: image_key); a repeated source id gets a `_N` suffix on its key,
    the original stays in data_id / image_id.

    \b
    Examples:
      vlmdata manifest karpathy dataset_flickr30k.json -o work/flickr30k
      vlmdata manifest karpathy dataset_coco.json --restval skip -o work/coco
      vlmdata manifest cc3m Train_GCC-training.tsv Validation_GCC-1.1.0-Validation.tsv -o cc3m/
      vlmdata manifest oven oven_entity_train.jsonl --images oven_images/ -o oven/
      vlmdata manifest llava llava_v1_5_mix665k.json -o llava/
      vlmdata manifest vqav2 v2_OpenEnded_mscoco_train2014_questions.json \\
          v2_mscoco_train2014_annotations.json -o vqa/

    Unreadable rows go to rejects/rejects.parquet with file, line (JSON: list index) and reason; the
    summary counts them. Exit 1 when rejects pass --max-reject-ratio, 2 on unusable input.
    """
    from vlmdata.sources import read_source

    result = read_source(source, inputs, out, images=images, restval=restval, split=split,
                         progress=not quiet)  # fmt: skip
    click.echo(result.summary())
    result.check(max_reject_ratio)


@click.command("filter-urls")
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@out_option("Output folder.", local=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["cc3m", "manifest"]),
    help="Input format (default: manifest for *.parquet, else cc3m).",
)
@click.option("--denylist", type=click.Path(dir_okay=False), help="Domains file, one per line.")
@click.option("--allow-private", is_flag=True, help="Keep localhost / private IPs (test servers).")
@click.option("--split", help="cc3m: split for every row (default: from the file name).")
@max_reject_ratio_option
@click.option("-q", "--quiet", is_flag=True, help="No stage messages on stderr.")
@handle_errors
def filter_urls(input_path, out, fmt, denylist, allow_private, split, max_reject_ratio, quiet):
    """Drop URLs a downloader must not fetch: OUT/manifest/ (kept) + OUT/rejects/ (one table each).

    \b
    Reasons, checked in this order (one per row):
      empty_text, too_long (>2048), bad_scheme (not http/https),
      malformed (also numeric hosts other than a dotted quad: 2130706433, 127.1, 0x7f000001,
        0177.0.0.1; a backslash before the path),
      private_address (localhost, localhost.localdomain, single-label names such as
        "metadata", private/loopback/link-local/multicast/reserved IPs, full-width digits),
      non_public_tld (.onion .i2p .local .internal),
      tor_gateway (*.onion.link, *.onion.to, *.tor2web.org ...),
      denylisted_domain (suffix match), duplicate_url (the first occurrence is kept)
    The same rule checks every redirect target inside `vlmdata download`.

    \b
    Examples:
      vlmdata filter-urls Train_GCC-training.tsv -o cc3m/ --denylist blocked.txt
      vlmdata filter-urls work/oven-kb/manifest/manifest.parquet -o work/oven-kb-clean
      vlmdata filter-urls test.tsv --format cc3m --split train --allow-private -o t/
    """
    from vlmdata.filter.urls import filter_urls as run

    result = run(input_path, out, fmt=fmt, denylist=denylist, allow_private=allow_private,
                 split=split, progress=not quiet)  # fmt: skip
    click.echo(result.summary())
    result.check(max_reject_ratio)


COMMANDS = [
    manifest,
    filter_urls,
]
