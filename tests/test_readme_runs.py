"""README.md's console examples run AS WRITTEN (the exact text, read from README.md) on tiny
generated inputs named as the README names them, each checked for its exit status and its
outputs. Examples that need what a test machine lacks are listed in NOT_RUN with the reason;
every README example is in one list or the other, so a new one must be classified."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main as vlmdata
from cli.vlmtrain import main as vlmtrain
from tests.records.conftest import llava_mix665k, oven_pair, vqav2
from tests.test_documented_examples import readme_examples
from vlmdata.core import layout

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "eval" / "fixtures" / "oven"

# README example (a unique part of its text) -> why a test does not run it
NOT_RUN = {
    "download cc3m Validation": "fetches URLs from the internet (tests/shards/test_download*.py "
    "run download on a loopback server)",
    "download coco captions_val2014": "fetches URLs from the internet",
    "-o s3://bucket/f30k": "needs an S3 bucket and Spark (tests/shards/test_storage.py: moto)",
    "embed f30k/ --model ViT-L-14": "needs a GPU and ViT-L-14 weights; clip.npy is made here",
    "launch examples/configs/grace_tiny.yaml data.shards=f30k/": "trains for minutes "
    "(tests/demo/test_pipeline.py trains grace_tiny.yaml)",
    "llava15_7b_stage2.yaml --num-gpus 8": "needs 8 GPUs and a 7B model",
    "launch runs/grace/config.yaml --resume": "needs a trained run",
    "eval retrieval-generative --checkpoint runs/grace": "needs a trained GRACE run",
    "eval retrieval-embedding --checkpoint runs/fromage": "needs a trained FROMAGe run",
    "eval caption --predictions captions.json --data coco/": "needs COCO shards and Java",
    "eval vqa --checkpoint runs/caption": "needs a trained captioner",
    "eval oven --checkpoint runs/autover": "needs a trained AutoVER run",
    "eval llava --checkpoint runs/llava": "needs a trained LLaVA run",
    "ingest-img2dataset cc3m-img2dataset/": "needs an img2dataset download (tests/shards/"
    "test_ingest.py runs img2dataset on a loopback server and ingests all three formats)",
    "view cc3m/ -o cc3m.html": "needs a downloaded CC3M shard folder (tests/view/ run view)",
    "eval vist --checkpoint runs/fromage": "needs a trained FROMAGe run and VIST's images",
    "eval visdial --checkpoint runs/fromage": "needs a trained FROMAGe run and VisDial's images",
    "eval caption --checkpoint runs/caption-git-base": "needs a trained GIT-mode captioner",
}


def example(part: str) -> list[str]:
    """The one README example containing `part`, as argv."""
    found = [e for e in readme_examples() if part in e]
    assert len(found) == 1, (part, found)
    return shlex.split(found[0])


def run(part: str):
    argv = example(part)
    main = {"vlmdata": vlmdata, "vlmtrain": vlmtrain}[argv[0]]
    res = CliRunner().invoke(main, argv[1:])
    assert res.exit_code == 0, f"{' '.join(argv)}\n{res.output}"
    return res


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A folder holding every input the README names, made small; the examples run in it."""
    ws = tmp_path_factory.mktemp("readme")
    old = os.getcwd()
    os.chdir(ws)
    try:
        _make_inputs(ws)
        yield ws
    finally:
        os.chdir(old)


def _make_inputs(ws: Path) -> None:
    res = CliRunner().invoke(
        vlmdata,
        [
            "demo",
            "demo-data",
            "--images",
            "40",
            "--test",
            "10",
            "--val",
            "10",
            "--size",
            "32",
            "--tokenizer",
            "tok",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output  # fmt: skip
    shutil.copytree("tok", "lm")
    shutil.copytree("demo-data/images", "flickr30k-images")
    data = json.loads(Path("demo-data/dataset_demo.json").read_text())
    Path("dataset_flickr30k.json").write_text(json.dumps({**data, "dataset": "flickr30k"}))
    for name in ("Train_GCC-training.tsv", "Validation_GCC-1.1.0-Validation.tsv"):
        Path(name).write_text("a dog on a beach\thttp://example.com/a.jpg\n"
                              "a red car\thttps://blocked.example.org/b.jpg\n")  # fmt: skip
    Path("blocked_domains.txt").write_text("blocked.example.org\n")
    oven_pair(ws), vqav2(ws), llava_mix665k(ws)
    wiki = [{"wikidata_id": f"Q{100 + i}", "wikipedia_title": f"Entity {i}",
             "wikipedia_content": "text", "wikipedia_image_url": f"http://example.com/{i}.jpg"}
            for i in range(3)]  # fmt: skip
    Path("Wiki6M_ver_1_0.jsonl").write_text("".join(json.dumps(w) + "\n" for w in wiki))
    test = [i for i in data["images"] if i["split"] != "train"]
    Path("pseudo_queries.json").write_text(json.dumps(
        [{"image_id": Path(i["filename"]).stem, "caption": [f"pseudo query {i['imgid']}"],
          "original_caption": ""} for i in test]))  # GRACE keys by file stem  # fmt: skip
    for name in ("oven_query_val.jsonl", "query_preds.jsonl"):
        shutil.copy(FIX / name, name)
    _vqa_files()
    Path("val_v1.0.json").write_text(json.dumps({"data": [
        {"questionId": 1, "question": "What is the date?", "answers": ["1 May 1990"],
         "image": "documents/a.png"},
        {"questionId": 2, "question": "Who signed?", "answers": ["J. Smith", "John Smith"],
         "image": "documents/b.png"}]}))  # fmt: skip
    Path("ans.json").write_text(
        json.dumps(
            [{"questionId": 1, "answer": "1 may 1990"}, {"questionId": 2, "answer": "Jon Smith"}]
        )
    )
    shutil.copy(ROOT / "examples" / "configs" / "grace_tiny.yaml", "cfg.yaml")
    Path("hosts.txt").write_text("worker-0 slots=8\nworker-1 slots=8\n")


def _vqa_files() -> None:
    """VQAv2's question/annotation pair and a results file (visualqa.org formats)."""
    qs = [{"image_id": 1, "question": "Is it red?", "question_id": 10},
          {"image_id": 1, "question": "How many?", "question_id": 11}]  # fmt: skip
    anns = [{"question_id": 10, "image_id": 1, "answer_type": "yes/no", "question_type": "is",
             "multiple_choice_answer": "yes",
             "answers": [{"answer": "yes", "answer_confidence": "yes", "answer_id": i + 1}
                         for i in range(10)]},
            {"question_id": 11, "image_id": 1, "answer_type": "number", "question_type": "how",
             "multiple_choice_answer": "2",
             "answers": [{"answer": "2" if i < 2 else "3", "answer_confidence": "yes",
                          "answer_id": i + 1} for i in range(10)]}]  # fmt: skip
    Path("q.json").write_text(json.dumps({"questions": qs}))
    Path("a.json").write_text(json.dumps({"annotations": anns}))
    Path("answers.json").write_text(
        json.dumps([{"question_id": 10, "answer": "yes"}, {"question_id": 11, "answer": "two"}])
    )


def test_every_readme_example_is_run_or_said_why_not():
    run_here = {part for part in RUN_ORDER}
    for e in readme_examples():
        hits = [p for p in [*run_here, *NOT_RUN] if p in e]
        assert len(hits) == 1, (e, hits)


RUN_ORDER = [
    "manifest karpathy dataset_flickr30k.json",
    "manifest cc3m Train_GCC",
    "manifest oven oven_entity_train",
    "manifest oven-kb",
    "manifest llava",
    "manifest vqav2",
    "filter-urls Train_GCC",
    "download flickr30k",
    "shard work/f30k/manifest/manifest.parquet --images flickr30k-images/ -o f30k/",
    "inspect demo-out/shards",
    "verify demo-out/shards",
    "get demo-out/shards demo_5",
    "build-ids f30k/ --scheme numeric",
    "build-ids f30k/ --scheme structured",
    "build-ids f30k/ --scheme semantic",
    "build-trie --ids ids/structured.parquet",
    "build-trie --entities kb/entities.parquet",
    "launch cfg.yaml --num-nodes 2",
    "eval vqa --predictions answers.json",
    "eval text-vqa --dataset docvqa",
    "eval oven --references oven_query_val.jsonl",
    "view demo-out/shards",
]


def test_readme_examples_run_as_written(ws):
    ok = CliRunner().invoke
    run(RUN_ORDER[0])
    assert pl.read_parquet(f"work/f30k/{layout.MANIFEST}").height == 40
    run(RUN_ORDER[1])
    assert pl.read_parquet(f"cc3m/{layout.MANIFEST}").height == 4
    run(RUN_ORDER[2])
    assert pl.read_parquet(f"oven/{layout.MANIFEST}").height == 9
    run(RUN_ORDER[3])
    assert pl.read_parquet("kb/entities.parquet")["entity_id"].to_list() == ["Q100", "Q101", "Q102"]
    run(RUN_ORDER[4])
    run(RUN_ORDER[5])
    assert pl.read_parquet(f"vqa/{layout.MANIFEST}").height == 12
    run(RUN_ORDER[6])  # the blocked domain's URL is a denylisted_domain reject
    reasons = pl.read_parquet(f"cc3m-urls/{layout.REJECTS}")["reason"].to_list()
    assert reasons.count("denylisted_domain") == 1
    run(RUN_ORDER[7])
    run(RUN_ORDER[8])
    assert pl.read_parquet(f"f30k/{layout.INDEX}").height == 40
    # the README's demo-out/shards: the demo data through manifest and shard (quietly)
    for args in (["manifest", "karpathy", "demo-data/dataset_demo.json", "-o", "demo-out/work"],
                 ["shard", f"demo-out/work/{layout.MANIFEST}", "--images", "demo-data/images",
                  "-o", "demo-out/shards", "-q"]):  # fmt: skip
        assert ok(vlmdata, args).exit_code == 0
    assert "records 40 on 40 images" in run(RUN_ORDER[9]).output
    assert "checked 40 samples" in run(RUN_ORDER[10]).output
    run(RUN_ORDER[11])
    _run_reader_snippet()
    assert sorted(p.name for p in Path("sample").iterdir()) == ["demo_5.jpg", "demo_5.json",
                                                               "demo_5.txt"]  # fmt: skip
    run(RUN_ORDER[12])
    rng = np.random.default_rng(0)  # `embed` needs a GPU and ViT-L weights: made here instead
    emb = rng.standard_normal((40, 16)).astype(np.float32)
    np.save("ids/clip.npy", emb / np.linalg.norm(emb, axis=1, keepdims=True))
    run(RUN_ORDER[13])
    run(RUN_ORDER[14])
    assert pl.read_parquet("ids/semantic.parquet").height == 40
    run(RUN_ORDER[15])
    run(RUN_ORDER[16])
    assert "--config" in run(RUN_ORDER[17]).output
    for part, report in ((RUN_ORDER[18], "vqa.json"), (RUN_ORDER[19], "docvqa.json"),
                         (RUN_ORDER[20], "oven.json")):  # fmt: skip
        run(part)
        assert json.loads(Path(report).read_text())["metrics"], report
    values = {m["metric"]: m["value"] for m in json.loads(Path("oven.json").read_text())["metrics"]}
    assert values["query_score"] == 60.0  # tests/eval/test_oven_published.py works it by hand
    run(RUN_ORDER[21])
    assert Path("demo-out/shards.html").read_text().count("<img") >= 12


def _run_reader_snippet() -> None:
    """The README's Python reader example, run as written on demo-out/shards (a subprocess, in
    this folder; `...` in its loop is Python's Ellipsis)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    [code] = [
        b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "ShardReader(" in b
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr


HELP_RUN = [  # --help examples run as written, in this order (a unique part of each)
    "vlmdata manifest karpathy dataset_flickr30k.json -o work/flickr30k",
    "vlmdata manifest karpathy dataset_flickr30k.json -o work/",
    "shard work/manifest/manifest.parquet --images flickr30k-images/ -o shards/",
    "build-ids shards/ --scheme numeric -o ids.parquet",
    "build-trie --ids ids.parquet --tokenizer tok/ --split test -o ids.trie",
    "build-ids shards/ --scheme numeric --seed 0 --tokenizer tok/ -o ids.parquet",
    "build-ids shards/ --scheme semantic --pseudo-queries pq.json",
    "vlmdata inspect shards/",
    "vlmdata verify shards/",
    "get shards/ flickr30k_0 -o /tmp/s",
    "vlmdata demo small/ --images 300",
    "manifest cc3m Train_GCC-training.tsv Validation_GCC-1.1.0-Validation.tsv -o cc3m/",
    "filter-urls Train_GCC-training.tsv -o cc3m/ --denylist blocked.txt",
    "filter-urls test.tsv --format cc3m --split train --allow-private -o t/",
    "manifest oven oven_entity_train.jsonl --images oven_images/ -o oven/",
    "manifest llava llava_v1_5_mix665k.json -o llava/",
    "manifest vqav2 v2_OpenEnded_mscoco_train2014_questions.json",
    "shard m.parquet --images imgs/ -o out/ --resize center_crop --resize-side 224",
    "eval vqa --predictions answers.json --questions q.json --annotations a.json  -o vqa.json",
    "eval oven --references oven_query_val.jsonl --references oven_entity_val.jsonl",
    "launch cfg.yaml --num-nodes 2 --hostfile hosts.txt --dry-run",
]


def run_help(part: str):
    """The --help example containing `part` (the same text on several pages runs once)."""
    from tests.test_documented_examples import help_examples

    examples = {e for _, e in help_examples()}
    found = {part} if part in examples else {e for e in examples if part in e}
    assert len(found) == 1, (part, found)
    argv = shlex.split(found.pop())
    argv = argv[: argv.index("|")] if "|" in argv else argv
    main = {"vlmdata": vlmdata, "vlmtrain": vlmtrain}[argv[0]]
    res = CliRunner().invoke(main, argv[1:])
    assert res.exit_code == 0, f"{' '.join(argv)}\n{res.output}"
    return res


def test_help_examples_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _make_inputs(tmp_path)  # the README's inputs, then the names the help pages use
    data = json.loads(Path("dataset_flickr30k.json").read_text())
    test = [i for i in data["images"] if i["split"] != "train"]
    Path("pq.json").write_text(json.dumps([{"image_id": Path(i["filename"]).stem,
                                            "caption": ["a query"], "original_caption": ""}
                                           for i in test]))  # keyed as GRACE's  # fmt: skip
    shutil.copy("blocked_domains.txt", "blocked.txt")
    Path("test.tsv").write_text("a cat\thttp://127.0.0.1:8/a.jpg\n")
    for name in ("oven_entity_val.jsonl", "entity_preds.jsonl"):
        shutil.copy(FIX / name, name)
    for part in HELP_RUN[:4]:
        run_help(part)
    assert pl.read_parquet(f"shards/{layout.INDEX}").height == 40
    run_help(HELP_RUN[4])  # the trie over numeric ids without tokens: tokenized with tok/
    assert Path("ids.trie").stat().st_size > 0
    for part in HELP_RUN[5:7]:
        run_help(part)
    assert "records 40 on 40 images" in run_help(HELP_RUN[7]).output
    assert "checked 40 samples" in run_help(HELP_RUN[8]).output
    shutil.rmtree("/tmp/s", ignore_errors=True)
    run_help(HELP_RUN[9])
    assert sorted(p.suffix for p in Path("/tmp/s").iterdir()) == [".jpg", ".json", ".txt"]
    shutil.rmtree("/tmp/s", ignore_errors=True)
    run_help(HELP_RUN[10])
    assert len(list(Path("small/images").iterdir())) == 300
    for part in HELP_RUN[11:17]:
        run_help(part)
    assert pl.read_parquet(f"t/{layout.MANIFEST}")["split"].to_list() == ["train"]
    shutil.copy(f"work/{layout.MANIFEST}", "m.parquet")
    shutil.copytree("flickr30k-images", "imgs")
    run_help(HELP_RUN[17])
    import io

    from PIL import Image

    from vlmdata.shards import ShardReader

    reader = ShardReader("out")
    assert Image.open(io.BytesIO(reader[0]["image"])).size == (224, 224)
    assert "accuracy" in run_help(HELP_RUN[18]).output
    values = {m["metric"]: m["value"] for m in json.loads(Path("vqa.json").read_text())["metrics"]}
    # "yes": 1; "two" is read as "2", which 2 of the 10 humans gave: over the ten leave-one-out
    # sets, 2 x min(1, 1/3) + 8 x min(1, 2/3) = 6/10 -> overall (1 + 0.6) / 2
    assert values["accuracy"] == pytest.approx(0.8)
    run_help(HELP_RUN[19])
    values = {m["metric"]: m["value"] for m in json.loads(Path("oven.json").read_text())["metrics"]}
    assert values["final_score"] == 51.06  # tests/eval/test_oven_published.py works it by hand
    assert "--config" in run_help(HELP_RUN[20]).output
