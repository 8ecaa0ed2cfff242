"""Records, not images: four published shapes where many records share one image, end to end.

manifest (read_source) -> shards (write_shards) -> the records table / KEY.json / a peer reader
-> a training batch. Every record reaches the shards and one epoch's batches; each distinct
image's bytes are in the tars exactly once (counted member by member with `tarfile`).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections import Counter

import polars as pl
import pytest

from tests.records.conftest import CASES
from tests.train_loop.conftest import CONFIGS
from vlmdata.core import layout
from vlmdata.shards import list_shards, write_shards
from vlmdata.sources import read_source

IMAGE_EXTS = (".jpg", ".png", ".webp")
# recipe config and the overrides that point it at each case
RECIPES = {
    "llava_instruct_150k": ("llava_stage2_tiny.yaml", []),
    "llava_mix665k": ("llava_stage2_tiny.yaml", []),
    "vqav2": ("caption_tiny.yaml", []),
    "oven": ("autover_tiny.yaml", []),
}


def tar_images(out) -> list[bytes]:
    """The bytes of every image member of every tar, read with the standard library."""
    found = []
    for path in list_shards(out):
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                if m.name.endswith(IMAGE_EXTS):
                    found.append(tar.extractfile(m).read())
    return found


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    tmp = tmp_path_factory.mktemp(request.param)
    case = CASES[request.param](tmp)
    result = read_source(case.source, case.inputs, tmp / "m", **case.options)
    summary = write_shards(
        tmp / "m" / layout.MANIFEST, case.images, tmp / "out", samples_per_shard=4,
        progress=False,
    )  # fmt: skip
    return request.param, case, result, summary, tmp / "out"


def test_every_record_reaches_the_shards(built):
    name, case, result, summary, out = built
    assert result.kept == case.records and sum(result.rejects.values()) == 0
    assert summary.kept == case.records and summary.rejected == 0
    records = pl.read_parquet(out / layout.RECORDS)
    assert records.height == case.records == records["key"].n_unique()
    manifest = pl.read_parquet(out / layout.MANIFEST)
    assert records["key"].to_list() == manifest["key"].to_list()  # manifest order
    index = pl.read_parquet(out / layout.INDEX)
    assert set(records["image_key"]) == set(index["key"])
    per_image = dict(records.group_by("image_key").len().iter_rows())
    assert dict(zip(index["key"], index["n_records"], strict=True)) == per_image


def test_each_image_is_stored_once(built):
    name, case, result, summary, out = built
    stored = tar_images(out)
    assert summary.images == len(case.image_files) == len(stored)
    assert Counter(map(sha, stored)) == Counter(map(sha, case.image_files.values()))
    assert sum(map(len, stored)) == sum(map(len, case.image_files.values()))


def test_key_json_lists_the_records_and_peers_read_them(built):
    import webdataset as wds

    from vlmdata.shards import iter_tar_samples, records_of_sample

    name, case, result, summary, out = built
    records = pl.read_parquet(out / layout.RECORDS)
    want = {k: list(g["key"]) for (k,), g in records.group_by("image_key", maintain_order=True)}
    urls = [str(p) for p in list_shards(out)]
    seen = {}
    for s in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(s["json"])
        seen[s["__key__"]] = [r["key"] for r in meta.get("records", [{"key": meta["key"]}])]
    assert seen == want
    streamed = [r["key"] for p in list_shards(out) for i in iter_tar_samples(p)
                for r in records_of_sample(i)]  # fmt: skip
    assert sorted(streamed) == sorted(records["key"])


def test_repeated_ids_are_suffixed_and_kept(built):
    name, case, result, summary, out = built
    records = pl.read_parquet(out / layout.RECORDS)
    if case.source == "llava":
        originals = records["data_id"].to_list()
        assert len(set(originals)) < len(originals)  # the published files repeat ids
        for key, data_id in zip(records["key"], originals, strict=True):
            assert key == f"llava_{data_id}" or key.startswith(f"llava_{data_id}_")
        assert result.extra.get("renamed") == len(originals) - len(set(originals))
    else:
        assert "renamed" not in result.extra


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from vlmdata.core.tokenizer import train_tokenizer

    texts = [
        "A chat between a curious user and an artificial intelligence assistant. USER: "
        "ASSISTANT: What is in picture take? Thing Done. And then? Describe colour Answer the "
        "question using a single word or phrase. Red Please provide the bounding box region dog "
        "Who wrote this book? Genre Art sign say stop Box Question: Is here? yes no Answer: "
        "what is this building? who designed it? Entity Architect entity: 0 1 2 3 4 5 6 7 8 9"
    ] * 20
    path = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(texts, path, vocab_size=300)
    return path


def recipe_context(cfg, tokenizer_dir):
    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.data.transforms import build_image_transform
    from vlmtrain.model.vlm import add_model_tokens
    from vlmtrain.recipes import RecipeContext

    tok = load_tokenizer(tokenizer_dir)
    add_model_tokens(tok, cfg.model)
    ret = tok.convert_tokens_to_ids(cfg.model.ret_token) if cfg.model.ret_token else None
    return RecipeContext(
        tokenizer=tok,
        image_transform=build_image_transform(32, (0.5,) * 3, (0.5,) * 3, "pad", ""),
        num_image_tokens=4,
        image_token_id=tok.convert_tokens_to_ids(cfg.model.image_token),
        ret_token_id=ret,
        max_length=cfg.data.max_length,
    )


@pytest.mark.parametrize("mode", ["indexed", "streaming"])
def test_one_epoch_of_batches_visits_every_record_once(built, tokenizer_dir, tmp_path, mode):
    from vlmtrain.data.train_data import TrainData
    from vlmtrain.recipes import get_recipe
    from vlmtrain.train.config import load_config

    name, case, result, summary, out = built
    config, extra = RECIPES[name]
    overrides = [f"data.shards={out}", f"model.tokenizer={tokenizer_dir}",
                 f"output_dir={tmp_path / 'run'}", f"data.batch_size={case.records}",
                 "data.max_length=256", f"data.mode={mode}", "data.num_workers=0",
                 "data.shuffle_buffer=1", "data.resampled=false", *extra]  # fmt: skip
    cfg = load_config(CONFIGS / config, overrides)
    recipe = get_recipe(cfg.recipe.name, **dict(cfg.recipe.options))
    data = TrainData(cfg, recipe, recipe_context(cfg, tokenizer_dir), rank=0, world=1)
    assert data.sizes == [case.records] and data.batches_per_epoch == 1
    (batch,) = list(data.batches(0, 1))
    records = pl.read_parquet(out / layout.RECORDS)
    assert sorted(batch.keys) == sorted(records["key"])  # each record once
    assert batch.skipped == {}
    assert batch.batch["pixel_values"].shape[0] == case.records
    assert bool((batch.batch["labels"] != -100).any(dim=1).all())  # every record supervised
    if name == "vqav2":  # VQA fine-tuning: the question is in the prompt, the answer supervised
        text = data.contexts[0].tokenizer.decode(batch.batch["input_ids"][0])
        assert "Question: Is" in text and "Answer:" in text


def test_vqa_is_scored_on_the_records(built, tmp_path):
    """`vlmtrain eval vqa --data` without the JSON pair: questions and the ten answers come from
    the records. Expected values from the VQA definition (min(1, matches/3) averaged over the
    ten leave-one-out subsets): every question has 8 x "yes" and 2 x "no", so "yes" scores 1.0
    and "no" scores (2 x 1/3 + 8 x 2/3) / 10 = 0.6."""
    from vlmtrain.eval.options import VqaOptions
    from vlmtrain.eval.tasks.vqa import run_vqa

    name, case, result, summary, out = built
    if name != "vqav2":
        pytest.skip("VQAv2 records only")
    qids = pl.read_parquet(out / layout.RECORDS)["data_id"].cast(pl.Int64).to_list()
    for answer, want in [("yes", 1.0), ("no", 0.6)]:
        preds = tmp_path / f"{answer}.json"
        preds.write_text(json.dumps([{"question_id": q, "answer": answer} for q in qids]))
        report = run_vqa(VqaOptions(predictions=preds, data_dir=out, split="train"))
        assert report.value("accuracy") == pytest.approx(want)
        assert report.metrics[0]["count"] == case.records


def test_oven_references_are_the_records(built):
    from vlmtrain.eval.tasks.oven import references_from_index

    name, case, result, summary, out = built
    if name != "oven":
        pytest.skip("OVEN records only")
    refs = references_from_index(out, "entity")
    assert len(refs) == 6 and {r["data_split"] for r in refs} == {"entity_train"}
    assert len(references_from_index(out, "query")) == 3


def test_oven_eval_refuses_a_split_without_a_side(built, tmp_path):
    """The train splits load as references, but OVEN is scored per seen / unseen side: `eval
    oven` on them is refused before any model runs, naming the split and the folder."""
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.options import OvenOptions
    from vlmtrain.eval.tasks.oven import run_oven

    name, case, result, summary, out = built
    if name != "oven":
        pytest.skip("OVEN records only")
    preds = tmp_path / "preds.jsonl"
    preds.write_text("")
    opts = OvenOptions(data_dir=out, split_prefix="entity", predictions=[preds])
    with pytest.raises(DataError, match="'entity_train' is neither seen nor unseen") as err:
        run_oven(opts)
    assert str(out) in str(err.value)


def test_hf_datasets_reads_every_record(built, tmp_path):
    """HF `datasets.load_dataset("webdataset")` infers one schema over samples with and
    without `records`; every record is there."""
    datasets = pytest.importorskip("datasets")
    name, case, result, summary, out = built
    files = [str(p) for p in list_shards(out)]
    ds = datasets.load_dataset(
        "webdataset", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert ds.num_rows == len(case.image_files)
    keys = [r["key"] for row in ds for r in (row["json"].get("records") or [row["json"]])]
    assert sorted(keys) == sorted(pl.read_parquet(out / layout.RECORDS)["key"])
