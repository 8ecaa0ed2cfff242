"""`vlmtrain eval TASK`: the benchmarks of the recipes, one command each.

Parsing, progress and exit codes only: each command fills its task's options object
(vlmtrain.eval.options) from its parameters, named as the object's fields, and hands it to the
task's `run_*` (imported inside commands so `vlmtrain --help` stays light). Options that several
tasks share are declared once in cli/eval_options.py; a task's own are declared at its command.
"""

from __future__ import annotations

from typing import Any

import click

from cli import eval_answer_tasks
from cli.common import handle_errors
from cli.eval_options import (
    CKPT,
    DATA,
    IMAGES,
    IN_PATH,
    SAVE_RANKED,
    SPLIT_HELP,
    defaults_from,
    fill_options,
    finish,
    need,
    number,
    required_file,
    run_options,
    split_option,
)
from vlmtrain.eval.options import (
    GRACE_LENGTH_PENALTY,
    EmbeddingRetrievalOptions,
    GenerativeRetrievalOptions,
    VisdialOptions,
    VistOptions,
)


@click.group("eval", context_settings={"help_option_names": ["-h", "--help"]})
def eval_cmd() -> None:
    """Evaluate a checkpoint (or a predictions file) on a recipe's benchmark.

    Every task prints a metric table and, with -o, writes a JSON report {schema_version, task,
    metrics: [{metric, value, count}], config, checkpoint, data, details, units, made_with};
    with --html, also a self-contained HTML page of it (retrieval: a few queries with their
    top-5 images marked right/wrong).
    Units: OVEN in percent (as oven_eval.py), other accuracies, Recall@K, BLEU/METEOR/ROUGE-L,
    ANLS fractions.
    --split defaults to val on every task, the split one tunes on: a paper's test figure is
    asked for with --split test (VQAv2 and OVEN test answers are private). A split the shards
    lack is an error naming the ones they have.

    \b
      vlmtrain eval retrieval-generative --checkpoint runs/grace --data out/ --split test \\
          --trie test.trie --ids ids.parquet -o grace.json
      vlmtrain eval caption --predictions captions.json --data coco/ --split test -o cap.json
      vlmtrain eval vist --checkpoint runs/fromage --stories val.story-in-sequence.json \\
          --images vist/ -o vist.json
      vlmtrain eval vqa --predictions answers.json --questions q.json --annotations a.json \\
          -o vqa.json
      vlmtrain eval text-vqa --dataset textvqa --annotations TextVQA_0.5.1_val.json \\
          --predictions answers.json -o textvqa.json
    """


@defaults_from(GenerativeRetrievalOptions)
@eval_cmd.command("retrieval-generative")
@CKPT
@DATA
@click.option(
    "--trie",
    "trie_path",
    required=True,
    type=IN_PATH,
    help="Trie over the test identifiers (vlmdata build-trie --split test).",
)
@click.option(
    "--ids",
    "ids_path",
    required=True,
    type=IN_PATH,
    help="ids.parquet the trie was built from.",
)
@split_option(f"Index split to score {SPLIT_HELP}.")
@number("--beams")
@number("--returns", help="Sequences kept per query.")
@number(
    "--length-penalty", help=f"Beam score / length^p (GRACE: {GRACE_LENGTH_PENALTY:g}).", type=float
)
@run_options(SAVE_RANKED)
@handle_errors
def retrieval_generative(**params: Any) -> None:
    """GRACE text->image Recall@1/5/10 by trie-constrained beam search.

    Each text of each SPLIT image is a query in the grace recipe's query->id prompt; the
    returned identifiers map back to images through the trie and ids.parquet.

    \b
      vlmdata build-trie --ids ids.parquet --tokenizer runs/grace/export/tokenizer \\
          --split test -o test.trie
      vlmtrain eval retrieval-generative --checkpoint runs/grace --data flickr30k/ \\
          --split test --trie test.trie --ids ids.parquet -o grace.json
    """
    from vlmtrain.eval.tasks.retrieval import run_generative_retrieval

    opts = fill_options(GenerativeRetrievalOptions, params, "checkpoint", "data")
    finish(run_generative_retrieval(opts), opts)


@defaults_from(EmbeddingRetrievalOptions)
@eval_cmd.command("retrieval-embedding")
@CKPT
@DATA
@split_option(f"Index split to score {SPLIT_HELP}.")
@click.option(
    "--encoder",
    type=click.Choice(["model", "clip"]),
    help="model: the checkpoint's encode_images/encode_texts (FROMAGe); clip: an "
    "open_clip model as the baseline.",
)
@click.option(
    "--clip-model",
    help="open_clip name (with --clip-pretrained), NAME:FILE, local-dir:PATH (a saved open_clip "
    "folder), a JSON config (tiny CLIP) or random:NAME (random weights, asked for).",
)
@click.option("--clip-pretrained", help="Local open_clip checkpoint file (no downloads).")
@run_options(SAVE_RANKED)
@handle_errors
def retrieval_embedding(**params: Any) -> None:
    """Recall@1/5/10 text->image and image->text from embeddings.

    image->text is a hit when any of the image's captions is in the top K.

    \b
      vlmtrain eval retrieval-embedding --checkpoint runs/fromage --data coco/ --split test \\
          -o r.json
      vlmtrain eval retrieval-embedding --encoder clip --clip-model ViT-B-32 \\
          --clip-pretrained ~/ckpt/vit-b-32.pt --data coco/ --split test
      vlmtrain eval retrieval-embedding --encoder clip --clip-model local-dir:clip/ --data out/
    """
    from vlmtrain.eval.tasks.embedding import run_embedding_retrieval

    opts = fill_options(EmbeddingRetrievalOptions, params, "data")
    if opts.encoder == "model":
        need(checkpoint=opts.checkpoint)
    finish(run_embedding_retrieval(opts), opts)


@defaults_from(VistOptions)
@eval_cmd.command("vist")
@CKPT
@required_file("--stories", "stories_path", "VIST SIS file (sis/val.story-in-sequence.json).")
@IMAGES
@click.option(
    "--captions",
    type=click.IntRange(1, 5),
    help="Context captions (the last N): the paper's '1 caption' / '5 captions' rows.",
)
@click.option(
    "--images-in-context/--no-images-in-context",
    "with_images",
    help="Interleave the earlier images with the captions (the paper's '5 captions, 4 images').",
)
@run_options()
@handle_errors
def vist(**params: Any) -> None:
    """FROMAGe's VIST contextual image retrieval: Recall@1/5/10 of each story's last image.

    As kohjingyu/fromage evals/eval_vist_retrieval.py: story context of captions and earlier
    images then [RET]; candidates every image the stories use; earlier images excluded.

    \b
      vlmtrain eval vist --checkpoint runs/fromage --stories sis/val.story-in-sequence.json \\
          --images vist/val/ -o vist.json
    """
    from vlmtrain.eval.tasks.vist import run_vist

    opts = fill_options(VistOptions, params, "checkpoint")
    finish(run_vist(opts), opts)


@defaults_from(VisdialOptions)
@eval_cmd.command("visdial")
@CKPT
@required_file("--dialogs", "dialogs_path", "VisDial 1.0 file (visdial_1.0_val.json).")
@IMAGES
@run_options()
@handle_errors
def visdial(**params: Any) -> None:
    """FROMAGe's VisDial retrieval: a dialog's "Q: ..? A: ..." rounds + [RET] against images.

    recall@K is the published script's figure (each image ranks the dialogs); t2i_recall@K
    is the paper's stated direction (each dialog ranks the images).

    \b
      vlmtrain eval visdial --checkpoint runs/fromage --dialogs visdial_1.0_val.json \\
          --images VisualDialog_val2018/ -o visdial.json
    """
    from vlmtrain.eval.tasks.visdial import run_visdial

    opts = fill_options(VisdialOptions, params, "checkpoint")
    finish(run_visdial(opts), opts)


for _cmd in eval_answer_tasks.COMMANDS:
    eval_cmd.add_command(_cmd)
