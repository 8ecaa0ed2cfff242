"""`vlmtrain eval TASK`: the benchmarks of the recipes, one command each.

Parsing, progress and exit codes only; the work is in vlmtrain.eval (imported inside commands so
`vlmtrain --help` stays light).
"""

from __future__ import annotations

import click

from cli.common import checked_device, handle_errors

CKPT = click.option(
    "--checkpoint", type=click.Path(exists=True), help="Training run dir or export dir."
)
DATA = click.option(
    "--data",
    "data_dir",
    type=click.Path(exists=True, file_okay=False),
    help="A `vlmdata shard` output folder (index/index.parquet + shards/).",
)
_JSON = click.option(
    "-o",
    "--output",
    "--out",
    "output",
    type=click.Path(dir_okay=False),
    help="Write the JSON report here.",
)
_HTML_KEY = "vlm_eval_html"


def _keep_html(ctx, param, value):
    ctx.meta[_HTML_KEY] = value
    return value


_HTML = click.option(
    "--html",
    type=click.Path(dir_okay=False),
    expose_value=False,
    callback=_keep_html,
    help="Also write the report as a self-contained HTML page (metrics, config; for retrieval "
    "a few queries with their top-5 images marked right/wrong).",
)


def OUT(fn):  # used as @OUT, like the other shared options
    """-o JSON report and --html page."""
    return _JSON(_HTML(fn))


DEFAULT_SPLIT = "val"  # the split one tunes on; a paper's test figure is asked for by name
SPLIT_HELP = "(val, the split one tunes on; --split test for a paper's test figure)"
SPLIT = click.option(
    "--split", default=DEFAULT_SPLIT, show_default=True, help=f"Index split to score {SPLIT_HELP}."
)
BATCH = click.option("--batch-size", default=16, show_default=True, help="Prompts per batch.")
LIMIT = click.option("--limit", type=int, help="Only the first N queries/items (smoke runs).")
DEVICE = click.option(
    "--device",
    callback=checked_device,
    help="cpu, cuda, cuda:1 ... (default: cuda when available).",
)
QUIET = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
SAVE = click.option(
    "--save-predictions", type=click.Path(dir_okay=False), help="Also write the predictions."
)
SAVE_RANKED = click.option(
    "--save-predictions",
    type=click.Path(dir_okay=False),
    help="Also write JSONL, a line per query: {direction, key, query, answers, ranked, rank} "
    "(a text's key is IMAGEKEY#i; rank 0: not retrieved).",
)


def _metric_names(known: tuple[str, ...]):
    """A --metrics callback: every comma-separated name must be one of `known` (a typo is a
    usage error naming the closest metric, exit 2, before any model or file is loaded)."""
    import difflib

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        for name in (m.strip() for m in (value or "").split(",") if m.strip()):
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1, cutoff=0.4)
                hint = f"did you mean {close[0]}? " if close else ""
                raise click.BadParameter(f"unknown metric {name!r}: {hint}choose from "
                                         f"{', '.join(known)}", ctx, param)  # fmt: skip
        return value

    return check


def _finish(report, output: str | None) -> None:
    click.echo(report.table())
    if output:
        report.write(output)
        click.echo(f"report: {output}")
    html = click.get_current_context().meta.get(_HTML_KEY)
    if html:
        from vlmtrain.eval.html_report import write_html_report

        write_html_report(report, html)
        click.echo(f"html report: {html}")


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
    type=click.Path(exists=True),
    help="Trie over the test identifiers (vlmdata build-trie --split test).",
)
@click.option(
    "--ids",
    "ids_path",
    required=True,
    type=click.Path(exists=True),
    help="ids.parquet the trie was built from.",
)
@SPLIT
@click.option("--beams", default=10, show_default=True)
@click.option("--returns", default=10, show_default=True, help="Sequences kept per query.")
@click.option(
    "--length-penalty", default=-2.0, show_default=True, help="Beam score / length^p (GRACE: -2)."
)
@BATCH
@LIMIT
@SAVE_RANKED
@OUT
@DEVICE
@QUIET
@handle_errors
def retrieval_generative(
    checkpoint,
    data_dir,
    trie_path,
    ids_path,
    split,
    beams,
    returns,
    length_penalty,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    _need(checkpoint=checkpoint, data=data_dir)
    report = run_generative_retrieval(
        data_dir,
        checkpoint=checkpoint,
        trie_path=trie_path,
        ids_path=ids_path,
        split=split,
        beams=beams,
        returns=returns,
        batch_size=batch_size,
        length_penalty=length_penalty,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("retrieval-embedding")
@CKPT
@DATA
@SPLIT
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
@BATCH
@LIMIT
@SAVE_RANKED
@OUT
@DEVICE
@QUIET
@handle_errors
def retrieval_embedding(
    checkpoint,
    data_dir,
    split,
    encoder,
    clip_model,
    clip_pretrained,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    _need(data=data_dir)
    if encoder == "model":
        _need(checkpoint=checkpoint)
    report = run_embedding_retrieval(
        data_dir,
        checkpoint=checkpoint,
        split=split,
        encoder=encoder,
        clip_model=clip_model,
        clip_pretrained=clip_pretrained,
        batch_size=batch_size,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("caption")
@CKPT
@DATA
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False),
    help='COCO results JSON [{"image_id"|"key", "caption"}] instead of a model.',
)
@SPLIT
@click.option(
    "--metrics",
    default="BLEU-4,METEOR,ROUGE-L,CIDEr-D",
    show_default=True,
    callback=_metric_names(
        ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr-D")
    ),
    help="Comma list of BLEU-1..4, METEOR, ROUGE-L, CIDEr-D.",
)
@click.option("--beams", type=int, help="1 = greedy. [default: the recipe's decoding, else 1]")
@click.option("--max-new-tokens", type=int, help="[default: the recipe's decoding, else 30]")
@click.option(
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
@BATCH
@LIMIT
@SAVE
@OUT
@DEVICE
@QUIET
@handle_errors
def caption(
    checkpoint,
    data_dir,
    predictions,
    split,
    metrics,
    beams,
    max_new_tokens,
    length_penalty,
    image_attention,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    _need(data=data_dir)
    report = run_caption(
        data_dir,
        checkpoint=checkpoint,
        predictions=predictions,
        split=split,
        metrics=[m.strip() for m in metrics.split(",") if m.strip()],
        beams=beams,
        max_new_tokens=max_new_tokens,
        length_penalty=length_penalty,
        image_attention=image_attention,
        batch_size=batch_size,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("vqa")
@CKPT
@DATA
@click.option(
    "--questions",
    type=click.Path(exists=True, dir_okay=False),
    help="Official v2_OpenEnded_mscoco_*_questions.json (default: the records in --data).",
)
@click.option(
    "--annotations",
    type=click.Path(exists=True, dir_okay=False),
    help="Official v2_mscoco_*_annotations.json (with --questions).",
)
@click.option(
    "--split",
    default=DEFAULT_SPLIT,
    show_default=True,
    help=f"Records' split, without --questions {SPLIT_HELP}.",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False),
    help='Results JSON [{"question_id", "answer"}] instead of a model.',
)
@click.option(
    "--prompt",
    help="Question prompt with {question}. [default: a caption recipe's question_prompt, else "
    "'Question: {question} Answer:']",
)
@click.option(
    "--submission",
    type=click.Path(dir_okay=False),
    help="Write EvalAI's results JSON [{question_id, answer}] answering EVERY question of "
    "--questions (or of --split's records), annotated or not, instead of scoring.",
)
@click.option(
    "--vqa-script",
    type=click.Choice(["2021", "2016"]),
    default="2021",
    show_default=True,
    help="Version of the official vqaEval.py to reproduce: 2021 (a013f00, current) or 2016 "
    "(458a8b2); published VQAv2 numbers come from both.",
)
@click.option("--max-new-tokens", type=int, help="[default: a caption recipe's, else 10]")
@click.option("--beams", type=int, help="[default: a caption recipe's decoding, else 1]")
@click.option("--length-penalty", type=float, help="[default: a caption recipe's, else 1.0]")
@BATCH
@LIMIT
@SAVE
@OUT
@DEVICE
@QUIET
@handle_errors
def vqa(
    checkpoint,
    data_dir,
    questions,
    annotations,
    split,
    predictions,
    prompt,
    submission,
    vqa_script,
    max_new_tokens,
    beams,
    length_penalty,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    if submission:
        if annotations or predictions or save_predictions:
            raise click.UsageError(
                "--submission answers with a model and scores nothing: leave out "
                "--annotations, --predictions and --save-predictions"
            )
        _need(data=data_dir)
        report = write_submission(
            submission, data_dir=data_dir, questions=questions,
            split=split, checkpoint=checkpoint, prompt=prompt,
            max_new_tokens=max_new_tokens, beams=beams, length_penalty=length_penalty,
            batch_size=batch_size, limit=limit, device=device, progress=not quiet,
        )  # fmt: skip
        click.echo(f"submission: {submission}")
        return _finish(report, output)
    report = run_vqa(
        questions=questions,
        annotations=annotations,
        split=split,
        predictions=predictions,
        checkpoint=checkpoint,
        data_dir=data_dir,
        prompt=prompt,
        script=vqa_script,
        max_new_tokens=max_new_tokens,
        beams=beams,
        length_penalty=length_penalty,
        batch_size=batch_size,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("text-vqa")
@CKPT
@click.option(
    "--dataset",
    required=True,
    type=click.Choice(["textvqa", "stvqa", "docvqa", "ocrvqa"]),
    help="Which published annotation format --annotations is in.",
)
@click.option(
    "--annotations",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="TextVQA_0.5.1_val.json, ST-VQA train_task_3.json, DocVQA val_v1.0.json, OCR-VQA "
    "dataset.json ...",
)
@click.option(
    "--split",
    type=click.Choice(["train", "val", "test"]),
    default=DEFAULT_SPLIT,
    show_default=True,
    help=f"OCR-VQA only: the split of dataset.json to score {SPLIT_HELP}; question ids: "
    "IMAGEID_INDEX.",
)
@click.option(
    "--predictions",
    type=click.Path(exists=True, dir_okay=False),
    help='Submission JSON [{"question_id" (DocVQA: "questionId"), "answer"}] instead of a model.',
)
@click.option(
    "--image-folder",
    type=click.Path(exists=True, file_okay=False),
    help="With --checkpoint: the data set's images (TextVQA: {image_id}.jpg; ST-VQA: "
    "file_path; DocVQA: image; OCR-VQA: {image_id} + imageURL's extension).",
)
@click.option(
    "--metrics",
    default=None,
    callback=_metric_names(("accuracy", "anls", "containment")),
    help="Comma list of accuracy (TextVQA), anls, containment. Default: TextVQA "
    "accuracy,containment; ST-VQA and DocVQA anls,containment; OCR-VQA containment.",
)
@click.option("--prompt", default="Question: {question} Answer:", show_default=True)
@click.option("--max-new-tokens", default=16, show_default=True)
@BATCH
@LIMIT
@SAVE
@OUT
@DEVICE
@QUIET
@handle_errors
def text_vqa(
    checkpoint,
    dataset,
    annotations,
    split,
    predictions,
    image_folder,
    metrics,
    prompt,
    max_new_tokens,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    report = run_text_vqa(
        dataset=dataset,
        annotations=annotations,
        predictions=predictions,
        checkpoint=checkpoint,
        image_folder=image_folder,
        split=split,
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()) if metrics else None,
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("oven")
@CKPT
@DATA
@click.option(
    "--references",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="OVEN annotation JSONL (repeat for query and entity splits); default: the "
    "index rows of --data.",
)
@click.option(
    "--split",
    "--split-prefix",
    "split_prefix",
    default=DEFAULT_SPLIT,
    show_default=True,
    help="With --data: the OVEN splits to score, by a word of their names (val: query_val_seen, "
    "query_val_unseen, entity_val_seen, entity_val_unseen; query_val: the query family).",
)
@click.option(
    "--predictions",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL {data_id, pred_entity_id} (repeatable) instead of a model.",
)
@click.option(
    "--trie",
    "trie_path",
    type=click.Path(exists=True),
    help="Entity-name trie (vlmdata build-trie --entities).",
)
@click.option("--entities", type=click.Path(exists=True), help="entities.parquet of the trie.")
@click.option(
    "--candidates",
    type=click.Path(exists=True),
    help="JSONL {data_id, candidates: [entity_id...]}: each example decodes among its own "
    "candidates (every entity of theirs, a batch at a time); none listed: the whole trie.",
)
@click.option(
    "--retrieve",
    type=click.IntRange(min=1),
    help="AutoVER: each query decodes among the K entities nearest to its <ret> embedding "
    "(the KB embedded once by the checkpoint's entity side; the report gives recall@K).",
)
@click.option(
    "--kb-cache",
    type=click.Path(file_okay=False),
    help="With --retrieve: folder of the cached KB embeddings (default: kb-embeddings/ next "
    "to --entities).",
)
@click.option(
    "--kb-images",
    type=click.Path(exists=True, file_okay=False),
    help="With --retrieve: the KB image shards (keys wiki_QID; default: the recipe's kb_images).",
)
@click.option(
    "--save-candidates",
    type=click.Path(dir_okay=False),
    help="With --retrieve: write the retrieved candidates here (the --candidates format).",
)
@click.option("--beams", default=5, show_default=True)
@click.option("--max-new-tokens", default=32, show_default=True)
@BATCH
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    help="Only the first N references of each split (smoke runs; keeps seen and unseen).",
)
@SAVE
@OUT
@DEVICE
@QUIET
@handle_errors
def oven(
    checkpoint,
    data_dir,
    references,
    split_prefix,
    predictions,
    trie_path,
    entities,
    candidates,
    retrieve,
    kb_cache,
    kb_images,
    save_candidates,
    beams,
    max_new_tokens,
    batch_size,
    limit,
    save_predictions,
    output,
    device,
    quiet,
):
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

    report = run_oven(
        references=references,
        data_dir=data_dir,
        split_prefix=split_prefix,
        predictions=predictions,
        checkpoint=checkpoint,
        trie=trie_path,
        entities=entities,
        candidates=candidates,
        retrieve=retrieve,
        kb_cache=kb_cache,
        kb_images=kb_images,
        save_candidates=save_candidates,
        beams=beams,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        limit=limit,
        save_predictions=save_predictions,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


@eval_cmd.command("llava")
@CKPT
@DATA
@click.option(
    "--questions",
    type=click.Path(exists=True, dir_okay=False),
    help="JSONL {question_id, image, text[, answer]} (default: the LLaVA records in --data).",
)
@click.option("--image-folder", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--split",
    default=DEFAULT_SPLIT,
    show_default=True,
    help=f"Records' split, without --questions {SPLIT_HELP}.",
)
@click.option(
    "--answers",
    "answers_file",
    required=True,
    type=click.Path(dir_okay=False),
    help="Answers JSONL to write (LLaVA model_vqa format).",
)
@click.option("--model-id", default=None, help="model_id field (default: checkpoint name).")
@click.option("--max-new-tokens", default=128, show_default=True)
@BATCH
@LIMIT
@OUT
@DEVICE
@QUIET
@handle_errors
def llava(
    checkpoint,
    data_dir,
    questions,
    image_folder,
    split,
    answers_file,
    model_id,
    max_new_tokens,
    batch_size,
    limit,
    output,
    device,
    quiet,
):
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

    _need(checkpoint=checkpoint)
    report = run_llava(
        checkpoint=checkpoint,
        questions=questions,
        image_folder=image_folder,
        data_dir=data_dir,
        split=split,
        answers_file=answers_file,
        model_id=model_id,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        limit=limit,
        device=device,
        progress=not quiet,
    )
    _finish(report, output)


IMAGES = click.option(
    "--images",
    "images_dir",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="Folder of the benchmark's images (VIST: <photo id>.jpg; VisDial: "
    "VisualDialog_val2018_<12-digit id>.jpg).",
)


@eval_cmd.command("vist")
@CKPT
@click.option(
    "--stories",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="VIST SIS file (sis/val.story-in-sequence.json).",
)
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
    default=True,
    show_default=True,
    help="Interleave the earlier images with the captions (the paper's '5 captions, 4 images').",
)
@BATCH
@LIMIT
@OUT
@DEVICE
@QUIET
@handle_errors
def vist(checkpoint, stories, images_dir, captions, images_in_context, batch_size, limit,
         output, device, quiet):  # fmt: skip
    """FROMAGe's VIST contextual image retrieval: Recall@1/5/10 of each story's last image.

    As kohjingyu/fromage evals/eval_vist_retrieval.py: story context of captions and earlier
    images then [RET]; candidates every image the stories use; earlier images excluded.

    \b
      vlmtrain eval vist --checkpoint runs/fromage --stories sis/val.story-in-sequence.json \\
          --images vist/val/ -o vist.json
    """
    from vlmtrain.eval.tasks.vist import run_vist

    _need(checkpoint=checkpoint)
    report = run_vist(stories, images_dir, checkpoint=checkpoint, captions=captions,
                      with_images=images_in_context, limit=limit, batch_size=batch_size,
                      device=device, progress=not quiet)  # fmt: skip
    _finish(report, output)


@eval_cmd.command("visdial")
@CKPT
@click.option(
    "--dialogs",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="VisDial 1.0 file (visdial_1.0_val.json).",
)
@IMAGES
@BATCH
@LIMIT
@OUT
@DEVICE
@QUIET
@handle_errors
def visdial(checkpoint, dialogs, images_dir, batch_size, limit, output, device, quiet):
    """FROMAGe's VisDial retrieval: a dialog's "Q: ..? A: ..." rounds + [RET] against images.

    recall@K is the published script's figure (each image ranks the dialogs); t2i_recall@K
    is the paper's stated direction (each dialog ranks the images).

    \b
      vlmtrain eval visdial --checkpoint runs/fromage --dialogs visdial_1.0_val.json \\
          --images VisualDialog_val2018/ -o visdial.json
    """
    from vlmtrain.eval.tasks.visdial import run_visdial

    _need(checkpoint=checkpoint)
    report = run_visdial(dialogs, images_dir, checkpoint=checkpoint, limit=limit,
                         batch_size=batch_size, device=device, progress=not quiet)  # fmt: skip
    _finish(report, output)


def _need(**options) -> None:
    missing = [f"--{k}" for k, v in options.items() if not v]
    if missing:
        raise click.UsageError(f"this task needs {' and '.join(missing)}")
