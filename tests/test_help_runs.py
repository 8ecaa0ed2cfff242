"""Every `--help` example that tests/test_readme_runs.py's HELP_RUN does not run is run here AS
WRITTEN (the exact text, read from the help pages) on tiny generated inputs named as the pages
name them, each checked for its exit status and one concrete output; the rest are listed in
HELP_NOT_RUN with the reason, and every example is run or listed."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main as vlmdata
from tests.eval.test_fromage_protocols import sis_file, visdial_file
from tests.records.conftest import vqav2
from tests.test_documented_examples import help_examples
from tests.test_readme_runs import HELP_RUN, _make_inputs, run_help
from tests.train_loop.conftest import CONFIGS, data_overrides, dataset  # noqa: F401 (fixture)
from vlmdata.core import layout

pytestmark = pytest.mark.slow

# --help example (a unique part of its text) -> why a test does not run it
HELP_NOT_RUN = {
    "download cc3m Validation": "fetches URLs from the internet (tests/shards/test_download*.py "
    "run download on a loopback server)",
    "download coco captions_val2014": "fetches URLs from the internet",
    "--distributor pyspark": "needs Spark (and, for laion, an S3 bucket)",
    "s3://bucket/": "needs an S3 bucket (tests/shards/test_storage.py: moto)",
    "embed shards/ --model ./my-clip/ --device cuda": "needs a GPU",
    "ViT-B-32-openai.safetensors": "needs the 350 MB ViT-B-32 weights file (tests/"
    "test_clip_source.py embeds with a tiny local-dir CLIP)",
    "--clip-pretrained ~/ckpt/vit-b-32.pt": "needs the ViT-B-32 weights file",
    "--accelerator cuda": "launches DeepSpeed over ssh on CUDA hosts",
    "--num-gpus": "needs GPUs",
    "ingest-img2dataset cc3m-img2dataset/": "needs an img2dataset download (tests/shards/"
    "test_ingest.py runs img2dataset on a loopback server and ingests all three formats)",
    "eval oven --checkpoint runs/autover": "run as written by tests/eval/test_oven_retrieve.py"
    "::test_help_examples_with_a_checkpoint_run_as_written (tiny AutoVER export, OVEN shards, "
    "1,000-entity KB, its trie and KB image shards)",
}

RUN = [  # run here, in this order (a unique part of each)
    "manifest karpathy demo-data/dataset_demo.json -o work/",
    "shard work/manifest/manifest.parquet --images demo-data/images -o shards/",
    "vlmdata get shards/ flickr30k_0",
    "vlmdata view shards/ -o shards.html",
    "--kmeans grace --embeddings emb.npy",
    "build-trie --ids ids.parquet --tokenizer runs/grace/export/tokenizer",
    "build-trie --entities oven/entities.parquet",
    "download flickr30k dataset_flickr30k.json",
    "filter-urls Train_GCC-training.tsv --format cc3m -o cc3m/",
    "view cc3m/ -o cc3m.html",
    "filter-urls work/oven-kb/manifest/manifest.parquet",
    "manifest karpathy dataset_coco.json --restval skip -o work/coco",
    "shard coco/manifest/manifest.parquet --images coco_images/ -o out/",
    "eval retrieval-embedding --encoder clip --clip-model local-dir:clip/ --data out/",
    "eval caption --predictions captions.json --data coco/ --split test -o cap.json",
    "eval caption --predictions results.json --data coco/ --split test --metrics CIDEr-D",
    "vlmtrain eval vqa --predictions answers.json --questions q.json --annotations a.json",
    "eval text-vqa --dataset textvqa",
    "vlmdata demo demo-data/",
    "vlmdata demo demo-data/ --tokenizer demo-data/tok --clip demo-data/clip",
]


def test_every_help_example_is_run_or_said_why_not():
    for e in sorted({e for _, e in help_examples()}):
        run_by = [p for p in HELP_RUN if p in e]
        if run_by:
            continue
        hits = [p for p in [*RUN, *GRACE_RUN, *TRAINED_RUN, *HELP_NOT_RUN] if p in e]
        assert hits, f"--help example neither run nor listed with a reason: {e}"


GRACE_RUN = [  # run on a GRACE run trained here for 2 steps (runs/grace links to it)
    "build-trie --ids ids.parquet --tokenizer runs/grace/export/tokenizer",
    "--checkpoint runs/grace --data flickr30k/",
    "--checkpoint runs/grace --data out/",
    "--checkpoint runs/grace --data shards/",
    "vlmtrain plot runs/grace",
    "vlmtrain plot runs/grace -o /tmp/grace-plots",
]
TRAINED_RUN = [  # run on fromage_tiny / caption_tiny runs trained here for 2 steps
    "eval retrieval-embedding --checkpoint runs/fromage --data coco/ --split test  -o r.json",
    "eval caption --checkpoint runs/caption --data coco/ --split test --beams 3  -o cap.json",
    "eval vqa --checkpoint runs/caption --data coco_val/ --questions q.json",
    "eval vqa --checkpoint runs/caption --data vqav2_val/ --split val -o vqa.json",
    "--data coco_test2015/",
    "--image-folder images/ --answers answers.jsonl -o llava.json",
    "--questions questions.jsonl  --data llava-shards/ --answers answers.jsonl",
    "eval llava --checkpoint runs/llava --data llava-shards/ --split train",
    "--checkpoint runs/llavar --image-folder docvqa/val -o docvqa.json",
    "vlmdata demo-report demo-out/shards",
    "launch runs/grace/config.yaml --resume",
    "--stories sis/val.story-in-sequence.json  --images vist/val/ -o vist.json",
    "--stories val.story-in-sequence.json  --images vist/ -o vist.json",
    "eval visdial --checkpoint runs/fromage",
    "launch examples/configs/grace_tiny.yaml data.shards=shards/",
]


def _ok(*args: str) -> None:
    res = CliRunner().invoke(vlmdata, list(args))
    assert res.exit_code == 0, res.output


def test_help_examples_run_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fresh").mkdir()
    _make_inputs(tmp_path)  # the README's inputs (demo-data/ with 40 images, tok/, ...)
    run_help(RUN[0])
    assert pl.read_parquet(f"work/{layout.MANIFEST}").height == 40
    run_help(HELP_RUN[1])  # flickr30k's keys (flickr30k_N) over the same image files
    run_help(RUN[1])
    assert pl.read_parquet(f"shards/{layout.INDEX}").height == 40
    assert "flickr30k_0" in run_help(RUN[2]).output  # printed, nothing written
    run_help(RUN[3])
    assert Path("shards.html").read_text().count("<img") >= 12
    _ids_and_tries()
    _sources()
    _coco_and_evals()
    _answer_files()
    monkeypatch.chdir(tmp_path / "fresh")  # demo writes demo-data/: here a new folder
    run_help(RUN[18])
    assert len(list(Path("demo-data/images").iterdir())) == 3000  # the default --images
    run_help(RUN[19])
    assert Path("demo-data/tok/tokenizer.json").exists()
    assert any(Path("demo-data/clip").iterdir())


def _ids_and_tries() -> None:
    emb = np.random.default_rng(0).standard_normal((40, 16)).astype(np.float32)
    np.save("emb.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    run_help(RUN[4])
    assert pl.read_parquet("ids.parquet").height == 40
    assert Path("tok-ids/tokenizer.json").exists()
    # a GRACE run's export/tokenizer is tok/ plus the id tokens: tok-ids/ stands in for it
    Path("runs/grace/export").mkdir(parents=True)
    Path("runs/grace/export/tokenizer").symlink_to(Path("tok-ids").resolve())
    run_help(RUN[5])
    assert Path("test.trie").stat().st_size > 0
    _ok("manifest", "oven-kb", "Wiki6M_ver_1_0.jsonl", "-o", "oven/")
    run_help(RUN[6])
    assert Path("entities.trie").stat().st_size > 0


def _sources() -> None:
    run_help(RUN[7])  # a local image folder: copied, nothing fetched
    assert pl.read_parquet(f"f30k/{layout.MANIFEST}").height == 40
    run_help(RUN[8])
    assert pl.read_parquet(f"cc3m/{layout.MANIFEST}").height == 2
    # view's cc3m/ is a shard folder, sharded from cc3m-images/: made here from the f30k files
    shutil.move("cc3m", "cc3m-urls")
    shutil.copytree("flickr30k-images", "cc3m-images")
    _ok("shard", f"f30k/{layout.MANIFEST}", "--images", "cc3m-images", "-o", "cc3m", "-q")
    run_help(RUN[9])
    assert Path("cc3m.html").read_text().count("<img") >= 12
    _ok("manifest", "oven-kb", "Wiki6M_ver_1_0.jsonl", "-o", "work/oven-kb")
    run_help(RUN[10])
    assert pl.read_parquet(f"work/oven-kb-clean/{layout.MANIFEST}").height == 3


def _coco_and_evals() -> None:
    """COCO-named inputs: 80 px images (the example's --min-side 64 keeps them) and a Karpathy
    file (cs.stanford.edu/people/karpathy/deepimagesent: {"images": [{"split", "filename",
    "sentences": [{"raw"}]}], "dataset"}) with one restval image that --restval skip drops."""
    _ok("demo", "cocogen", "--images", "20", "--test", "5", "--val", "5", "--size", "80",
        "--clip", "clip", "-q")  # fmt: skip
    shutil.copytree("cocogen/images", "coco_images")
    data = json.loads(Path("cocogen/dataset_demo.json").read_text())
    [*data["images"][-1:]][0]["split"] = "restval"
    Path("dataset_coco.json").write_text(json.dumps({**data, "dataset": "coco"}))
    run_help(RUN[11])
    assert pl.read_parquet(f"work/coco/{layout.MANIFEST}").height == 19
    shutil.rmtree("coco")  # the README inputs' VQAv2 images: the example's coco/ is COCO's
    shutil.copytree("work/coco", "coco")
    run_help(RUN[12])
    index = pl.read_parquet(f"out/{layout.INDEX}")
    assert index.height == 19
    out = run_help(RUN[13]).output  # the test split: 5 images, 25 captions
    # with 5 candidate images any ranking puts the right one in the top 5
    assert re.search(r"t2i_recall@5\s+1\.0000\s+25\n", out), out
    shutil.move("coco", "coco-manifest")  # the caption examples' coco/ is a shard folder
    Path("coco").symlink_to(Path("out").resolve())
    test = index.filter(pl.col("split") == "test")
    # COCO results format: [{"image_id", "caption"}]; each prediction is its first reference
    preds = [
        {"image_id": int(i), "caption": t[0]}
        for i, t in zip(test["image_id"], test["texts"], strict=True)
    ]
    for name in ("captions.json", "results.json"):
        Path(name).write_text(json.dumps(preds))
    run_help(RUN[14])
    values = {m["metric"]: m["value"] for m in json.loads(Path("cap.json").read_text())["metrics"]}
    assert values["BLEU-4"] == pytest.approx(1.0, abs=1e-6)
    assert "CIDEr-D" in run_help(RUN[15]).output


def _answer_files() -> None:
    assert "accuracy" in run_help(RUN[16]).output

    # TextVQA_0.5.1_val.json (textvqa.org) for answers.json's question ids 10 and 11
    def rec(qid: int, answers: list[str]) -> dict:
        return {"question": "what is it?", "image_id": f"img{qid}", "answers": answers,
                "question_id": qid, "set_name": "val"}  # fmt: skip

    Path("TextVQA_0.5.1_val.json").write_text(json.dumps({
        "dataset_type": "val", "dataset_name": "textvqa", "dataset_version": "0.5.1",
        "data": [rec(10, ["yes"] * 10), rec(11, ["two"] * 3 + ["2"] * 7)]}))  # fmt: skip
    run_help(RUN[17])
    values = {
        m["metric"]: m["value"] for m in json.loads(Path("textvqa.json").read_text())["metrics"]
    }
    # "yes": 10 of 10 humans; "two" is read as "2", which all 10 gave: min(1, n/3) = 1 each
    assert values == {"accuracy": 1.0, "containment": 1.0}


@pytest.fixture(scope="module")
def trained_runs(dataset, tmp_path_factory, monkeypatch_module):  # noqa: F811
    """grace_tiny, fromage_tiny and caption_tiny.yaml trained for 2 steps each in this process
    (one CPU rank) on the train-loop tests' generated shards and tokenizer, with ids written by
    `vlmdata build-ids`: real run folders (config, export, metrics, plots)."""
    from vlmdata.core.net import free_port
    from vlmtrain.train.config import load_config
    from vlmtrain.train.trainer import Run, setup_distributed

    monkeypatch_module.setenv("DS_ACCELERATOR", "cpu")
    for k, v in dict(RANK="0", LOCAL_RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1").items():
        monkeypatch_module.setenv(k, v)
    monkeypatch_module.setenv("MASTER_PORT", str(free_port()))
    root = tmp_path_factory.mktemp("grace")
    ids = root / "ids.parquet"  # ids as `vlmdata build-ids` writes them
    _ok("build-ids", str(dataset["shards"]), "--scheme", "numeric", "--seed", "0",
        "--tokenizer", str(dataset["tokenizer"]), "-o", str(ids))  # fmt: skip
    runs = {}
    configs = {"grace": "grace_tiny", "fromage": "fromage_tiny", "caption": "caption_tiny",
               "llava": "llava_stage1_tiny"}  # fmt: skip
    for name, config in configs.items():
        runs[name] = root / name
        extra = ["log.progress=false", "schedule.max_steps=2", f"data.ids={ids}"]
        overrides = data_overrides(dataset, runs[name]) + extra
        Run(load_config(CONFIGS / f"{config}.yaml", overrides), *setup_distributed()).train()
    return runs, ids


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_help_examples_on_trained_runs(trained_runs, dataset, tmp_path, monkeypatch):  # noqa: F811
    runs, ids = trained_runs
    grace_run = runs["grace"]
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    for name, run in runs.items():
        Path("runs", name).symlink_to(run)
    Path("ids.parquet").symlink_to(ids)
    for name in ("shards", "flickr30k", "out", "coco"):  # the examples' names for the run's shards
        Path(name).symlink_to(dataset["shards"])
    run_help(GRACE_RUN[0])
    assert Path("test.trie").stat().st_size > 0
    for part in GRACE_RUN[1:4]:
        run_help(part)
    for report in ("grace.json", "report.json"):
        metrics = json.loads(Path(report).read_text())["metrics"]
        counts = {m["metric"]: m["count"] for m in metrics}
        assert counts["recall@1"] == 8, metrics  # 4 test images x 2 captions as queries
    run_help(GRACE_RUN[4])
    assert (grace_run / "plots" / "loss.png").stat().st_size > 0
    shutil.rmtree("/tmp/grace-plots", ignore_errors=True)
    run_help(GRACE_RUN[5])
    assert (Path("/tmp/grace-plots") / "loss.png").stat().st_size > 0
    shutil.rmtree("/tmp/grace-plots", ignore_errors=True)
    out = run_help(TRAINED_RUN[0]).output
    metrics = json.loads(Path("r.json").read_text())["metrics"]
    assert {m["metric"]: m["count"] for m in metrics}["t2i_recall@1"] == 8, out
    run_help(TRAINED_RUN[1])
    metrics = json.loads(Path("cap.json").read_text())["metrics"]
    assert {m["count"] for m in metrics} == {4}, metrics  # one caption per test image
    _demo_report(dataset)
    _vqa_on_the_captioner()
    _llava(dataset)
    _vist_and_visdial()
    # grace_tiny.yaml launched as written (its 12 steps) in a folder of its own: examples/ is
    # the repository's, shards/ ids.parquet tok/ the train-loop data, runs/grace is new
    Path("launch").mkdir()
    monkeypatch.chdir("launch")
    Path("examples").symlink_to(CONFIGS.parent)
    Path("shards").symlink_to(dataset["shards"])
    Path("ids.parquet").symlink_to(ids)
    Path("tok").symlink_to(dataset["tokenizer"])
    run_help(TRAINED_RUN[14])
    assert Path("runs/grace/metrics.jsonl").read_text().count("\n") == 12
    assert Path("runs/grace/export/model.safetensors").stat().st_size > 0
    # launch writes OUTPUT_DIR/config.yaml, the in-process Run does not: the export holds the
    # same resolved config. The run is at its max_steps: resume loads step 2 and trains none.
    shutil.copy(grace_run / "export" / "config.yaml", grace_run / "config.yaml")
    steps = (grace_run / "metrics.jsonl").read_text().count("\n")
    run_help(TRAINED_RUN[10])
    assert json.loads((grace_run / "export" / "export.json").read_text())["step"] == 2
    assert (grace_run / "metrics.jsonl").read_text().count("\n") == steps


def _vqa_on_the_captioner() -> None:
    """VQAv2 records (tests/records/conftest.py vqav2: 12 questions on 3 COCO images) as val
    shards: coco_val/ and vqav2_val/ are that folder; q.json/a.json its question/answer pair."""
    Path("v").mkdir()
    case = vqav2(Path("v"))
    q, a = case.inputs
    _ok("manifest", "vqav2", str(q), str(a), "--split", "val", "-o", "v/work")
    _ok("shard", f"v/work/{layout.MANIFEST}", "--images", "v/coco", "-o", "vqav2_val", "-q")
    Path("coco_val").symlink_to(Path("vqav2_val").resolve())
    shutil.copy(q, "q.json")
    shutil.copy(a, "a.json")
    for part, n in ((TRAINED_RUN[2], 12), (TRAINED_RUN[3], 12)):
        run_help(part)
        metrics = json.loads(Path("vqa.json").read_text())["metrics"]
        assert {m["metric"]: m["count"] for m in metrics}["accuracy"] == n, metrics
        Path("vqa.json").unlink()
    Path("coco_test2015").symlink_to(Path("vqav2_val").resolve())
    shutil.copy(q, "v2_OpenEnded_mscoco_test2015_questions.json")
    run_help(TRAINED_RUN[4])  # EvalAI's format: [{"question_id", "answer"}], one per question
    rows = json.loads(Path("results.json").read_text())
    assert sorted(r["question_id"] for r in rows) == sorted(
        x["question_id"] for x in json.loads(q.read_text())["questions"]
    )


def _llava(data: dict[str, Path]) -> None:
    """LLaVA's questions JSONL ({question_id, image, text[, answer]}, LLaVA-Bench model_vqa
    input) on three of the train-loop images; llava-shards/ is their shard folder (records
    with LLaVA conversations, 22 in the train split)."""
    Path("images").symlink_to(data["shards"].parent / "images")
    Path("llava-shards").symlink_to(data["shards"])
    qs = [{"question_id": i, "image": f"img{i:03d}.png", "text": "what is shown?",
           "answer": "it is a red circle"} for i in range(3)]  # fmt: skip
    Path("questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    for part, n in ((TRAINED_RUN[5], 3), (TRAINED_RUN[6], 3), (TRAINED_RUN[7], 22)):
        run_help(part)
        answers = Path("answers.jsonl").read_text().splitlines()
        assert len(answers) == n, part
        Path("answers.jsonl").unlink()
    metrics = json.loads(Path("llava.json").read_text())["metrics"]
    assert {m["count"] for m in metrics} == {3}, metrics
    # DocVQA's val_v1.0.json (docvqa.org: {"data": [{"questionId", "question", "answers",
    # "image"}]}) on two train-loop images; the LLaVA run stands in for runs/llavar
    Path("runs/llavar").symlink_to(Path("runs/llava").resolve())
    Path("docvqa/val/documents").mkdir(parents=True)
    recs = []
    for i in range(2):
        shutil.copy(f"images/img{i:03d}.png", f"docvqa/val/documents/d{i}.png")
        recs.append({"questionId": i + 1, "question": "What is shown?",
                     "answers": ["a red circle"], "image": f"documents/d{i}.png"})  # fmt: skip
    Path("val_v1.0.json").write_text(json.dumps({"dataset_name": "docvqa", "data": recs}))
    run_help(TRAINED_RUN[8])
    metrics = json.loads(Path("docvqa.json").read_text())["metrics"]
    assert {m["count"] for m in metrics} == {2}, metrics


def _demo_report(data: dict[str, Path]) -> None:
    """demo-report on the GRACE and FROMAGe reports just written (demo-out/ names them)."""
    Path("demo-out/reports").mkdir(parents=True)
    Path("demo-out/shards").symlink_to(data["shards"])
    shutil.copy("grace.json", "demo-out/reports/grace.json")
    shutil.copy("r.json", "demo-out/reports/fromage.json")
    run_help(TRAINED_RUN[9])
    table = Path("demo-out/results.md").read_text()
    assert "GRACE" in table and "FROMAGe" in table, table


def _vist_and_visdial() -> None:
    """VIST SIS and VisDial 1.0 files as tests/eval/test_fromage_protocols.py writes them (their
    published shapes), over train-loop images, for the 2-step FROMAGe run."""
    stories = {"s1": [(f"p{i}", f"a red circle {i}") for i in range(5)],
               "s2": [(f"p{i}", f"a green square {i}") for i in range(3, 8)]}  # fmt: skip
    Path("sis").mkdir()
    sis_file(Path("sis/val.story-in-sequence.json"), stories)
    shutil.copy("sis/val.story-in-sequence.json", "val.story-in-sequence.json")
    Path("vist/val").mkdir(parents=True)
    for i in range(8):
        shutil.copy(f"images/img{i:03d}.png", f"vist/val/p{i}.png")
        shutil.copy(f"images/img{i:03d}.png", f"vist/p{i}.png")
    for part in TRAINED_RUN[11:13]:
        run_help(part)
        assert json.loads(Path("vist.json").read_text())["details"]["scored"] == 2
        Path("vist.json").unlink()
    dialogs = [(i, [("is it red", "yes"), (f"is it number {i}", "no")]) for i in range(1, 5)]
    visdial_file(Path("visdial_1.0_val.json"), dialogs)
    Path("VisualDialog_val2018").mkdir()
    for i in range(1, 5):
        shutil.copy(
            f"images/img{i:03d}.png", f"VisualDialog_val2018/VisualDialog_val2018_{i:012d}.jpg"
        )
    run_help(TRAINED_RUN[13])
    assert json.loads(Path("visdial.json").read_text())["details"] == {"dialogs": 4}
