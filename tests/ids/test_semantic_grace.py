"""GRACE's own pseudo-query file makes semantic ids (`vlmdata build-ids --scheme semantic`).

Shapes: Karpathy's dataset_flickr30k.json / dataset_coco.json images ({filename, filepath (COCO),
split, sentences, imgid, cocoid}) through `vlmdata manifest`; GRACE's pseudo-query JSON as its
`generate_pseudo_query` writes it and its semantic_identifier conversion reads it
(liyongqi67/GRACE: a list of {"image_id", "caption": [texts], "original_caption": [{"raw"}]},
keyed by the Flickr30k file's stem, `line['image_id'] + ".jpg"`, or by the COCO id,
"COCO_val2014_" + zfill(12) + ".jpg" with --coco).
"""

from __future__ import annotations

import json
import random

import pyarrow.parquet as pq
from click.testing import CliRunner

from cli.vlmdata import main
from vlmdata.ids.build import read_ids
from vlmdata.trie import Trie


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def karpathy(tmp_path, dataset: str, images: list[dict]):
    path = tmp_path / f"dataset_{dataset}.json"
    path.write_text(json.dumps({"images": images, "dataset": dataset}))
    out = tmp_path / dataset
    r = run("manifest", "karpathy", path, "-o", out)
    assert r.exit_code == 0, r.output
    return out


def image(i: int, split: str, filename: str, **extra) -> dict:
    sentences = [{"raw": f"caption {j} of image {i}"} for j in range(2)]
    return {"filename": filename, "split": split, "sentences": sentences, "imgid": i, **extra}


def pseudo(tmp_path, entries: dict) -> str:
    items = [{"image_id": k, "caption": caps, "original_caption": [{"raw": "a caption"}]}
             for k, caps in entries.items()]  # fmt: skip
    path = tmp_path / "pseudo_query.json"
    path.write_text(json.dumps(items, indent=4))
    return path


def test_flickr_pseudo_queries_keyed_by_file_stem(tmp_path, tok_dir):
    stems = ["1000092795", "10002456", "1000268201", "1000344755"]
    splits = ["train", "train", "val", "test"]
    rows = [
        image(i, s, f"{stem}.jpg") for i, (stem, s) in enumerate(zip(stems, splits, strict=True))
    ]
    out = karpathy(tmp_path, "flickr30k", rows)
    pq_file = pseudo(tmp_path, {
        "1000344755": [f"a pseudo query {j}" for j in range(5)],  # the test image
        "10002456": ["a pseudo query for a train image"],  # GRACE appends it to the captions
    })  # fmt: skip
    ids = tmp_path / "sem.parquet"
    r = run("build-ids", out, "--scheme", "semantic", "--pseudo-queries", pq_file,
            "--tokenizer", tok_dir, "--seed", 3, "-o", ids)  # fmt: skip
    assert r.exit_code == 0, r.output
    table, meta = read_ids(ids)
    many = table.column("identifiers").to_pylist()
    assert many == [
        ["caption 0 of image 0", "caption 1 of image 0"],
        ["caption 0 of image 1", "caption 1 of image 1", "a pseudo query for a train image"],
        None,  # val: GRACE gives it no semantic id
        [f"a pseudo query {j}" for j in range(5)],
    ]
    rng = random.Random(3)  # GRACE's choice(), seeded, in row order
    expected = [None if m is None else rng.choice(m) for m in many]
    assert table.column("identifier").to_pylist() == expected
    assert table.column("tokens").to_pylist()[2] is None
    assert meta["stats"]["no_identifier"] == 1
    # the test trie holds the five pseudo-queries, all leading to the test image's row
    r = run("build-trie", "--ids", ids, "--tokenizer", tok_dir, "--split", "test",
            "-o", tmp_path / "t.trie")  # fmt: skip
    assert r.exit_code == 0, r.output
    trie = Trie.load(tmp_path / "t.trie")
    assert len(trie) == 5 and set(trie.sequences()[2].tolist()) == {3}
    r = run("build-trie", "--ids", ids, "--tokenizer", tok_dir, "-o", tmp_path / "all.trie")
    assert r.exit_code == 0, r.output  # every split: the val row contributes nothing


def test_coco_pseudo_queries_keyed_by_coco_id(tmp_path):
    names = [f"COCO_val2014_{n:012d}.jpg" for n in (391895, 522418)]
    images = [image(0, "train", names[0], filepath="val2014", cocoid=391895),
              image(1, "test", names[1], filepath="val2014", cocoid=522418)]  # fmt: skip
    out = karpathy(tmp_path, "coco", images)
    pq_file = pseudo(tmp_path, {522418: ["a woman cutting a cake"]})  # an int, as GRACE's
    r = run("build-ids", out, "--scheme", "semantic", "--pseudo-queries", pq_file,
            "-o", tmp_path / "sem.parquet")  # fmt: skip
    assert r.exit_code == 0, r.output
    got = pq.read_table(tmp_path / "sem.parquet").column("identifier").to_pylist()
    assert got[1] == "a woman cutting a cake"


def test_a_test_image_missing_from_the_file_is_named(tmp_path):
    out = karpathy(tmp_path, "flickr30k", [image(0, "test", "36979.jpg")])
    pq_file = pseudo(tmp_path, {"1000092795": ["another image's query"]})
    r = run("build-ids", out, "--scheme", "semantic", "--pseudo-queries", pq_file,
            "-o", tmp_path / "x.parquet")  # fmt: skip
    assert r.exit_code == 2
    assert "row 0" in r.output and "no pseudo-queries under any of ['36979'" in r.output
    assert not (tmp_path / "x.parquet").exists()
