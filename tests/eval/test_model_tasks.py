"""Model-driven tasks on tiny untrained models: the numbers in the report must be the metrics
of the predictions the task saved, and constrained decoding must stay inside its sets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.eval.conftest import TINY_VISION, png_bytes, saved_recall
from vlmdata.core import layout
from vlmtrain.eval.options import (
    CaptionOptions,
    EmbeddingRetrievalOptions,
    LlavaOptions,
    OvenOptions,
    VqaOptions,
)
from vlmtrain.eval.tasks.embedding import retrieval_recalls, run_embedding_retrieval

NO_JAVA = shutil.which("java") is None


def test_embedding_recalls_by_hand():
    images = np.array([[1.0, 0.0], [0.0, 1.0]])
    texts = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])  # t1 describes image 0 but is nearer 1
    rec = retrieval_recalls(texts, images, ["i0", "i0", "i1"], ["i0", "i1"], ks=(1, 2))
    assert rec["t2i"] == {1: pytest.approx(2 / 3), 2: 1.0}
    assert rec["i2t"] == {1: 1.0, 2: 1.0}  # each image's best caption is ranked first


def test_clip_baseline_cli(shards_dir, tmp_path):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.eval.report import load_report

    cfg = {"embed_dim": 16, "vision_cfg": dict(TINY_VISION["vision_cfg"]),
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 1}}  # fmt: skip
    (tmp_path / "clip.json").write_text(json.dumps(cfg))
    out = tmp_path / "clip_report.json"
    args = ["eval", "retrieval-embedding", "--encoder", "clip", "--clip-model",
            str(tmp_path / "clip.json"), "--data", str(shards_dir), "--split", "test",
            "-q", "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rep = load_report(out)
    counts = {m["metric"]: m["count"] for m in rep["metrics"]}
    assert counts["t2i_recall@1"] == 12 and counts["i2t_recall@1"] == 6
    values = {m["metric"]: m["value"] for m in rep["metrics"]}
    assert values["t2i_recall@10"] == 1.0  # 6 images: every rank is <= 6
    first = out.read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_bytes() == first  # seeded tiny CLIP: identical rerun


def test_clip_baseline_saves_every_querys_ranked_list(shards_dir, tmp_path):
    """--save-predictions: a line per query (12 texts t2i, 6 images i2t), each with its answers
    and top 10; Recall@K recounted from those lists is the reported Recall@K."""
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.eval.report import load_report

    cfg = {"embed_dim": 16, "vision_cfg": dict(TINY_VISION["vision_cfg"]),
           "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2,
                        "layers": 1}}  # fmt: skip
    (tmp_path / "clip.json").write_text(json.dumps(cfg))
    saved, out = tmp_path / "ranked.jsonl", tmp_path / "r.json"
    args = ["eval", "retrieval-embedding", "--encoder", "clip", "--clip-model",
            str(tmp_path / "clip.json"), "--data", str(shards_dir), "--split", "test", "-q",
            "--save-predictions", str(saved), "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    t2i = [r for r in rows if r["direction"] == "t2i"]
    i2t = [r for r in rows if r["direction"] == "i2t"]
    assert (len(t2i), len(i2t), len(rows)) == (12, 6, 18)
    # the fixture's test images are im2..im7, two captions each (tests/eval/conftest.py)
    assert [r["key"] for r in i2t] == [f"im{i}" for i in range(2, 8)]
    assert [r["key"] for r in t2i] == [f"im{i}#{j}" for i in range(2, 8) for j in (0, 1)]
    assert all(r["answers"] == [r["key"].split("#")[0]] for r in t2i)
    assert all(r["answers"] == [f"{r['key']}#0", f"{r['key']}#1"] for r in i2t)
    assert [len(r["ranked"]) for r in rows] == [6] * 12 + [10] * 6  # top 10 of 6 / 12 items
    rep = {m["metric"]: m["value"] for m in load_report(out)["metrics"]}
    for k in (1, 5, 10):
        assert saved_recall(t2i, k) == pytest.approx(rep[f"t2i_recall@{k}"])
        assert saved_recall(i2t, k) == pytest.approx(rep[f"i2t_recall@{k}"])
        assert np.mean([0 < r["rank"] <= k for r in t2i]) == pytest.approx(rep[f"t2i_recall@{k}"])
    assert rep["t2i_recall@1"] < 1.0 and rep["i2t_recall@1"] < 1.0  # an untrained CLIP misses


def test_fromage_encoders(tiny_bundle, shards_dir):
    bundle = tiny_bundle("fromage", retrieval_dim=16, ret_token="[RET]")
    opts = EmbeddingRetrievalOptions(data_dir=shards_dir, split="test", batch_size=5)
    rep = run_embedding_retrieval(opts, model_bundle=bundle)
    assert rep.value("t2i_recall@10") == 1.0
    assert rep.details == {"images": 6, "texts": 12}
    assert 0.0 <= rep.value("i2t_recall@1") <= rep.value("i2t_recall@5") <= 1.0


@pytest.mark.skipif(NO_JAVA, reason="java not installed")
def test_caption_report_scores_the_saved_predictions(tiny_bundle, shards_dir, tmp_path):
    from vlmtrain.eval.data import references_by_key
    from vlmtrain.eval.metrics.captioning import caption_scores
    from vlmtrain.eval.tasks.caption import read_caption_predictions, run_caption

    saved = tmp_path / "captions.json"
    opts = CaptionOptions(data_dir=shards_dir, split="test", metrics=["BLEU-1", "CIDEr-D"],
                          max_new_tokens=6, batch_size=4, save_predictions=saved)  # fmt: skip
    rep = run_caption(opts, model_bundle=tiny_bundle("caption"))
    rows = json.loads(saved.read_text())
    assert sorted(r["image_id"] for r in rows) == ["102", "103", "104", "105", "106", "107"]
    preds = read_caption_predictions(saved, shards_dir)
    again = caption_scores(preds, references_by_key(shards_dir), ["BLEU-1", "CIDEr-D"])
    assert rep.value("BLEU-1") == pytest.approx(again["BLEU-1"])
    assert rep.value("CIDEr-D") == pytest.approx(again["CIDEr-D"])


def test_vqa_model_answers_are_what_is_scored(tiny_bundle, shards_dir, tmp_path):
    from vlmtrain.eval.metrics.vqa import vqa_accuracy
    from vlmtrain.eval.tasks.vqa import read_vqa_predictions, run_vqa

    qs = {
        "questions": [
            {"question_id": 7, "image_id": 102, "question": "what is it?"},
            {"question_id": 8, "image_id": 105, "question": "how many?"},
        ]
    }
    anns = {"annotations": [{"question_id": q, "answer_type": "other", "question_type": "what",
                             "answers": [{"answer": "dogs", "answer_id": i} for i in range(1, 11)]}
                            for q in (7, 8)]}  # fmt: skip
    (tmp_path / "q.json").write_text(json.dumps(qs))
    (tmp_path / "a.json").write_text(json.dumps(anns))
    saved = tmp_path / "answers.json"
    opts = VqaOptions(questions=tmp_path / "q.json", annotations=tmp_path / "a.json",
                      data_dir=shards_dir, max_new_tokens=4, save_predictions=saved)  # fmt: skip
    rep = run_vqa(opts, model_bundle=tiny_bundle("caption"))
    preds = read_vqa_predictions(saved)
    assert sorted(preds) == [7, 8]
    assert rep.value("accuracy") == vqa_accuracy(preds, anns["annotations"])["overall"]


@pytest.fixture(scope="module")
def oven_data(tmp_path_factory, tokenizer_dir):
    """OVEN-style shards (data_id, entity_id, question; val splits) + entities + entity trie."""
    import polars as pl

    from vlmdata.core.manifest import ManifestSink
    from vlmdata.shards import write_shards
    from vlmdata.trie.from_files import trie_from_entities

    root = tmp_path_factory.mktemp("oven")
    (root / "images").mkdir()
    names = ["red circle", "green square", "black dogs", "white cat", "small boat"]
    splits = ["entity_val_seen", "entity_val_unseen", "query_val_seen", "query_val_unseen"]
    extra = ["data_id", "entity_id", "entity_name", "question"]
    with ManifestSink(root / "work", extra_columns=extra) as sink:
        for i in range(4):
            (root / "images" / f"o{i}.png").write_bytes(png_bytes(i + 20))
            sink.keep({"key": f"o{i}", "source": "oven", "split": splits[i], "path": f"o{i}.png",
                       "texts": ["what is this?"], "data_id": f"d{i}", "entity_id": f"Q{i}",
                       "entity_name": names[i], "question": "what is this?"})  # fmt: skip
    write_shards(root / "work" / layout.MANIFEST, root / "images", root / "out", progress=False)
    ents = root / "entities.parquet"
    # Q5 shares its name with Q3 (two entities, one name: the trie keeps both rows)
    pl.DataFrame(
        {"entity_id": [f"Q{i}" for i in range(6)], "entity_name": [*names, "white cat"]}
    ).write_parquet(ents)
    trie_from_entities(ents, tokenizer_dir).save(root / "entities.trie")
    return root


def test_oven_constrained_predictions_stay_in_the_entity_sets(tiny_bundle, oven_data, tmp_path):
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.tasks.oven import read_oven_predictions, run_oven

    bundle = tiny_bundle("autover", new_tokens=["<ret>"], ret_token="<ret>")
    common = dict(data_dir=oven_data / "out", trie=oven_data / "entities.trie",
                  entities=oven_data / "entities.parquet", beams=3, max_new_tokens=8,
                  batch_size=2)  # fmt: skip
    saved = tmp_path / "pred.jsonl"
    rep = run_oven(OvenOptions(save_predictions=saved, **common), model_bundle=bundle)
    preds = read_oven_predictions([saved])
    assert sorted(preds) == ["d0", "d1", "d2", "d3"]
    assert set(preds.values()) <= {f"Q{i}" for i in range(5)}  # a real entity (Q5: as Q3)
    assert {m["metric"] for m in rep.metrics} >= {"final_score", "query_score", "entity_score"}
    # with candidate sets (decoded two at a time in one forest), each prediction is one of its
    # own candidates; d3's only candidate is the second "white cat", d2 has none (whole trie)
    cands = {"d0": ["Q3", "Q4"], "d1": ["Q1"], "d2": [], "d3": ["Q5"]}
    (tmp_path / "cands.jsonl").write_text(
        "".join(json.dumps({"data_id": d, "candidates": c}) + "\n" for d, c in cands.items())
    )
    opts = OvenOptions(candidates=tmp_path / "cands.jsonl", save_predictions=saved, **common)
    run_oven(opts, model_bundle=bundle)
    preds = read_oven_predictions([saved])
    assert preds["d0"] in cands["d0"] and preds["d2"] in {f"Q{i}" for i in range(5)}
    assert preds["d1"] == "Q1" and preds["d3"] == "Q5"  # a single candidate is forced
    (tmp_path / "bad.jsonl").write_text(json.dumps({"data_id": "d0", "candidates": ["Q9"]}))
    with pytest.raises(DataError, match=r"candidates \['Q9'\] are not in the entities file"):
        run_oven(OvenOptions(candidates=tmp_path / "bad.jsonl", **common), model_bundle=bundle)


def test_llava_answers_file_format_and_accuracy(tiny_bundle, tmp_path):
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.tasks.llava import exact_match, run_llava

    (tmp_path / "img").mkdir()
    for i in range(3):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes(i))
    qs = [
        {"question_id": 10 + i, "image": f"{i}.png", "text": "what colour is it?"} for i in range(3)
    ]
    qs[0]["answer"], qs[1]["gt_answer"] = "red", "the blue"
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    bundle = tiny_bundle("llava", {"stage": 2})
    opts = LlavaOptions(checkpoint=None, questions=tmp_path / "q.jsonl",
                        image_folder=tmp_path / "img", answers_file=tmp_path / "answers.jsonl",
                        model_id="tiny", max_new_tokens=4)  # fmt: skip
    rep = run_llava(opts, model_bundle=bundle)
    lines = [json.loads(x) for x in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in lines] == [10, 11, 12]
    assert all(list(r) == ["question_id", "prompt", "text", "answer_id", "model_id", "metadata"]
               for r in lines)  # fmt: skip
    assert lines[0]["prompt"] == "what colour is it?" and lines[0]["model_id"] == "tiny"
    hits = exact_match(lines[0]["text"], "red") + exact_match(lines[1]["text"], "the blue")
    assert rep.value("answered") == 3
    assert rep.value("accuracy") == hits / 2 and rep.metrics[1]["count"] == 2
    first = (tmp_path / "answers.jsonl").read_bytes()
    run_llava(opts, model_bundle=bundle)
    assert (tmp_path / "answers.jsonl").read_bytes() == first
    (tmp_path / "q.jsonl").write_text(json.dumps({"question_id": 1, "image": "../x.png",
                                                  "text": "?"}) + "\n")  # fmt: skip
    with pytest.raises(DataError, match="leaves the image folder"):
        run_llava(opts, model_bundle=bundle)


def test_named_clip_without_weights_is_refused(shards_dir):
    from vlmdata.core.errors import DataError

    with pytest.raises(DataError, match="no weights"):
        opts = EmbeddingRetrievalOptions(
            data_dir=shards_dir, split="test", encoder="clip", clip_model="ViT-B-32"
        )
        run_embedding_retrieval(opts)


def test_oven_entity_trie_with_another_eos(tiny_bundle, oven_data, tokenizer_dir, tmp_path):
    """Entity names ending in <|endofchunk|>: decoding stops there and maps back to entities;
    a recipe whose targets end otherwise is refused before decoding."""
    from tests.eval.conftest import ENDOFCHUNK
    from vlmdata.core.errors import DataError
    from vlmdata.trie.from_files import trie_from_entities
    from vlmtrain.eval.tasks.oven import read_oven_predictions, run_oven

    ents = oven_data / "entities.parquet"
    trie_from_entities(ents, tokenizer_dir, eos_token=ENDOFCHUNK).save(tmp_path / "eoc.trie")
    common = dict(data_dir=oven_data / "out", trie=tmp_path / "eoc.trie", entities=ents,
                  beams=3, max_new_tokens=8, batch_size=2)  # fmt: skip
    plain = tiny_bundle("autover", new_tokens=["<ret>"], ret_token="<ret>")
    with pytest.raises(DataError, match=r"ends identifiers with '<\|endofchunk\|>'"):
        run_oven(OvenOptions(**common), model_bundle=plain)
    eoc = tiny_bundle("autover", {"eos_token": ENDOFCHUNK}, new_tokens=["<ret>"],
                      ret_token="<ret>")  # fmt: skip
    saved = tmp_path / "pred.jsonl"
    run_oven(OvenOptions(save_predictions=saved, **common), model_bundle=eoc)
    preds = read_oven_predictions([saved])
    assert sorted(preds) == ["d0", "d1", "d2", "d3"]
    assert set(preds.values()) <= {f"Q{i}" for i in range(5)}  # every lookup found an entity


def test_llava_reads_images_and_questions_from_record_shards(tiny_bundle, tmp_path):
    """--data instead of --image-folder: the same answers file, byte for byte; without
    --questions, the shards' LLaVA records of a split are the questions (two records share
    one stored image)."""
    from vlmdata.core.manifest import ManifestSink
    from vlmdata.shards import write_shards
    from vlmtrain.eval.tasks.llava import run_llava

    (tmp_path / "img").mkdir()
    for i in range(2):
        (tmp_path / "img" / f"{i}.png").write_bytes(png_bytes(i))
    qs = [{"question_id": 10 + i, "image": f"{i}.png", "text": "what colour is it?"}
          for i in range(2)]  # fmt: skip
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(q) + "\n" for q in qs))
    chat = [{"from": "human", "value": "<image>\nwhat colour is it?"},
            {"from": "gpt", "value": "red"}]  # fmt: skip
    with ManifestSink(tmp_path / "m", ("data_id", "conversations", "image_key")) as sink:
        for key, path in [("a", "0.png"), ("b", "0.png"), ("c", "1.png")]:
            sink.keep({"key": key, "source": "llava", "split": "test", "path": path,
                       "texts": ["red"], "conversations": json.dumps(chat),
                       "image_key": f"img_{path[0]}"})  # fmt: skip
    write_shards(tmp_path / "m" / layout.MANIFEST, tmp_path / "img", tmp_path / "s",
                 progress=False)  # fmt: skip
    bundle = tiny_bundle("llava", {"stage": 2})
    common = dict(checkpoint=None, model_id="tiny", max_new_tokens=4)
    opts = LlavaOptions(questions=tmp_path / "q.jsonl", image_folder=tmp_path / "img",
                        answers_file=tmp_path / "folder.jsonl", **common)  # fmt: skip
    run_llava(opts, model_bundle=bundle)
    opts = LlavaOptions(questions=tmp_path / "q.jsonl", image_folder=None,
                        data_dir=tmp_path / "s", answers_file=tmp_path / "shards.jsonl",
                        **common)  # fmt: skip
    run_llava(opts, model_bundle=bundle)
    assert (tmp_path / "shards.jsonl").read_bytes() == (tmp_path / "folder.jsonl").read_bytes()
    opts = LlavaOptions(questions=None, image_folder=None, data_dir=tmp_path / "s",
                        split="test", answers_file=tmp_path / "records.jsonl",
                        **common)  # fmt: skip
    rep = run_llava(opts, model_bundle=bundle)
    lines = [json.loads(x) for x in (tmp_path / "records.jsonl").read_text().splitlines()]
    assert [r["question_id"] for r in lines] == ["a", "b", "c"]
    assert lines[0]["prompt"] == "what colour is it?"
    assert rep.value("answered") == 3 and rep.metrics[1]["count"] == 3
