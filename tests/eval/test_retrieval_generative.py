"""Generative retrieval end to end on a tiny trained GRACE model, checked against brute force."""

from __future__ import annotations

import pytest
import torch

from vlmtrain.eval.metrics.recall import recall_at_k_ranked
from vlmtrain.eval.options import GenerativeRetrievalOptions
from vlmtrain.eval.tasks.retrieval import (
    read_id_keys,
    retrieve_generative,
    run_generative_retrieval,
    split_queries,
)


def _brute_force(model, recipe, queries, identifiers, keys):
    """Sum of token log-probs of every test identifier after each query prompt, best first."""
    from vlmtrain.recipes.base import RecipeContext, pad_sequences
    from vlmtrain.recipes.grace import QUERY2ID

    ctx = RecipeContext.for_model(model)
    targets = [recipe.target(ctx, identifiers[k]) for k in keys]
    ranked = []
    for q in queries:
        prompt = recipe.prompt(ctx, QUERY2ID, q.text).input_ids
        seqs = [prompt + t for t in targets]  # right padding cannot change earlier positions
        ids = pad_sequences(seqs, 0)
        mask = pad_sequences([[1] * len(s) for s in seqs], 0)
        with torch.no_grad():
            logp = model(ids, mask).logits.log_softmax(-1)
        scores = {}
        for row, (key, target) in enumerate(zip(keys, targets, strict=True)):
            pos = torch.arange(len(prompt) - 1, len(prompt) + len(target) - 1)
            scores[key] = float(logp[row, pos, torch.tensor(target)].sum())
        ranked.append(sorted(keys, key=lambda k: -scores[k]))
    return ranked


@pytest.mark.slow
def test_beam_search_over_trie_equals_brute_force(grace_bundle, shards_dir, ids_path, trie_path):
    from vlmdata.trie import Trie
    from vlmtrain.recipes import get_recipe

    model = grace_bundle.model
    recipe = get_recipe("grace")
    trie = Trie.load(trie_path)
    row_keys, identifiers = read_id_keys(ids_path)
    queries = split_queries(shards_dir, "test")
    keys = sorted({q.key for q in queries})
    assert len(queries) == 12 and len(keys) == 6 and len(trie) == 6
    # 10 beams over 6 identifiers keep every trie path alive: the search is exhaustive, so with
    # length_penalty 0 (plain sum of log-probs) its order must be the brute-force order
    ranked = retrieve_generative(
        model, recipe, trie, row_keys, queries, beams=10, returns=10, batch_size=5,
        length_penalty=0.0,
    )  # fmt: skip
    distinct = [list(dict.fromkeys(k for k in r if k is not None)) for r in ranked]
    assert distinct == _brute_force(model, recipe, queries, identifiers, keys)


@pytest.mark.slow
def test_run_reports_the_recall_of_the_brute_force_ranking(grace_bundle, shards_dir, ids_path,
                                                           trie_path):  # fmt: skip
    from vlmtrain.recipes import get_recipe

    opts = GenerativeRetrievalOptions(data_dir=shards_dir, split="test", trie_path=trie_path,
                                      ids_path=ids_path, batch_size=4,
                                      length_penalty=0.0)  # fmt: skip
    report = run_generative_retrieval(opts, model_bundle=grace_bundle)
    _row_keys, identifiers = read_id_keys(ids_path)
    queries = split_queries(shards_dir, "test")
    keys = sorted({q.key for q in queries})
    # the oracle ranks all 6 identifiers by the model's own log-probs; with 6 images recall@1
    # and @5 can differ from it (a search that loses or misorders an identifier fails here)
    ranked = _brute_force(grace_bundle.model, get_recipe("grace"), queries, identifiers, keys)
    expected = recall_at_k_ranked(ranked, [q.key for q in queries])
    assert [m["metric"] for m in report.metrics] == [
        "recall@1", "recall@5", "recall@10", "grace_recall@1", "grace_recall@5", "grace_recall@10"
    ]  # fmt: skip
    assert all(m["count"] == 12 for m in report.metrics[:3])
    # GRACE's counting of the same beams, beside: queries with an unmappable beam left out
    kept = report.details["grace_counting"]["queries"]
    assert kept + report.details["grace_counting"]["skipped_unmappable"] == 12
    assert all(m["count"] == kept for m in report.metrics[3:])
    for k in (1, 5, 10):
        assert report.value(f"recall@{k}") == pytest.approx(expected[k])
    # the model memorised its training queries: far above chance (1/6)
    assert report.value("recall@1") >= 0.5
    assert report.details["images"] == 6 and report.details["queries"] == 12


@pytest.mark.slow
def test_cli_on_exported_checkpoint_matches_in_memory_run(
    grace_bundle, grace_export, shards_dir, ids_path, trie_path, tmp_path
):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.eval.report import load_report

    out = tmp_path / "grace.json"
    args = ["eval", "retrieval-generative", "--checkpoint", str(grace_export), "--data",
            str(shards_dir), "--split", "test", "--trie", str(trie_path), "--ids",
            str(ids_path), "-q", "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "recall@1" in res.output
    rep = load_report(out)
    opts = GenerativeRetrievalOptions(
        data_dir=shards_dir, split="test", trie_path=trie_path, ids_path=ids_path
    )
    expected = run_generative_retrieval(opts, model_bundle=grace_bundle)
    assert [m["value"] for m in rep["metrics"]] == pytest.approx(
        [m["value"] for m in expected.metrics]
    )
    assert rep["config"]["beams"] == 10 and rep["config"]["returns"] == 10
    first = out.read_bytes()
    assert CliRunner().invoke(main, args).exit_code == 0
    assert out.read_bytes() == first


@pytest.mark.slow
def test_saved_predictions_are_the_beams_and_reproduce_the_recall(
    grace_bundle, grace_export, shards_dir, ids_path, trie_path, tmp_path
):
    """--save-predictions: a line per query (12), its gold image and every returned beam's
    image in beam order; Recall@K recounted from the lines is the reported one."""
    import json

    from click.testing import CliRunner

    from cli.vlmtrain import main
    from tests.eval.conftest import saved_recall
    from vlmdata.trie import Trie
    from vlmtrain.eval.report import load_report
    from vlmtrain.recipes import get_recipe

    saved, out = tmp_path / "ranked.jsonl", tmp_path / "grace.json"
    args = ["eval", "retrieval-generative", "--checkpoint", str(grace_export), "--data",
            str(shards_dir), "--split", "test", "--trie", str(trie_path), "--ids",
            str(ids_path), "--batch-size", "4", "-q", "--save-predictions", str(saved),
            "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in saved.read_text().splitlines()]
    queries = split_queries(shards_dir, "test")
    assert len(rows) == len(queries) == 12
    assert [r["query"] for r in rows] == [q.text for q in queries]
    assert [r["key"] for r in rows] == [f"im{i}#{j}" for i in range(2, 8) for j in (0, 1)]
    assert [r["answers"] for r in rows] == [[q.key] for q in queries]
    assert {r["direction"] for r in rows} == {"t2i"} and all(len(r["ranked"]) == 10 for r in rows)
    rep = {m["metric"]: m["value"] for m in load_report(out)["metrics"]}
    for k in (1, 5, 10):
        assert saved_recall(rows, k) == pytest.approx(rep[f"recall@{k}"])
        assert sum(0 < r["rank"] <= k for r in rows) / 12 == pytest.approx(rep[f"recall@{k}"])
    # the lines are the beams themselves (the same search on the same weights, in memory)
    row_keys, _ = read_id_keys(ids_path)
    beams = retrieve_generative(grace_bundle.model, get_recipe("grace"), Trie.load(trie_path),
                                row_keys, queries, batch_size=4, length_penalty=-2.0)  # fmt: skip
    assert [r["ranked"] for r in rows] == beams


def test_trie_built_with_another_prefix_is_refused(grace_bundle, shards_dir, ids_path,
                                                   tokenizer_dir, tmp_path):  # fmt: skip
    from vlmdata.core.errors import DataError
    from vlmdata.trie.from_files import trie_from_ids

    wrong = tmp_path / "wrong.trie"
    trie_from_ids(ids_path, tokenizer_dir, split="test", prefix="#").save(wrong)
    with pytest.raises(DataError, match="prefix"):
        opts = GenerativeRetrievalOptions(
            data_dir=shards_dir, split="test", trie_path=wrong, ids_path=ids_path
        )
        run_generative_retrieval(opts, model_bundle=grace_bundle)


@pytest.fixture(scope="module")
def endofchunk_run(grace_bundle, ids_path, tokenizer_dir, tmp_path_factory):
    """GRACE's own set-up: a test-split trie built with `--eos <|endofchunk|>` through the CLI,
    and an export whose grace recipe ends its targets with that token."""
    from click.testing import CliRunner

    from cli.vlmdata import main as vlmdata_main
    from tests.eval.conftest import ENDOFCHUNK
    from vlmtrain.train.checkpoint import export_names, write_export
    from vlmtrain.train.config import RecipeConfig, TrainConfig

    root = tmp_path_factory.mktemp("eoc")
    args = ["build-trie", "--ids", str(ids_path), "--tokenizer", str(tokenizer_dir), "--split",
            "test", "--eos", ENDOFCHUNK, "-o", str(root / "eoc.trie")]  # fmt: skip
    res = CliRunner().invoke(vlmdata_main, args)
    assert res.exit_code == 0, res.output
    model, tok = grace_bundle.model, grace_bundle.tokenizer
    recipe = RecipeConfig(name="grace", options={"eos_token": ENDOFCHUNK})
    cfg = TrainConfig(model=grace_bundle.cfg.model, seed=0, recipe=recipe)
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if n in names}
    export = write_export(root / "export", state, cfg, tok, {"step": 60})
    return root / "eoc.trie", export


@pytest.mark.slow
def test_identifiers_ending_in_another_eos_are_retrieved_through_the_cli(
    endofchunk_run, grace_bundle, shards_dir, ids_path, tmp_path
):
    from click.testing import CliRunner

    from cli.vlmtrain import main
    from tests.eval.conftest import ENDOFCHUNK
    from vlmdata.trie import Trie
    from vlmtrain.eval.report import load_report
    from vlmtrain.recipes import get_recipe

    trie_path, export = endofchunk_run
    trie = Trie.load(trie_path)
    eoc = grace_bundle.tokenizer.convert_tokens_to_ids(ENDOFCHUNK)
    assert trie.eos_id == eoc != grace_bundle.tokenizer.eos_token_id
    out = tmp_path / "eoc.json"
    args = ["eval", "retrieval-generative", "--checkpoint", str(export), "--data",
            str(shards_dir), "--split", "test", "--trie", str(trie_path), "--ids",
            str(ids_path), "--length-penalty", "0", "-q", "-o", str(out)]  # fmt: skip
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    rep = load_report(out)
    # the oracle: every identifier + <|endofchunk|> ranked by the model's log-probs
    _row_keys, identifiers = read_id_keys(ids_path)
    queries = split_queries(shards_dir, "test")
    keys = sorted({q.key for q in queries})
    recipe = get_recipe("grace", eos_token=ENDOFCHUNK)
    ranked = _brute_force(grace_bundle.model, recipe, queries, identifiers, keys)
    expected = recall_at_k_ranked(ranked, [q.key for q in queries])
    values = {m["metric"]: m["value"] for m in rep["metrics"] if m["metric"].startswith("rec")}
    assert values == pytest.approx({f"recall@{k}": expected[k] for k in (1, 5, 10)})
    # cut at the tokenizer's eos, every lookup missed and recall was 0
    assert values["recall@1"] > 0 and rep["details"]["off_trie_beams"] < 12 * 10


def test_trie_eos_other_than_the_recipes_is_refused(endofchunk_run, grace_bundle, shards_dir,
                                                    ids_path):  # fmt: skip
    from vlmdata.core.errors import DataError

    trie_path, _export = endofchunk_run
    with pytest.raises(DataError, match=r"ends identifiers with '<\|endofchunk\|>'"):
        opts = GenerativeRetrievalOptions(data_dir=shards_dir, split="test", trie_path=trie_path,
                                          ids_path=ids_path)  # fmt: skip
        run_generative_retrieval(opts, model_bundle=grace_bundle)


def test_a_checkpoint_of_another_recipe_is_refused(tiny_bundle, shards_dir, ids_path, trie_path):
    from vlmdata.core.errors import DataError

    with pytest.raises(DataError, match="trained with the fromage recipe.*retrieval-embedding"):
        opts = GenerativeRetrievalOptions(data_dir=shards_dir, split="test",
                                          checkpoint="runs/fromage", trie_path=trie_path,
                                          ids_path=ids_path)  # fmt: skip
        run_generative_retrieval(opts, model_bundle=tiny_bundle("fromage"))
