"""`vlmtrain eval TASK`: the benchmarks of the recipes, one command each.

Parsing, progress and exit codes only: each command fills its task's options object
(vlmtrain.eval.options) from its parameters, named as the object's fields, and hands it to the
task's `run_*` (imported inside commands so `vlmtrain --help` stays light). Options that several
tasks share are declared once in cli/eval_options.py; a task's own are declared at its command.
"""

from __future__ import annotations

from typing import Any

import click

from cli.common import handle_errors
from cli.eval_options import (
    CKPT,
    DATA,
    IMAGES,
    IN_DIR,
    IN_PATH,
    OUT_FILE,
    SAVE,
    SAVE_RANKED,
    SPLIT_HELP,
    fill_options,
    finish,
    input_file,
    metric_names,
    need,
    number,
    records_split,
    required_file,
    run_options,
    split_option,
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
@number("--beams", 10)
@number("--returns", 10, help="Sequences kept per query.")
@number("--length-penalty", -2.0, help="Beam score / length^p (GRACE: -2).")
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
    from vlmtrain.eval.options import GenerativeRetrievalOptions
    from vlmtrain.eval.tasks.retrieval import run_generative_retrieval

    opts = fill_options(GenerativeRetrievalOptions, params, "checkpoint", "data")
    finish(run_generative_retrieval(opts), opts)


@eval_cmd.command("retrieval-embedding")
@CKPT
@DATA
@split_option(f"Index split to score {SPLIT_HELP}.")
@click.option(
    "--encoder",
    type=click.Choice(["model", "clip"]),
    default="model",
    show_default=True,
    help="model: the checkpoint's encode_images/encode_texts (FROMAGe); clip: an "
    "open_clip model as the baseline.",
)
@click.option(
    "--clip-model",
    default="ViT-B-32",
    show_default=True,
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
    from vlmtrain.eval.options import EmbeddingRetrievalOptions
    from vlmtrain.eval.tasks.embedding import run_embedding_retrieval

    opts = fill_options(EmbeddingRetrievalOptions, params, "data")
    if opts.encoder == "model":
        need(checkpoint=opts.checkpoint)
    finish(run_embedding_retrieval(opts), opts)


@eval_cmd.command("caption")
@CKPT
@DATA
@input_file(
    "--predictions", help='COCO results JSON [{"image_id"|"key", "caption"}] instead of a model.'
)
@split_option(f"Index split to score {SPLIT_HELP}.")
@click.option(
    "--metrics",
    default="BLEU-4,METEOR,ROUGE-L,CIDEr-D",
    show_default=True,
    callback=metric_names(("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")),
    help="Comma list of BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.",
)
@number("--beams", help="1 = greedy. [default: the recipe's decoding, else 1]")
@number("--max-new-tokens", help="[default: the recipe's decoding, else 30]")
@number(
    "--length-penalty",
    type=float,
    help="Beam score = sum log p / length ** this. [default: the recipe's decoding, else 1.0]",
)
@click.option(
    "--image-attention",
    type=click.Choice(["causal", "bidirectional"]),
    help="bidirectional = GIT's block mask (image tokens see each other). [default: the "
    "recipe's image_attention]",
)
@run_options(SAVE)
@handle_errors
def caption(**params: Any) -> None:
    """COCO caption metrics (pycocoevalcap: PTB tokenizer, needs Java) on the SPLIT images.

    References are the images' texts in the index (COCO Karpathy test: 5k images x 5).
    Line breaks inside a caption (\\r, \\v, \\f, U+2028, U+2029) become spaces before PTB
    tokenisation: pycocoevalcap's wrapper joins captions with newlines and splits the Java
    output by line, so such a caption would shift every later caption onto the wrong image.
    That is the only place where the scores differ from pycocoevalcap's.

    \b
      vlmtrain eval caption --checkpoint runs/caption --data coco/ --split test --beams 3 \\
          -o cap.json
      vlmtrain eval caption --predictions results.json --data coco/ --split test --metrics CIDEr-D
    """
    from vlmtrain.eval.options import CaptionOptions
    from vlmtrain.eval.tasks.caption import run_caption

    opts = fill_options(CaptionOptions, params, "data")
    finish(run_caption(opts), opts)


@eval_cmd.command("vqa")
@CKPT
@DATA
@input_file(
    "--questions",
    help="Official v2_OpenEnded_mscoco_*_questions.json (default: the records in --data).",
)
@input_file("--annotations", help="Official v2_mscoco_*_annotations.json (with --questions).")
@records_split
@input_file("--predictions", help='Results JSON [{"question_id", "answer"}] instead of a model.')
@click.option(
    "--prompt",
    help="Question prompt with {question}. [default: a caption recipe's question_prompt, else "
    "'Question: {question} Answer:']",
)
@click.option(
    "--submission",
    type=OUT_FILE,
    help="Write EvalAI's results JSON [{question_id, answer}] answering EVERY question of "
    "--questions (or of --split's records), annotated or not, instead of scoring.",
)
@click.option(
    "--vqa-script",
    "script",
    type=click.Choice(["2021", "2016"]),
    default="2021",
    show_default=True,
    help="Version of the official vqaEval.py to reproduce: 2021 (a013f00, current) or 2016 "
    "(458a8b2); published VQAv2 numbers come from both.",
)
@number("--max-new-tokens", help="[default: a caption recipe's, else 10]")
@number("--beams", help="[default: a caption recipe's decoding, else 1]")
@number("--length-penalty", type=float, help="[default: a caption recipe's, else 1.0]")
@run_options(SAVE)
@handle_errors
def vqa(**params: Any) -> None:
    """VQAv2 accuracy with the official normalisation and 10-annotator leave-one-out.

    The two versions of the official script differ: 2021 (default) strips the human answers
    and normalises both sides only when the humans disagree; 2016 always normalises the
    answer and compares unanimous human answers raw. The report's config names the version.
    Answers must cover exactly the annotated questions.

    \b
      vlmtrain eval vqa --predictions answers.json --questions q.json --annotations a.json
      vlmtrain eval vqa --checkpoint runs/caption --data coco_val/ --questions q.json \\
          --annotations a.json -o vqa.json
      vlmtrain eval vqa --checkpoint runs/caption --data vqav2_val/ --split val -o vqa.json

    Without --questions/--annotations the questions and the ten answers of each come from the
    records of `vlmdata manifest vqav2` shards in --data (answer types are then "unknown").

    With --submission nothing is scored: every question gets an answer, written in EvalAI's
    VQAv2 format (test-dev: answer all of v2_OpenEnded_mscoco_test2015_questions.json).

    \b
      vlmtrain eval vqa --checkpoint runs/caption --data coco_test2015/ \\
          --questions v2_OpenEnded_mscoco_test2015_questions.json --submission results.json
    """
    from vlmtrain.eval.options import VqaOptions
    from vlmtrain.eval.tasks.vqa import run_vqa, write_submission

    opts = fill_options(VqaOptions, params)
    if not opts.submission:
        return finish(run_vqa(opts), opts)
    if opts.annotations or opts.predictions or opts.save_predictions:
        raise click.UsageError(
            "--submission answers with a model and scores nothing: leave out "
            "--annotations, --predictions and --save-predictions"
        )
    need(data=opts.data_dir)
    report = write_submission(opts)
    click.echo(f"submission: {opts.submission}")
    finish(report, opts)


@eval_cmd.command("text-vqa")
@CKPT
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(["textvqa", "stvqa", "docvqa", "ocrvqa"]),
    help="Which published annotation format --annotations is in.",
)
@input_file(
    "--annotations",
    help="TextVQA_0.5.1_val.json, ST-VQA train_task_3.json, DocVQA val_v1.0.json, OCR-VQA "
    "dataset.json ...",
    required=True,
)
@split_option(
    f"OCR-VQA only: the split of dataset.json to score {SPLIT_HELP}; question ids: IMAGEID_INDEX.",
    type=click.Choice(["train", "val", "test"]),
)
@input_file(
    "--predictions",
    help='Submission JSON [{"question_id" (DocVQA: "questionId"), "answer"}] instead of a model.',
)
@click.option(
    "--image-folder",
    type=IN_DIR,
    help="With --checkpoint: the data set's images (TextVQA: {image_id}.jpg; ST-VQA: "
    "file_path; DocVQA: image; OCR-VQA: {image_id} + imageURL's extension).",
)
@click.option(
    "--metrics",
    default=None,
    callback=metric_names(("accuracy", "anls", "containment")),
    help="Comma list of accuracy (TextVQA), anls, containment. Default: TextVQA "
    "accuracy,containment; ST-VQA and DocVQA anls,containment; OCR-VQA containment.",
)
@click.option("--prompt", default="Question: {question} Answer:", show_default=True)
@number("--max-new-tokens", 16)
@run_options(SAVE)
@handle_errors
def text_vqa(**params: Any) -> None:
    """Text-rich VQA (LLaVAR's row: ST-VQA, OCR-VQA, TextVQA, DocVQA): accuracy, ANLS,
    containment.

    accuracy: TextVQA's official VQA accuracy over its ten answers (the EvalAI answer
    processor on both sides). anls: ST-VQA / DocVQA's average normalised Levenshtein
    similarity, threshold 0.5, best ground truth, mean over questions (as the RRC script).
    containment: the ground truth occurs, normalised, in the generated answer (LLaVAR, for
    sentence-long answers). Answers must cover exactly the annotated questions.

    \b
      vlmtrain eval text-vqa --dataset textvqa --annotations TextVQA_0.5.1_val.json \\
          --predictions answers.json -o textvqa.json
      vlmtrain eval text-vqa --dataset docvqa --annotations val_v1.0.json \\
          --checkpoint runs/llavar --image-folder docvqa/val -o docvqa.json
    """
    from vlmtrain.eval.options import TextVqaOptions
    from vlmtrain.eval.tasks.textvqa import run_text_vqa

    opts = fill_options(TextVqaOptions, params)
    finish(run_text_vqa(opts), opts)


def with_retrieve(flag: str, kind: click.ParamType, help: str):
    """An option that only `oven --retrieve` reads (its help says so first)."""
    return click.option(flag, type=kind, help=f"With --retrieve: {help}")


OVEN_LIMIT = click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Only the first N references of each split (smoke runs; keeps seen and unseen).",
)


@eval_cmd.command("oven")
@CKPT
@DATA
@input_file(
    "--references",
    help="OVEN annotation JSONL (repeat for query and entity splits); default: the "
    "index rows of --data.",
    multiple=True,
)
@split_option(
    "With --data: the OVEN splits to score, by a word of their names (val: query_val_seen, "
    "query_val_unseen, entity_val_seen, entity_val_unseen; query_val: the query family).",
    "--split-prefix",
    "split_prefix",
)
@input_file(
    "--predictions",
    help="JSONL {data_id, pred_entity_id} (repeatable) instead of a model.",
    multiple=True,
)
@click.option("--trie", type=IN_PATH, help="Entity-name trie (vlmdata build-trie --entities).")
@click.option("--entities", type=IN_PATH, help="entities.parquet of the trie.")
@click.option(
    "--candidates",
    type=IN_PATH,
    help="JSONL {data_id, candidates: [entity_id...]}: each example decodes among its own "
    "candidates (every entity of theirs, a batch at a time); none listed: the whole trie.",
)
@click.option(
    "--retrieve",
    type=click.IntRange(min=1),
    help="AutoVER: each query decodes among the K entities nearest to its <ret> embedding "
    "(the KB embedded once by the checkpoint's entity side; the report gives recall@K).",
)
@with_retrieve(
    "--kb-cache",
    click.Path(file_okay=False),
    "folder of the cached KB embeddings (default: kb-embeddings/ next to --entities).",
)
@with_retrieve(
    "--kb-images", IN_DIR, "the KB image shards (keys wiki_QID; default: the recipe's kb_images)."
)
@with_retrieve(
    "--save-candidates", OUT_FILE, "write the retrieved candidates here (the --candidates format)."
)
@number("--beams", 5)
@number("--max-new-tokens", 32)
@run_options(SAVE, limit=OVEN_LIMIT)
@handle_errors
def oven(**params: Any) -> None:
    """OVEN accuracy (seen/unseen per split) and the official harmonic means, in percent as
    oven_eval.py reports them.

    Splits as published (query_val_seen, entity_val_unseen, ...): seen/unseen by the name, the
    query/entity family by the name or else the file (oven_query_val.jsonl).

    \b
      vlmtrain eval oven --references oven_query_val.jsonl --references oven_entity_val.jsonl \\
          --predictions query_preds.jsonl --predictions entity_preds.jsonl -o oven.json
      vlmtrain eval oven --checkpoint runs/autover --data oven/ --trie entities.trie \\
          --entities entities.parquet -o oven.json
      vlmtrain eval oven --checkpoint runs/autover --data oven/ --trie entities.trie \\
          --entities kb/entities.parquet --kb-images kb-shards/ --retrieve 100 -o oven.json
    """
    from vlmtrain.eval.options import OvenOptions
    from vlmtrain.eval.tasks.oven import run_oven

    opts = fill_options(OvenOptions, params)
    finish(run_oven(opts), opts)


@eval_cmd.command("llava")
@CKPT
@DATA
@input_file(
    "--questions",
    help="JSONL {question_id, image, text[, answer]} (default: the LLaVA records in --data).",
)
@click.option("--image-folder", type=IN_DIR)
@records_split
@click.option(
    "--answers",
    "answers_file",
    required=True,
    type=OUT_FILE,
    help="Answers JSONL to write (LLaVA model_vqa format).",
)
@click.option("--model-id", default=None, help="model_id field (default: checkpoint name).")
@number("--max-new-tokens", 128)
@run_options()
@handle_errors
def llava(**params: Any) -> None:
    """Answer a LLaVA questions JSONL; accuracy where questions carry a reference answer.

    \b
      vlmtrain eval llava --checkpoint runs/llava --questions questions.jsonl \\
          --image-folder images/ --answers answers.jsonl -o llava.json
      vlmtrain eval llava --checkpoint runs/llava --questions questions.jsonl \\
          --data llava-shards/ --answers answers.jsonl      # images from the shards
      vlmtrain eval llava --checkpoint runs/llava --data llava-shards/ --split train \\
          --answers answers.jsonl   # the shards' records as questions (manifest llava: train)
    """
    from vlmtrain.eval.options import LlavaOptions
    from vlmtrain.eval.tasks.llava import run_llava

    opts = fill_options(LlavaOptions, params, "checkpoint")
    finish(run_llava(opts), opts)


@eval_cmd.command("vist")
@CKPT
@required_file("--stories", "stories_path", "VIST SIS file (sis/val.story-in-sequence.json).")
@IMAGES
@click.option(
    "--captions",
    default=5,
    show_default=True,
    type=click.IntRange(1, 5),
    help="Context captions (the last N): the paper's '1 caption' / '5 captions' rows.",
)
@click.option(
    "--images-in-context/--no-images-in-context",
    "with_images",
    default=True,
    show_default=True,
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
    from vlmtrain.eval.options import VistOptions
    from vlmtrain.eval.tasks.vist import run_vist

    opts = fill_options(VistOptions, params, "checkpoint")
    finish(run_vist(opts), opts)


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
    from vlmtrain.eval.options import VisdialOptions
    from vlmtrain.eval.tasks.visdial import run_visdial

    opts = fill_options(VisdialOptions, params, "checkpoint")
    finish(run_visdial(opts), opts)
