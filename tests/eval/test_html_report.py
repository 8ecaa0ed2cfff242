"""`vlmtrain eval ... --html`: the report as a page; retrieval queries with their top-K images
marked right or wrong, the images decoded from the data folder."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser

import pytest
from PIL import Image

from vlmtrain.eval.html_report import write_html_report
from vlmtrain.eval.report import Report, spread


class Page(HTMLParser):
    """The parts a reader sees: metric rows, and per query its right answer and hits."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.metrics: list[str] = []
        self.queries: list[dict] = []
        self._in = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "tr" and "metric" in cls:
            self.metrics.append(a["data-metric"])
        elif tag == "div" and "query" in cls:
            self.queries.append({"text": "", "hits": []})
            self._in = "query"
        elif tag == "div" and "hit" in cls:
            self.queries[-1]["hits"].append({"key": a["data-key"], "right": "right" in cls})
        elif tag == "img" and self.queries:
            self.queries[-1]["hits"][-1]["img"] = a["src"]

    def handle_endtag(self, tag):
        if tag == "b":
            self._in = None

    def handle_data(self, data):
        if self._in == "query":
            self.queries[-1]["text"] += data


def decoded_size(uri: str) -> tuple[int, int]:
    head, b64 = uri.split(",", 1)
    assert head == "data:image/jpeg;base64"
    with Image.open(io.BytesIO(base64.b64decode(b64))) as img:
        img.load()
        return img.size


def test_marks_follow_the_answers_and_images_come_from_the_data(shards_dir, tmp_path):
    report = Report(task="retrieval-generative", data=str(shards_dir))
    report.add("recall@1", 0.5, 2)
    report.examples = [
        {"query": "a red square", "answers": ["im2"], "ranked": ["im3", "im2", None]},
        {"query": "a <b>blue</b> one", "answers": ["im4"], "ranked": ["im4", "nope"]},
    ]
    page = tmp_path / "r.html"
    write_html_report(report, page)
    got = Page(page.read_text(encoding="utf-8"))
    assert got.metrics == ["recall@1"]
    assert [q["text"] for q in got.queries] == ["a red square", "a <b>blue</b> one"]
    marks = [[(h["key"], h["right"]) for h in q["hits"]] for q in got.queries]
    assert marks == [[("im3", False), ("im2", True), ("", False)], [("im4", True), ("nope", False)]]
    shown = {h["key"]: decoded_size(h["img"]) for q in got.queries for h in q["hits"] if "img" in h}
    assert shown == {"im3": (24, 20), "im2": (24, 20), "im4": (24, 20)}  # conftest's png_bytes


def test_spread_is_fixed_and_covers_both_ends():
    assert spread(100, 8) == [0, 14, 28, 42, 57, 71, 85, 99]
    assert spread(3, 8) == [0, 1, 2] and spread(0) == []


@pytest.mark.slow
def test_cli_writes_the_html_report(grace_export, shards_dir, ids_path, trie_path, tmp_path):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.eval.report import load_report
    from vlmtrain.eval.tasks.retrieval import split_queries

    args = ["eval", "retrieval-generative", "--checkpoint", str(grace_export), "--data",
            str(shards_dir), "--split", "test", "--trie", str(trie_path), "--ids",
            str(ids_path), "-q", "-o", str(tmp_path / "r.json"), "--html",
            str(tmp_path / "r.html")]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    got = Page((tmp_path / "r.html").read_text(encoding="utf-8"))
    report = load_report(tmp_path / "r.json")
    assert "examples" not in report  # the JSON schema is unchanged
    assert got.metrics == [m["metric"] for m in report["metrics"]]
    queries = split_queries(shards_dir, "test")
    assert [q["text"] for q in got.queries] == [queries[i].text for i in spread(len(queries))]
    for q, i in zip(got.queries, spread(len(queries)), strict=True):
        assert 1 <= len(q["hits"]) <= 5
        assert all(h["right"] == (h["key"] == queries[i].key) for h in q["hits"])
        assert all(decoded_size(h["img"]) == (24, 20) for h in q["hits"] if h["key"])


def test_embedding_examples_are_the_top5_by_cosine(tiny_bundle, shards_dir):
    import numpy as np
    import torch

    from vlmtrain.eval.options import EmbeddingRetrievalOptions
    from vlmtrain.eval.tasks.embedding import load_split, model_encoders, run_embedding_retrieval

    bundle = tiny_bundle("fromage", retrieval_dim=16, ret_token="[RET]")
    opts = EmbeddingRetrievalOptions(data_dir=shards_dir, split="test", batch_size=64)  # one batch
    report = run_embedding_retrieval(opts, model_bundle=bundle)
    samples, texts, text_keys = load_split(shards_dir, "test", None)
    enc_images, enc_texts = model_encoders(bundle.model)
    with torch.no_grad():
        img = enc_images(samples).double().numpy()
        txt = enc_texts(texts).double().numpy()
    keys = [s["key"] for s in samples]
    expected = []
    for i in spread(len(texts)):
        cos = [float(np.dot(txt[i], img[j])) for j in range(len(keys))]
        top = sorted(range(len(keys)), key=lambda j: -cos[j])[:5]
        expected.append(
            {"query": texts[i], "answers": [text_keys[i]], "ranked": [keys[j] for j in top]}
        )
    assert report.examples == expected
