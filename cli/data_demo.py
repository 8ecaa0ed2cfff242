"""`vlmdata demo`: generate the built-in image-caption data set (Karpathy JSON + JPEGs)."""

from __future__ import annotations

import click

from cli.common import handle_errors


@click.command("demo")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--images", "n_images", default=3000, show_default=True, help="Number of images.")
@click.option("--seed", default=0, show_default=True, help="Same seed → byte-identical output.")
@click.option("--size", default=64, show_default=True, help="Image side in pixels.")
@click.option("--test", "n_test", default=100, show_default=True, help="Test-split images.")
@click.option("--val", "n_val", default=100, show_default=True, help="Val-split images.")
@click.option(
    "--tokenizer",
    type=click.Path(file_okay=False),
    help="Also train a small BPE tokenizer on the train captions and save it to this folder.",
)
@click.option(
    "--clip",
    type=click.Path(file_okay=False),
    help="Also save a tiny seeded random open_clip model (open_clip local-dir) to this folder.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def demo(out, n_images, seed, size, n_test, n_val, tokenizer, clip, quiet):
    """Generate a demo data set in the real Karpathy JSON format (like dataset_flickr30k.json).

    Images are coloured shapes (circle, square, triangle, star, diamond, cross) of eight colours,
    small or large, on the left/right/top/bottom/center of a plain background of another colour;
    each has five captions that say exactly that, in varied wording. Test images have unique
    attribute combinations, so every test caption names one test image. Writes
    OUT/dataset_demo.json, OUT/images/NNNNNN.jpg and OUT/attributes.jsonl (ground truth).

    \b
    Examples:
      vlmdata demo demo-data/                       # 3000 images: 2800 train, 100 val, 100 test
      vlmdata demo demo-data/ --tokenizer demo-data/tok --clip demo-data/clip
                                      # + a BPE for tiny LMs and a tiny random open_clip
      vlmdata demo small/ --images 300 --test 50 --val 0 --size 96
      vlmdata manifest karpathy demo-data/dataset_demo.json -o work/
      vlmdata shard work/manifest/manifest.parquet --images demo-data/images -o shards/
      bash examples/demo.sh demo-out/               # the whole pipeline (make demo)
    """
    from vlmdata.demo.dataset import generate_demo

    summary = generate_demo(
        out, images=n_images, seed=seed, size=size, test=n_test, val=n_val, progress=not quiet
    )
    click.echo(f"wrote {summary}")
    if tokenizer:
        from vlmdata.demo.dataset import train_demo_tokenizer

        tok = train_demo_tokenizer(out, tokenizer)
        click.echo(f"wrote tokenizer ({len(tok)} tokens) to {tokenizer}")
    if clip:
        from vlmdata.demo.clip import save_demo_clip

        save_demo_clip(clip, seed=seed, image_size=size)
        click.echo(f"wrote tiny open_clip model to {clip} (vlmdata embed --model {clip})")


@click.command("demo-report")
@click.argument("shards", type=click.Path(exists=True, file_okay=False))
@click.argument("reports", nargs=-1, required=True, metavar="LABEL=REPORT.json...")
@click.option(
    "-o",
    "--output",
    "--out",
    "output",
    type=click.Path(dir_okay=False),
    help="Also write the table here.",
)
@handle_errors
def demo_report(shards, reports, output):
    """Text→image Recall@1/5/10 of `vlmtrain eval` reports next to chance (K / test images).

    SHARDS is the shard folder the reports were scored on (named in the table's caption).

    \b
    Example (the last step of examples/demo.sh):
      vlmdata demo-report demo-out/shards "GRACE=demo-out/reports/grace.json" \
          "FROMAGe=demo-out/reports/fromage.json" -o demo-out/results.md
    """
    from vlmdata.core.atomic import atomic_open
    from vlmdata.core.errors import DataError
    from vlmdata.demo.report import recall_table, reports_made_with

    labelled = []
    for item in reports:
        label, sep, path = item.rpartition("=")
        if not sep or not label:
            raise DataError(f"expected LABEL=REPORT.json, got {item!r}")
        labelled.append((label, path))
    table = recall_table(labelled) + "\n\n" + reports_made_with([p for _, p in labelled])
    click.echo(f"\nScored on {shards}:\n\n{table}")
    if output:
        with atomic_open(output, "w", encoding="utf-8") as f:
            f.write(table + "\n")


COMMANDS = [
    demo,
    demo_report,
]
