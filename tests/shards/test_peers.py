"""Peers read the shards as they are (issue 24): the README's "Use the shards elsewhere"
commands, run as written on a shard set of the demo's images, from this environment.

The shard set: the demo generator (vlmdata/demo, five captions per image) with 130 train and
30 test images, `--samples-per-shard 50`: three train shards and one test shard, the layout
the README's patterns name. OpenCLIP gets the demo's tiny CLIP config (vlmdata/demo/clip.py)
through `local-dir:` in place of ViT-B-32.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmdata import main as vlmdata_cli
from vlmdata.core import layout

ROOT = Path(__file__).resolve().parents[2]
TRAIN, TEST = 130, 30


def _cli(*args) -> str:
    res = CliRunner().invoke(vlmdata_cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


@pytest.fixture(scope="module")
def demo_manifest(tmp_path_factory):
    from vlmdata.demo.dataset import generate_demo

    root = tmp_path_factory.mktemp("peers")
    generate_demo(root / "data", images=TRAIN + TEST, test=TEST, val=0, size=32, progress=False)
    _cli("manifest", "karpathy", root / "data" / "dataset_demo.json", "-o", root / "m")
    return root, root / "m" / layout.MANIFEST, root / "data" / "images"


@pytest.fixture(scope="module")
def peer_set(demo_manifest):
    root, manifest, images = demo_manifest
    out = root / "out"
    printed = _cli("shard", manifest, "--images", images, "-o", out, "--samples-per-shard", 50,
                   "--quiet")  # fmt: skip
    return out, printed


def readme_blocks() -> list[tuple[str, str]]:
    """(language, code) of each fenced block in the README's "Use the shards elsewhere"."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Use the shards elsewhere", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(\w+)\n(.*?)```", section, flags=re.S)


def _block(lang: str, needle: str) -> str:
    found = [code for kind, code in readme_blocks() if kind == lang and needle in code]
    assert len(found) == 1, f"README has no single {lang} block with {needle!r}"
    return found[0]


def _run_python(code: str, out: Path) -> list[str]:
    res = subprocess.run(
        [sys.executable, "-c", code.replace("OUT", str(out))],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=out.parent,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()


def test_demo_shards_hold_one_split_each_with_sizes_json(demo_manifest, peer_set):
    out, printed = peer_set
    index = pl.read_parquet(out / layout.INDEX)
    per_shard = index.group_by("shard").agg(pl.col("split").unique())
    assert all(len(s) == 1 for s in per_shard["split"])
    for shard, (split,) in per_shard.iter_rows():
        assert shard.split("/")[1] == split  # the split's own folder
    manifest = pl.read_parquet(demo_manifest[1])
    for split, n in (("train", TRAIN), ("test", TEST)):
        assert manifest.filter(pl.col("split") == split).height == n
        # OpenCLIP's convention: {shard file name: samples} beside the shards
        sizes = json.loads((out / "shards" / split / "sizes.json").read_text())
        tars = sorted(p.name for p in (out / "shards" / split).glob("*.tar"))
        assert sorted(sizes) == tars and sum(sizes.values()) == n
    assert f"{TRAIN:>10,} samples  {out}/shards/train/data-{{000000..000002}}.tar" in printed
    assert f"{TEST:>10,} samples  {out}/shards/test/data-000000.tar" in printed
    inspected = _cli("inspect", out)
    assert f"{out}/shards/train/data-{{000000..000002}}.tar" in inspected


def _openclip_args(out: Path, tmp_path: Path) -> list[str]:
    from vlmdata.demo.clip import save_demo_clip

    clip = save_demo_clip(tmp_path / "clip", image_size=32, width=32)
    command = _block("bash", "open_clip_train.main").replace("\\\n", " ")
    command = command.replace("OUT", str(out)).replace("LOGS", str(tmp_path / "logs"))
    command = command.replace("ViT-B-32", f"local-dir:{clip}")
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "open_clip_train.main"]
    return [sys.executable, *args[1:]]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_openclip_trains_on_train_shards_and_reports_recall(peer_set, tmp_path):
    out, _ = peer_set
    args = _openclip_args(out, tmp_path)
    env_threads = {"OMP_NUM_THREADS": "2", "PYTHONPATH": str(ROOT)}
    import os

    res = subprocess.run(args, capture_output=True, text=True, timeout=800,
                         env={**os.environ, **env_threads}, cwd=tmp_path)  # fmt: skip
    log = res.stdout + res.stderr
    assert res.returncode == 0, log[-4000:]
    # every logged step: "Contrastive_loss: <this step> (<running mean>)"
    losses = [float(v) for v in re.findall(r"Contrastive_loss: ([0-9.]+) \(", log)]
    steps_per_epoch = -(-TRAIN // 32)  # sizes.json gave the count: no --train-num-samples
    assert len(losses) >= 4 * steps_per_epoch - 1, log[-3000:]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - 0.2, losses
    results = tmp_path / "logs" / "peers" / "checkpoints" / "results.jsonl"
    metrics = [json.loads(line) for line in results.read_text().splitlines()]
    assert metrics[-1]["num_samples"] == TEST  # evaluated on the test split's shard only
    for way in ("image_to_text", "text_to_image"):  # recall at 1, 5, 10 over the 30 images
        r = [metrics[-1][f"{way}_R@{k}"] for k in (1, 5, 10)]
        assert 0.0 <= r[0] <= r[1] <= r[2] <= 1.0 and all(round(v * TEST, 6) % 1 == 0 for v in r)
    print("openclip losses", losses[:3], losses[-3:], "eval", metrics[-1])


@pytest.fixture(scope="module")
def every_text_set(demo_manifest):
    root, manifest, images = demo_manifest
    out = root / "every"
    _cli("shard", manifest, "--images", images, "-o", out, "--samples-per-shard", 50,
         "--every-text", "--quiet")  # fmt: skip
    return out


@pytest.mark.timeout(600)
def test_every_text_openclip_sees_every_caption(demo_manifest, peer_set, every_text_set, tmp_path):
    """OpenCLIP's own webdataset pipeline (get_wds_dataset), one epoch of the train split:
    the captions it tokenizes are every train caption of the manifest, each once."""
    import argparse

    from open_clip_train.data import get_wds_dataset

    manifest = pl.read_parquet(demo_manifest[1]).filter(pl.col("split") == "train")
    want = sorted(t for texts in manifest["texts"] for t in texts)
    assert len(want) == 5 * TRAIN  # the demo's five captions per image

    def captions_seen(out: Path) -> list[str]:
        seen: list[str] = []

        def tokenizer(text):
            seen.append(text)
            return text

        last = len(list((out / "shards" / "train").glob("*.tar"))) - 1
        pattern = f"{out}/shards/train/data-{{000000..{last:06d}}}.tar"
        args = argparse.Namespace(
            train_data=pattern, train_num_samples=None, train_data_upsampling_factors=None,
            dataset_resampled=False, batch_size=1, workers=0, world_size=1, seed=0,
        )  # fmt: skip
        info = get_wds_dataset(args, lambda im: im, is_train=True, epoch=0, tokenizer=tokenizer)
        info.set_epoch(0)
        for _ in info.dataloader:
            pass
        return seen

    assert sorted(captions_seen(every_text_set)) == want
    first_only = captions_seen(peer_set[0])
    assert len(first_only) == TRAIN and set(first_only) < set(want)
    # what it costs: the shard bytes of each layout (README, "Use the shards elsewhere")
    size = {o: sum(p.stat().st_size for p in (o / "shards").glob("*/*.tar"))
            for o in (peer_set[0], every_text_set)}  # fmt: skip
    ratio = size[every_text_set] / size[peer_set[0]]
    print(f"every-text shards: {ratio:.2f}x the bytes")
    assert 3 < ratio < 5.5
    from vlmdata.shards.verify import verify_shards

    assert verify_shards(every_text_set).ok


def test_readme_webdataset_wids_duckdb_commands(demo_manifest, peer_set):
    out, _ = peer_set
    wds_count = _run_python(_block("python", "import webdataset"), out)
    assert wds_count == [str(TRAIN)]
    n, first_key = _run_python(_block("python", "import wids"), out)[0].split()
    index = pl.read_parquet(out / layout.INDEX)
    assert int(n) == TRAIN + TEST and first_key == index["key"][0]
    images, records, first = _run_python(_block("python", "import duckdb"), out)
    manifest = pl.read_parquet(demo_manifest[1])
    per_split = sorted(manifest.group_by("split").len().iter_rows())  # the oracle: the input
    assert images == str(per_split) and records == str(per_split)
    row = index.sort("shard", "sample_offset").row(0, named=True)
    assert first == str([(row["key"], row["shard"], row["sample_offset"], row["size"])])


def test_readme_hf_datasets_command(peer_set):
    out, _ = peer_set
    rows, records = map(int, _run_python(_block("python", "load_dataset"), out)[0].split())
    assert rows == records == TRAIN


@pytest.mark.timeout(600)
def test_hf_datasets_returns_every_record_when_first_samples_have_one(tmp_path):
    """Records shared on images (vqav2-like, `share`): the first six images carry one record
    each, the rest three; HF infers columns from the first samples (NUM_EXAMPLES_FOR_FEATURES_
    INFERENCE = 5 in datasets' webdataset builder) and must still return every record."""
    from datasets import load_dataset

    from tests.shards.conftest import image_bytes, row, write_manifest

    images = tmp_path / "img"
    images.mkdir()
    rows = []
    for i in range(12):
        (images / f"{i}.jpg").write_bytes(image_bytes(i))
        for j in range(1 if i < 6 else 3):
            rows.append(row(f"q{i}_{j}", f"{i}.jpg", source="vqav2", image_key=f"img{i}"))
    manifest = write_manifest(tmp_path / "m.parquet", rows, extras=("image_key",))
    out = tmp_path / "out"
    _cli("shard", manifest, "--images", images, "-o", out, "--duplicate-images", "share",
         "--quiet")  # fmt: skip
    for streaming in (False, True):
        ds = load_dataset("webdataset", data_files={"train": f"{out}/shards/train/*.tar"},
                          split="train", streaming=streaming)  # fmt: skip
        got = [r["key"] for s in ds for r in s["json"]["records"]]
        assert got == [r["key"] for r in rows], streaming  # 42 records on 12 samples


def test_a_split_that_cannot_name_a_folder_is_a_reject_and_none_is_nosplit(tmp_path):
    from tests.shards.conftest import image_bytes, row, write_manifest
    from vlmdata.shards import write_shards

    images = tmp_path / "img"
    images.mkdir()
    rows = [row(f"k{i}", f"{i}.jpg", split=split)
            for i, split in enumerate(["train", "../up", None, "val 2", "train"])]  # fmt: skip
    for i in range(len(rows)):
        (images / f"{i}.jpg").write_bytes(image_bytes(i))
    s = write_shards(write_manifest(tmp_path / "m.parquet", rows), images, tmp_path / "out",
                     progress=False)  # fmt: skip
    assert dict(s.rejects) == {"bad_split": 2}
    index = pl.read_parquet(tmp_path / "out" / layout.INDEX)
    assert index.select("key", "shard").rows() == [
        ("k0", "shards/train/data-000000.tar"),
        ("k4", "shards/train/data-000000.tar"),
        ("k2", "shards/nosplit/data-000000.tar"),
    ]
