"""Ordinary mistakes get a clear message and exit 2 (not a traceback and exit 3, not silence):
the list of issue 28, one test each."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from PIL import Image

from cli.vlmdata import main as vlmdata
from cli.vlmtrain import main as vlmtrain
from vlmdata.core import layout

NO_GPU = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="checks the message on a machine with no GPU"
)


def _run(main, args):
    return CliRunner().invoke(main, [str(a) for a in args])


@NO_GPU
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_eval_device_cuda_without_a_gpu(device):
    res = _run(vlmtrain, ["eval", "caption", "--predictions", __file__, "--device", device])
    assert res.exit_code == 2, res.output
    assert (
        "--device" in res.output and "no CUDA GPU is visible here; use --device cpu" in res.output
    )


@NO_GPU
def test_embed_device_cuda_without_a_gpu(tmp_path):
    res = _run(vlmdata, ["embed", tmp_path, "--model", "random:ViT-B-32", "--device", "cuda",
                         "-o", tmp_path / "e.npy"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "no CUDA GPU is visible here; use --device cpu" in res.output


def test_not_a_device_is_named():
    from vlmdata.core.device import check_device
    from vlmdata.core.errors import DataError

    assert check_device("cpu") == "cpu"
    with pytest.raises(DataError, match="'gpu0' is not a device"):
        check_device("gpu0")


@pytest.mark.parametrize(
    ("task", "metrics", "message"),
    [("caption", "CIDEr", "unknown metric 'CIDEr': did you mean CIDEr-D?"),
     ("caption", "BLEU-4,rouge", "unknown metric 'rouge'"),
     ("text-vqa", "bogus", "unknown metric 'bogus'")],
)  # fmt: skip
def test_metric_name_typo(task, metrics, message):
    res = _run(vlmtrain, ["eval", task, "--metrics", metrics])
    assert res.exit_code == 2, res.output
    assert message in res.output and "--metrics" in res.output
    assert "crashed" not in res.output


def test_embed_weights_file_missing(tmp_path):
    (tmp_path / layout.INDEX).parent.mkdir()
    (tmp_path / layout.INDEX).write_bytes(b"")  # only its presence is checked first
    res = _run(vlmdata, ["embed", tmp_path, "--model", "ViT-L-14:ViT-L-14-openai.safetensors",
                         "-o", tmp_path / "e.npy"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "the weights file ViT-L-14-openai.safetensors does not exist" in res.output
    assert "unknown open_clip model" not in res.output


def _jpeg(n: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (96, 96), (n * 40, 80, 120)).save(buf, "JPEG")
    return buf.getvalue()


def _karpathy(tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    entries = []
    for n in (1, 2):
        (images / f"{n}.jpg").write_bytes(_jpeg(n))
        entries.append({"filename": f"{n}.jpg", "imgid": n, "split": "test",
                        "sentences": [{"raw": f"caption {n}"}]})  # fmt: skip
    path = tmp_path / "dataset_flickr30k.json"
    path.write_text(json.dumps({"images": entries, "dataset": "flickr30k"}))
    return path, images


def _sides(out):
    from vlmdata.shards import ShardReader

    reader = ShardReader(out)
    return {Image.open(io.BytesIO(reader.get(k)["image"])).size for k in reader.index["key"]}


def test_shard_resize_side_without_resize_is_refused(tmp_path):
    path, images = _karpathy(tmp_path)
    assert _run(vlmdata, ["manifest", "karpathy", path, "-o", tmp_path / "m"]).exit_code == 0
    args = ["shard", tmp_path / "m" / layout.MANIFEST, "--images", images, "-o", tmp_path / "s"]
    res = _run(vlmdata, [*args, "--resize-side", 64])
    assert res.exit_code == 2
    assert "--resize-side 64 does nothing without --resize" in res.output
    res = _run(vlmdata, [*args, "--resize", "center_crop", "--resize-side", 64, "-q"])
    assert res.exit_code == 0, res.output
    assert _sides(tmp_path / "s") == {(64, 64)}


@pytest.mark.parametrize(
    "flags", [["--image-size", 64, "--resize-mode", "keep_ratio"], ["--resize", "center_crop",
                                                                     "--resize-side", 64]]
)  # fmt: skip
def test_download_local_images_are_resized_not_ignored(tmp_path, flags):
    path, images = _karpathy(tmp_path)
    res = _run(vlmdata, ["download", "flickr30k", path, "--images", images, "-o", tmp_path / "d",
                         "-q", *flags])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert _sides(tmp_path / "d") == {(64, 64)}


def test_download_local_images_refuse_a_download_only_mode(tmp_path):
    path, images = _karpathy(tmp_path)
    res = _run(vlmdata, ["download", "flickr30k", path, "--images", images, "-o", tmp_path / "d",
                         "--resize", "keep_ratio_largest"])  # fmt: skip
    assert res.exit_code == 2
    assert "--resize keep_ratio_largest resizes downloads only" in res.output


def test_resume_with_another_schedule_is_refused(tmp_path):
    from pathlib import Path

    from vlmtrain.train.launch import plan_launch

    configs = Path(__file__).resolve().parents[1] / "examples" / "configs"
    run = tmp_path / "runs" / "grace"
    plan_launch(configs / "grace_tiny.yaml", [f"output_dir={run}", "schedule.max_steps=8"],
                check=False)  # fmt: skip
    saved = run / "config.yaml"
    res = _run(vlmtrain, ["launch", saved, "--resume", "schedule.max_steps=16", "--dry-run"])
    assert res.exit_code == 2, res.output
    assert "schedule.max_steps 8 -> 16 would not take effect" in res.output
    assert str(saved) in res.output
    res = _run(vlmtrain, ["launch", saved, "--resume", "--dry-run"])  # the same schedule: fine
    assert res.exit_code == 0, res.output


def test_shard_of_a_url_manifest_says_to_download(tmp_path):
    tsv = tmp_path / "Validation_GCC-1.1.0-Validation.tsv"
    tsv.write_text("a dog on a beach\thttp://example.com/1.jpg\n"
                   "a red car\thttp://example.com/2.jpg\n")  # fmt: skip
    assert _run(vlmdata, ["manifest", "cc3m", tsv, "-o", tmp_path / "cc3m"]).exit_code == 0
    (tmp_path / "imgs").mkdir()
    res = _run(vlmdata, ["shard", tmp_path / "cc3m" / layout.MANIFEST, "--images",
                         tmp_path / "imgs", "-o", tmp_path / "out"])  # fmt: skip
    assert res.exit_code == 2, res.output
    assert "every row names a URL and no local file (a cc3m manifest)" in res.output
    assert "`vlmdata download cc3m ...`" in res.output
    assert not (tmp_path / "out").exists()


def test_llava_split_without_questions_names_the_splits(tmp_path):
    from vlmtrain.eval.tasks.llava import questions_from_records

    conv = json.dumps([{"from": "human", "value": "<image>\nWhat?"}, {"from": "gpt", "value": "A"}])
    img = tmp_path / "imgs" / "a.jpg"
    img.parent.mkdir()
    img.write_bytes(_jpeg(1))
    rows = [{"id": "a", "image": "a.jpg", "conversations": json.loads(conv)}]
    (tmp_path / "llava.json").write_text(json.dumps(rows))
    assert _run(vlmdata, ["manifest", "llava", tmp_path / "llava.json", "-o", tmp_path / "m"]
                ).exit_code == 0  # fmt: skip
    res = _run(vlmdata, ["shard", tmp_path / "m" / layout.MANIFEST, "--images",
                         tmp_path / "imgs", "-o", tmp_path / "s", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    from vlmdata.core.errors import DataError

    with pytest.raises(DataError, match=r"no LLaVA questions in split 'test'.*\['train'\]"):
        questions_from_records(tmp_path / "s", "test")
    assert len(questions_from_records(tmp_path / "s", "train")) == 1


def test_a_split_the_shards_lack_names_the_ones_they_have(tmp_path):
    from vlmdata.core.errors import DataError
    from vlmtrain.eval.data import load_index

    path, images = _karpathy(tmp_path)  # both images are in test
    assert _run(vlmdata, ["manifest", "karpathy", path, "-o", tmp_path / "m"]).exit_code == 0
    res = _run(vlmdata, ["shard", tmp_path / "m" / layout.MANIFEST, "--images", images, "-o",
                         tmp_path / "s", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with pytest.raises(
        DataError, match=r"no rows with split == 'val' \(the index has \['test'\]\)"
    ):
        load_index(tmp_path / "s", "val")
    assert load_index(tmp_path / "s", "test").height == 2
