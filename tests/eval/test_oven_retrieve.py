"""`vlmtrain eval oven --retrieve K` on a tiny AutoVER model and a 1,000-entity KB.

Fixture shapes: OVEN records {data_id, image_id, question, entity_id, entity_text, data_split}
with the published split names (`entity_val_seen`, `query_val_unseen`, ...: the data_split
values of OVEN's oven_{entity,query}_val.jsonl); the KB as `vlmdata manifest oven-kb` writes
entities.parquet from Wiki6M_ver_1_0.jsonl (entity_id, entity_name, url, content).
Oracle: AutoVER's universal_trie_decoder.py scores `ret @ entity_embeddings.T` and takes topk;
here each entity and query is embedded alone (no batching, no padding) and ranked by numpy.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from tests.eval.conftest import png_bytes
from vlmdata.core import layout

TINY_CLIP = {
    "text": {"vocab_size": 512, "hidden_size": 16, "intermediate_size": 32,
             "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77},
    "vision": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
               "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
}  # fmt: skip
N_ENTITIES, K = 1000, 5
SPLITS = ["entity_val_seen", "entity_val_unseen", "query_val_seen", "query_val_unseen"]
WORDS = ["red", "green", "black", "white", "small", "boat", "cat", "dogs", "lake", "star"]


def _name(i: int) -> str:
    return f"{WORDS[i % 10]} {WORDS[(i // 10) % 10]} {WORDS[i // 100]}"


@pytest.fixture(scope="module")
def kb_data(tmp_path_factory, tokenizer_dir):
    from vlmdata.core.manifest import ManifestSink
    from vlmdata.shards import write_shards
    from vlmdata.trie.from_files import trie_from_entities

    root = tmp_path_factory.mktemp("oven_kb")
    (root / "images").mkdir()
    extra = ["data_id", "entity_id", "entity_name", "question"]
    gold = [7, 123, 456, 999, 42, 500]
    with ManifestSink(root / "work", extra_columns=extra) as sink:
        for j, e in enumerate(gold):
            (root / "images" / f"o{j}.png").write_bytes(png_bytes(j + 30))
            sink.keep({"key": f"o{j}", "source": "oven", "split": SPLITS[j % 4],
                       "path": f"o{j}.png", "texts": ["what is this?"], "data_id": f"d{j}",
                       "entity_id": f"Q{e}", "entity_name": _name(e),
                       "question": "what is this?"})  # fmt: skip
    write_shards(root / "work" / layout.MANIFEST, root / "images", root / "out", progress=False)
    ents = root / "entities.parquet"
    pl.DataFrame({
        "entity_id": [f"Q{i}" for i in range(N_ENTITIES)],
        "entity_name": [_name(i) for i in range(N_ENTITIES)],
        "url": [None] * N_ENTITIES,
        "content": [f"the {_name(i)} is a thing. It is number {i}." for i in range(N_ENTITIES)],
    }).write_parquet(ents, row_group_size=128)  # fmt: skip
    trie_from_entities(ents, tokenizer_dir).save(root / "entities.trie")
    return root, gold


@pytest.fixture(scope="module")
def autover_bundle(tiny_bundle, tokenizer_dir):
    return tiny_bundle(
        "autover", {"contrastive": True}, new_tokens=["<ret>"], ret_token="<ret>",
        retrieval_dim=8, entity_encoder_config=TINY_CLIP, entity_tokenizer=str(tokenizer_dir),
    )  # fmt: skip


def test_top_k_blocks_equal_one_argsort():
    from vlmtrain.eval.tasks.oven_retrieval import top_k

    g = np.random.default_rng(0)
    kb, q = g.standard_normal((1000, 8)), g.standard_normal((7, 8))
    scores, rows = top_k(q, kb, 10, block_rows=64, query_chunk=3)
    full = q @ kb.T
    want = np.argsort(-full, axis=1)[:, :10]
    assert (rows == want).all()
    assert np.allclose(scores, np.take_along_axis(full, want, 1), atol=1e-5)


def test_retrieve_equals_brute_force_and_decodes_within(autover_bundle, kb_data, tmp_path):
    from vlmtrain.eval.tasks.oven_decoding import oven_samples as _oven_samples
    from vlmtrain.eval.tasks.oven_decoding import recognise_entities
    from vlmtrain.eval.tasks.oven_retrieval import retrieve_candidates
    from vlmtrain.recipes import RecipeContext
    from vlmtrain.recipes.autover import open_kb

    root, gold = kb_data
    data_ids = [f"d{j}" for j in range(len(gold))]
    model, cache = autover_bundle.model, tmp_path / "cache"
    got = retrieve_candidates(autover_bundle, root / "out", data_ids, root / "entities.parquet",
                              K, cache_dir=cache, batch_size=4)  # fmt: skip
    (cached,) = cache.glob("kb-*.npy")
    # oracle: every entity and query embedded alone, ranked by numpy
    ctx, kb = RecipeContext.for_model(model), open_kb(str(root / "entities.parquet"))
    recipe = get_autover(autover_bundle)
    with torch.no_grad():
        ents = []
        for i in range(N_ENTITIES):
            ids, pix = ctx.entity.make(kb.entry(f"Q{i}"), None)
            ents.append(
                model.encode_entities(
                    pix[None], torch.tensor([ids]), torch.ones(1, len(ids), dtype=torch.long)
                )[0]
            )
        ents = torch.stack(ents).numpy()
        assert np.allclose(np.load(cached), ents, atol=1e-5)
        queries = []
        for s in _oven_samples(root / "out", data_ids):
            ids = torch.tensor([recipe.prompt(ctx, s["meta"]["question"]).input_ids])
            out = model(ids, torch.ones_like(ids), pixel_values=ctx.pixel_values(s)[None],
                        output_hidden_states=True)  # fmt: skip
            queries.append(model.encode_ret(out.hidden_states[-1][0, -1:])[0])
        queries = torch.stack(queries).numpy()
    want = np.argsort(-(queries @ ents.T), axis=1)[:, :K]
    assert got == {d: [f"Q{r}" for r in want[j]] for j, d in enumerate(data_ids)}
    # decoding under each query's own candidate trie: every prediction is one of its K
    preds = recognise_entities(
        None,
        root / "out",
        data_ids,
        trie=root / "entities.trie",
        candidates=got,
        beams=3,
        entities=root / "entities.parquet",
        max_new_tokens=12,
        batch_size=3,
        model_bundle=autover_bundle,
    )
    assert all(preds[d] in got[d] for d in data_ids), (preds, got)
    # the cache is reused: a second call reads it (same file, same answer)
    again = retrieve_candidates(autover_bundle, root / "out", data_ids,
                                root / "entities.parquet", K, cache_dir=cache)  # fmt: skip
    assert again == got and list(cache.glob("kb-*.npy")) == [cached]


def get_autover(bundle):
    from vlmtrain.eval.generation import recipe_of

    return recipe_of(bundle.cfg, "autover")


@pytest.mark.parametrize("style", ["published", "legacy"])
def test_run_oven_reports_k_and_recall(autover_bundle, kb_data, tmp_path, style):
    """Scored with the published split names (issue 28 teaches the scorer those) or the
    earlier `val_entity_seen` spelling, whichever the scorer of this tree accepts."""
    import json

    from vlmdata.core.errors import DataError
    from vlmtrain.eval.options import OvenOptions
    from vlmtrain.eval.tasks.oven import read_oven_predictions, run_oven, score_oven

    root, gold = kb_data
    names = SPLITS if style == "published" else [f"val_{s.replace('_val', '')}" for s in SPLITS]
    refs = [{"data_id": f"d{j}", "entity_id": f"Q{e}", "data_split": names[j % 4]}
            for j, e in enumerate(gold)]  # fmt: skip
    try:
        score_oven(refs, {r["data_id"]: r["entity_id"] for r in refs})
    except DataError as e:
        pytest.skip(f"this tree's scorer does not read {style} split names ({e})")
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    saved, cands = tmp_path / "pred.jsonl", tmp_path / "cands.jsonl"
    opts = OvenOptions(data_dir=root / "out", references=[tmp_path / "refs.jsonl"],
                       trie=root / "entities.trie", entities=root / "entities.parquet",
                       retrieve=K, kb_cache=tmp_path / "cache", save_candidates=cands,
                       save_predictions=saved, beams=3, max_new_tokens=12,
                       batch_size=3)  # fmt: skip
    rep = run_oven(opts, model_bundle=autover_bundle)
    got = {r["data_id"]: r["candidates"] for r in map(json.loads, cands.read_text().splitlines())}
    hits = sum(f"Q{e}" in got[f"d{j}"] for j, e in enumerate(gold))
    assert rep.value(f"retrieval_recall@{K}") == pytest.approx(100 * hits / len(gold))
    assert rep.config["retrieve"] == K
    preds = read_oven_predictions([saved])
    assert all(preds[d] in got[d] for d in got)


def test_cli_retrieve_from_an_export(autover_bundle, kb_data, tmp_path):
    """`vlmtrain eval oven --checkpoint EXPORT --retrieve K`: the report names K and its recall,
    the saved candidates hold K entities each, and the CLI's bad K is a usage error."""
    import json

    from click.testing import CliRunner

    from cli.vlmtrain import main
    from vlmtrain.train.checkpoint import export_names, write_export

    root, gold = kb_data
    model, cfg = autover_bundle.model, autover_bundle.cfg
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    export = write_export(tmp_path / "export", state, cfg, autover_bundle.tokenizer, {"step": 0})
    sides = ["val_entity_seen", "val_entity_unseen"] * 3
    refs = [{"data_id": f"d{j}", "entity_id": f"Q{e}", "data_split": sides[j]}
            for j, e in enumerate(gold)]  # fmt: skip
    (tmp_path / "refs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in refs))
    args = ["eval", "oven", "--checkpoint", str(export), "--data", str(root / "out"),
            "--references", str(tmp_path / "refs.jsonl"), "--trie", str(root / "entities.trie"),
            "--entities", str(root / "entities.parquet"), "--kb-cache", str(tmp_path / "c"),
            "--save-candidates", str(tmp_path / "cands.jsonl"), "--beams", "2",
            "--max-new-tokens", "12", "--quiet", "-o", str(tmp_path / "rep.json")]  # fmt: skip
    res = CliRunner().invoke(main, [*args, "--retrieve", "4"])
    if res.exit_code == 2 and "split" in res.output:  # a scorer that reads only new names
        pytest.skip("this tree's scorer reads other split names (issue 28)")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "rep.json").read_text())
    assert rep["config"]["retrieve"] == 4
    got = [json.loads(x) for x in (tmp_path / "cands.jsonl").read_text().splitlines()]
    assert [len(r["candidates"]) for r in got] == [4] * len(gold)
    hits = sum(r["candidates"].count(ref["entity_id"]) for r, ref in zip(got, refs, strict=True))
    metric = {m["metric"]: m for m in rep["metrics"]}["retrieval_recall@4"]
    assert metric["value"] == pytest.approx(100 * hits / len(gold)) and metric["count"] == 6
    assert CliRunner().invoke(main, [*args, "--retrieve", "0"]).exit_code == 2


def test_help_examples_with_a_checkpoint_run_as_written(autover_bundle, kb_data, tmp_path):
    """`vlmtrain eval oven --help`'s two --checkpoint examples, run as written in a folder where
    runs/autover is an export of the tiny AutoVER model, oven/ its OVEN shards (published split
    names, so the default --split val selects them), entities.* the 1,000-entity KB and its trie,
    kb-shards/ the KB's image shards (keys wiki_QID; the other entities have no image)."""
    import json
    import os
    import shlex

    from click.testing import CliRunner

    from cli.vlmtrain import main
    from tests.test_documented_examples import help_examples
    from vlmdata.core.manifest import ManifestSink
    from vlmdata.shards import write_shards
    from vlmtrain.train.checkpoint import export_names, write_export

    root, gold = kb_data
    model, cfg = autover_bundle.model, autover_bundle.cfg
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone() for n, p in model.named_parameters() if n in names}
    (tmp_path / "runs").mkdir()
    write_export(tmp_path / "runs" / "autover", state, cfg, autover_bundle.tokenizer, {"step": 0})
    (tmp_path / "kb").mkdir()
    for link, target in (("oven", root / "out"), ("entities.trie", root / "entities.trie"),
                         ("entities.parquet", root / "entities.parquet"),
                         ("kb/entities.parquet", root / "entities.parquet")):  # fmt: skip
        (tmp_path / link).symlink_to(target)
    (tmp_path / "kb-images").mkdir()
    with ManifestSink(tmp_path / "kb-work") as sink:
        for e in gold[:3]:
            (tmp_path / "kb-images" / f"Q{e}.png").write_bytes(png_bytes(e))
            sink.keep({"key": f"wiki_Q{e}", "source": "oven_kb", "split": "train",
                       "path": f"Q{e}.png", "texts": [_name(e)]})  # fmt: skip
    write_shards(tmp_path / "kb-work" / layout.MANIFEST, tmp_path / "kb-images",
                 tmp_path / "kb-shards", progress=False)  # fmt: skip
    examples = [e for page, e in help_examples() if "eval oven --checkpoint runs/autover" in e]
    assert len(examples) == 2
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        for example in examples:
            res = CliRunner().invoke(main, shlex.split(example)[1:])
            assert res.exit_code == 0, f"{example}\n{res.output}"
            rep = json.loads((tmp_path / "oven.json").read_text())
            counts = {m["metric"]: m["count"] for m in rep["metrics"]}
            assert counts["final_score"] == len(gold)  # every val reference scored
            assert counts["query_score"] + counts["entity_score"] == len(gold)
            if "--retrieve 100" in example:
                assert rep["config"]["retrieve"] == 100
                assert counts["retrieval_recall@100"] == len(gold)
    finally:
        os.chdir(cwd)
