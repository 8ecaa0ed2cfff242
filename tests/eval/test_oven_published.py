"""`vlmtrain eval oven` on OVEN as published: split names `query_val_seen`, `entity_val_unseen`,
... (fixtures/oven/README.md names the source of each file's shape), scored as the official
oven_eval.py scores them. Every expected figure is worked by hand below."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.vlmdata import main as vlmdata_main
from cli.vlmtrain import main
from vlmdata.core import layout
from vlmtrain.eval.report import load_report

FIX = Path(__file__).parent / "fixtures" / "oven"
# query: seen 3 of 4 right = 75.0; unseen 1 of 2 predicted right = 50.0 (the third reference
# has no prediction: the toolkit scores predicted rows only); 2 / (1/75 + 1/50) = 60.0.
# entity: seen 2 of 3 = 66.67, unseen 1 of 3 = 33.33 (each rounded to 2 places first);
# 2 / (1/66.67 + 1/33.33) = 44.4422...; final 2 / (1/60 + 1/44.4422...) = 51.0623...
EXPECTED = {
    "final_score": 51.06,
    "query_score": 60.0,
    "query_seen_accuracy": 75.0,
    "query_unseen_accuracy": 50.0,
    "entity_score": 44.44,
    "entity_seen_accuracy": 66.67,
    "entity_unseen_accuracy": 33.33,
}


def _eval(args, tmp_path):
    out = tmp_path / "oven.json"
    res = CliRunner().invoke(main, ["eval", "oven", *map(str, args), "-o", str(out)])
    assert res.exit_code == 0, res.output
    return {m["metric"]: m["value"] for m in load_report(out)["metrics"]}, load_report(out)


def test_published_files_score_as_the_official_script(tmp_path):
    values, report = _eval(
        ["--references", FIX / "oven_query_val.jsonl", "--references",
         FIX / "oven_entity_val.jsonl", "--predictions", FIX / "query_preds.jsonl",
         "--predictions", FIX / "entity_preds.jsonl"], tmp_path)  # fmt: skip
    assert values == EXPECTED
    assert set(report["units"].values()) == {"percent"}  # as oven_eval.py prints them
    assert report["details"]["query_result"]["unseen"] == {
        "accuracy": 50.0, "count": 2, "missing": 1}  # fmt: skip


def test_one_published_family_alone(tmp_path):
    # the README's example: the query file and its predictions only
    values, _ = _eval(["--references", FIX / "oven_query_val.jsonl", "--predictions",
                       FIX / "query_preds.jsonl"], tmp_path)  # fmt: skip
    assert values == {k: v for k, v in EXPECTED.items() if k.startswith("query")}


def test_family_from_the_file_name_when_the_split_name_lacks_it(tmp_path):
    # oven_eval.py takes the family from the file it reads: a split called just `val_seen` in
    # oven_entity_val.jsonl is an entity split
    rows = [json.loads(line) for line in (FIX / "oven_entity_val.jsonl").read_text().splitlines()]
    ref = tmp_path / "oven_entity_val.jsonl"
    ref.write_text("".join(json.dumps({**r, "data_split": r["data_split"][len("entity_"):]})
                           + "\n" for r in rows))  # fmt: skip
    values, _ = _eval(["--references", ref, "--predictions", FIX / "entity_preds.jsonl"],
                      tmp_path)  # fmt: skip
    assert values["entity_score"] == 44.44


def test_a_split_of_neither_family_names_the_published_ones(tmp_path):
    ref = tmp_path / "refs.jsonl"
    ref.write_text(json.dumps({"data_id": "a", "entity_id": "Q1", "data_split": "val_seen"}) + "\n")
    pred = tmp_path / "p.jsonl"
    pred.write_text(json.dumps({"data_id": "a", "pred_entity_id": "Q1"}) + "\n")
    res = CliRunner().invoke(main, ["eval", "oven", "--references", str(ref), "--predictions",
                                    str(pred)])  # fmt: skip
    assert res.exit_code == 2
    assert "'val_seen'" in res.output and "query_val_seen" in res.output


@pytest.mark.parametrize(
    ("wanted", "selected"),
    [("val", {"query_val_seen", "query_val_unseen", "entity_val_seen", "entity_val_unseen",
              "val_query_seen"}),
     ("query_val", {"query_val_seen", "query_val_unseen"}),
     ("entity_val_unseen", {"entity_val_unseen"}),
     ("test", {"query_test"})],
)  # fmt: skip
def test_split_selection_by_words(wanted, selected):
    from vlmtrain.eval.tasks.oven import split_matches

    names = ["query_val_seen", "query_val_unseen", "entity_val_seen", "entity_val_unseen",
             "val_query_seen", "query_train", "query_test", "entity_validation"]  # fmt: skip
    assert {n for n in names if split_matches(n, wanted)} == selected


def _jpeg(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (i * 20 % 256, 40, 90)).save(buf, "JPEG")
    return buf.getvalue()


def test_manifest_shard_then_eval_with_the_default_split(tmp_path):
    """The documented chain on the published files: `manifest oven` keeps data_split, `shard`,
    then `eval oven --data` with the default --split val finds all four val splits."""
    images = tmp_path / "oven_images"
    for name in ("oven_query_val.jsonl", "oven_entity_val.jsonl"):
        for line in (FIX / name).read_text().splitlines():
            image_id = json.loads(line)["image_id"]
            (images / image_id[5:7]).mkdir(parents=True, exist_ok=True)
            (images / image_id[5:7] / f"{image_id}.jpg").write_bytes(_jpeg(int(image_id[5:])))
    run = CliRunner().invoke
    res = run(vlmdata_main, ["manifest", "oven", str(FIX / "oven_query_val.jsonl"),
                             str(FIX / "oven_entity_val.jsonl"), "--images", str(images), "-o",
                             str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 0, res.output
    res = run(vlmdata_main, ["shard", str(tmp_path / "m" / layout.MANIFEST), "--images",
                             str(images), "-o", str(tmp_path / "s")])  # fmt: skip
    assert res.exit_code == 0, res.output
    values, _ = _eval(["--data", tmp_path / "s", "--predictions", FIX / "query_preds.jsonl",
                       "--predictions", FIX / "entity_preds.jsonl"], tmp_path)  # fmt: skip
    assert values == EXPECTED
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "oven",
            "--data",
            str(tmp_path / "s"),
            "--split",
            "test",
            "--predictions",
            str(FIX / "query_preds.jsonl"),
        ],
    )
    assert res.exit_code == 2
    assert "no OVEN references in split 'test'" in res.output and "query_val_seen" in res.output


def test_limit_scores_the_first_n_references_of_each_split(tmp_path):
    # --limit N equals scoring files cut by hand to the first N references of each data_split
    # (and the predictions to those references)
    kept_ids, args = set(), []
    for name in ("oven_query_val.jsonl", "oven_entity_val.jsonl"):
        rows = [json.loads(x) for x in (FIX / name).read_text().splitlines()]
        firsts = {}
        for r in rows:
            firsts.setdefault(r["data_split"], r)
        kept = list(firsts.values())
        assert len(kept) < len(rows)  # the cut drops something
        kept_ids |= {r["data_id"] for r in kept}
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in kept))
        args += ["--references", tmp_path / name]
    for name in ("query_preds.jsonl", "entity_preds.jsonl"):
        rows = [json.loads(x) for x in (FIX / name).read_text().splitlines()]
        (tmp_path / name).write_text(
            "".join(json.dumps(r) + "\n" for r in rows if r["data_id"] in kept_ids)
        )
        args += ["--predictions", tmp_path / name]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    by_hand, _ = _eval(args, tmp_path / "a")
    full = ["--references", FIX / "oven_query_val.jsonl", "--references",
            FIX / "oven_entity_val.jsonl", "--predictions", FIX / "query_preds.jsonl",
            "--predictions", FIX / "entity_preds.jsonl"]  # fmt: skip
    limited, report = _eval([*full, "--limit", "1"], tmp_path / "b")
    assert limited == by_hand
    assert report["config"]["limit"] == 1
    assert report["details"]["query_result"]["unseen"]["count"] == 1
