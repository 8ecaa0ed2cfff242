"""`vlmtrain eval caption | vqa | text-vqa | oven | llava`: the tasks that score generated text
(captions, answers, entity names) against references; cli/train_eval.py holds the group and the
retrieval tasks. Same rules as there: each command fills its task's options object and hands it
to the task's `run_*`."""

from __future__ import annotations

from typing import Any

import click

from cli.common import handle_errors
from cli.eval_options import (
    CKPT,
    DATA,
    IN_DIR,
    IN_PATH,
    OUT_FILE,
    SAVE,
    SPLIT_HELP,
    defaults_from,
    fill_options,
    finish,
    input_file,
    metric_names,
    need,
    number,
    records_split,
    run_options,
    split_option,
)
from vlmtrain.eval.options import (
    CaptionOptions,
    LlavaOptions,
    OvenOptions,
    TextVqaOptions,
    VqaOptions,
)


@defaults_from(CaptionOptions)
@click.command("caption")
@CKPT
@DATA
@input_file(
    "--predictions", help='COCO results JSON [{"image_id"|"key", "caption"}] instead of a model.'
)
@split_option(f"Index split to score {SPLIT_HELP}.")
@click.option(
    "--metrics",
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
    from vlmtrain.eval.tasks.caption import run_caption

    opts = fill_options(CaptionOptions, params, "data")
    finish(run_caption(opts), opts)


@defaults_from(VqaOptions)
@click.command("vqa")
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


@defaults_from(TextVqaOptions)
@click.command("text-vqa")
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
    callback=metric_names(("accuracy", "anls", "containment")),
    help="Comma list of accuracy (TextVQA), anls, containment. Default: TextVQA "
    "accuracy,containment; ST-VQA and DocVQA anls,containment; OCR-VQA containment.",
)
@click.option("--prompt")
@number("--max-new-tokens")
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


@defaults_from(OvenOptions)
@click.command("oven")
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
@number("--beams")
@number("--max-new-tokens")
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
    from vlmtrain.eval.tasks.oven import run_oven

    opts = fill_options(OvenOptions, params)
    finish(run_oven(opts), opts)


@defaults_from(LlavaOptions)
@click.command("llava")
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
@click.option("--model-id", help="model_id field (default: checkpoint name).")
@number("--max-new-tokens")
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
    from vlmtrain.eval.tasks.llava import run_llava

    opts = fill_options(LlavaOptions, params, "checkpoint")
    finish(run_llava(opts), opts)


COMMANDS = [caption, vqa, text_vqa, oven, llava]
