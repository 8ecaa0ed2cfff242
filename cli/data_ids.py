"""`vlmdata build-ids`, `build-trie`, `embed`: identifier maps, prefix tries, image embeddings."""

from __future__ import annotations

import click

from cli.common import checked_device, handle_errors
from vlmdata.core.choices import ID_SCHEMES


@click.command("build-ids")
@click.argument("out", type=click.Path(exists=True))
@click.option("--scheme", type=click.Choice(ID_SCHEMES), required=True, help="Identifier scheme.")
@click.option("-o", "--output", "--out", "output", type=click.Path(dir_okay=False), required=True)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Shuffle positions (numeric, string, atomic); k-means seed (structured grace: GRACE's "
    "--seed, default 7; fast: default 0); the semantic text choice (default 0).",
)
@click.option("--tokenizer", type=click.Path(exists=True), help="Fill the tokens column.")
@click.option("--pseudo-queries", type=click.Path(exists=True), help="GRACE pseudo-query JSON.")
@click.option("--embeddings", type=click.Path(exists=True), help=".npy, one row per image.")
@click.option("--k", type=int, default=30, show_default=True, help="Clusters per level.")
@click.option("--leaf-size", type=int, default=30, show_default=True, help="Max images a leaf.")
@click.option(
    "--kmeans",
    type=click.Choice(["grace", "fast"]),
    default="grace",
    show_default=True,
    help="structured: GRACE's own k-means calls, or MiniBatchKMeans at every level.",
)
@click.option("--add-tokens", type=click.Path(file_okay=False), help="Save extended tokenizer.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar (structured k-means).")
@handle_errors
def build_ids(
    out,
    scheme,
    output,
    seed,
    tokenizer,
    pseudo_queries,
    embeddings,
    k,
    leaf_size,
    kmeans,
    add_tokens,
    quiet,
):
    """Give every image of OUT (a shards dir, or a manifest) an identifier: ids.parquet.

    \b
    Schemes (GRACE): numeric "1 2 3 4" · string "1234" · semantic (captions; pseudo-queries for
    test images, GRACE's file keyed by file stem or COCO id; val images without get none) ·
    structured (hierarchical k-means, "0_3-1_17-2_5"; --kmeans grace = GRACE's own k-means
    calls and settings) · atomic "image_N".
    Rows follow OUT's index order; same inputs and --seed give a byte-identical file.

    \b
    Examples:
      vlmdata build-ids shards/ --scheme numeric --seed 0 --tokenizer tok/ -o ids.parquet
      vlmdata build-ids shards/ --scheme semantic --pseudo-queries pq.json -o ids.parquet
      vlmdata embed shards/ --model ViT-B-32:ViT-B-32-openai.safetensors -o emb.npy
      vlmdata build-ids shards/ --scheme structured --kmeans grace --embeddings emb.npy \\
          --tokenizer tok/ --add-tokens tok-ids/ -o ids.parquet
    """
    from vlmdata.ids.build import build_ids as build

    stats = build(
        out,
        output,
        scheme=scheme,
        seed=seed,
        tokenizer=tokenizer,
        pseudo_queries=pseudo_queries,
        embeddings=embeddings,
        k=k,
        leaf_size=leaf_size,
        kmeans=kmeans,
        add_tokens=add_tokens,
        progress=not quiet,
    )
    click.echo(f"{stats['rows']:,} identifiers ({scheme}) -> {output}")
    if "collisions" in stats:
        c = stats["collisions"]
        click.echo(f"collisions: {c['texts']:,} texts shared by {c['images']:,} images")
    if "added_tokens" in stats:
        click.echo(f"added {stats['added_tokens']:,} tokens -> {add_tokens}")


@click.command("build-trie")
@click.option("--ids", "ids_path", type=click.Path(exists=True), help="ids.parquet.")
@click.option("--entities", type=click.Path(exists=True), help="entities.parquet (entity_name).")
@click.option("--tokenizer", type=click.Path(exists=True), required=True)
@click.option("-o", "--output", "--out", "output", type=click.Path(dir_okay=False), required=True)
@click.option("--split", default=None, help="Only identifiers of this split (GRACE: test).")
@click.option("--prefix", default="", help='Text before each identifier, e.g. "id ".')
@click.option("--eos", "eos_token", default=None, help="End token (default: tokenizer's eos).")
@handle_errors
def build_trie(ids_path, entities, tokenizer, output, split, prefix, eos_token):
    """Prefix trie of identifier (or entity name) token sequences, for constrained decoding.

    Sequences are prefix + identifier tokenized alone, then eos: the same rule as training
    targets. The file is memory-mapped by `vlmdata.trie.Trie.load`.

    \b
    Examples:
      vlmdata build-trie --ids ids.parquet --tokenizer tok/ --split test -o ids.trie
      vlmdata build-trie --entities oven/entities.parquet --tokenizer tok/ -o entities.trie
    """
    from vlmdata.core.errors import DataError
    from vlmdata.trie.from_files import trie_from_entities, trie_from_ids

    if (ids_path is None) == (entities is None):
        raise DataError("give exactly one of --ids or --entities")
    if ids_path is not None:
        trie = trie_from_ids(
            ids_path, tokenizer, split=split, prefix=prefix, eos_token=eos_token, out=output
        )
    else:
        if split is not None:
            raise DataError("--split applies to --ids only")
        trie = trie_from_entities(
            entities, tokenizer, prefix=prefix, eos_token=eos_token, out=output
        )
    dup = trie.header["n_duplicates"]
    click.echo(f"{len(trie):,} sequences, {trie.n_nodes:,} nodes -> {output}")
    if dup:
        click.echo(f"{dup:,} duplicate sequences point to their first row")


@click.command("embed")
@click.argument("out", type=click.Path(exists=True))
@click.option("-o", "--output", "--out", "output", type=click.Path(dir_okay=False), required=True)
@click.option(
    "--model", required=True, help="NAME:CHECKPOINT, an open_clip folder, or random:NAME."
)
@click.option("--batch-size", type=int, default=64, show_default=True)
@click.option(
    "--device",
    default="cpu",
    show_default=True,
    callback=checked_device,
    help="cpu, cuda, cuda:1, …",
)
@click.option(
    "--normalize/--no-normalize",
    default=False,
    show_default=True,
    help="L2-normalise (GRACE's k-means sees CLIP's raw projected vectors).",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@handle_errors
def embed(out, output, model, batch_size, device, normalize, quiet):
    """Image embeddings of OUT's samples (index order) with open_clip: a float32 .npy.

    MODEL is "NAME:CHECKPOINT" (local weights), a directory with open_clip_config.json +
    weights (or local-dir:PATH), or random:NAME for random weights (asked for explicitly: they
    measure nothing). Nothing is downloaded.

    \b
    Examples:
      vlmdata embed shards/ --model ViT-B-32:ViT-B-32-openai.safetensors -o emb.npy
      vlmdata embed shards/ --model ./my-clip/ --device cuda --batch-size 256 -o emb.npy
    """
    from vlmdata.ids.embed import embed_images

    n, dim = embed_images(
        out,
        output,
        model=model,
        batch_size=batch_size,
        device=device,
        normalize=normalize,
        progress=not quiet,
    )
    click.echo(f"{n:,} embeddings of dim {dim} -> {output}")


COMMANDS = [
    build_ids,
    build_trie,
    embed,
]
