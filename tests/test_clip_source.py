"""One open_clip naming rule (vlmdata.core.clip_source) for `vlmdata embed`, the training vision
tower and the CLIP eval baseline: each form resolves the same way, a bare architecture name
without weights is refused by all three, and the three give the same image embedding."""

from __future__ import annotations

import io

import pytest

from vlmdata.core.clip_source import ClipSource, resolve_clip
from vlmdata.core.errors import DataError


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from vlmdata.demo.clip import save_demo_clip

    return save_demo_clip(tmp_path_factory.mktemp("clip") / "clip", seed=1, image_size=32)


def test_each_form_resolves(clip_dir, tmp_path):
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"")
    config = tmp_path / "tiny.json"
    config.write_text("{}")
    assert resolve_clip(str(clip_dir)) == ClipSource("local-dir", f"local-dir:{clip_dir}")
    assert resolve_clip(f"local-dir:{clip_dir}") == resolve_clip(str(clip_dir))
    assert resolve_clip(f"ViT-B-32:{weights}") == ClipSource("checkpoint", "ViT-B-32", str(weights))
    assert resolve_clip("ViT-B-32", str(weights)) == resolve_clip(f"ViT-B-32:{weights}")
    assert resolve_clip("random:ViT-B-32") == ClipSource("random", "ViT-B-32")
    assert resolve_clip(str(config)) == ClipSource("config", str(config))


@pytest.mark.parametrize(
    "model, message",
    [
        ("ViT-B-32", "open_clip model 'ViT-B-32' has no weights"),
        ("random:ViT-Nope", "unknown open_clip model 'ViT-Nope'"),
        ("ViT-Nope", "unknown open_clip model 'ViT-Nope'"),
        ("local-dir:/no/such/dir", "local-dir:/no/such/dir: no such open_clip folder"),
    ],
)
def test_bad_names_are_refused(model, message):
    with pytest.raises(DataError, match=message):
        resolve_clip(model)
    with pytest.raises(DataError, match="must be a local checkpoint file"):
        resolve_clip("ViT-B-32", "openai")  # a tag would download: never


def test_all_three_callers_refuse_a_bare_name_the_same_way():
    from vlmdata.ids.embed import load_clip
    from vlmtrain.eval.tasks.embedding import clip_encoders
    from vlmtrain.model.vision import build_visual

    for call in (
        lambda: load_clip("ViT-B-32"),
        lambda: build_visual("ViT-B-32"),
        lambda: clip_encoders("ViT-B-32", None, "cpu"),
    ):
        with pytest.raises(DataError, match="has no weights"):
            call()


def test_all_three_callers_load_the_same_weights(clip_dir):
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from vlmdata.ids.embed import load_clip
    from vlmtrain.eval.tasks.embedding import clip_encoders
    from vlmtrain.model.vision import VisionTower, build_visual

    buf = io.BytesIO()
    Image.new("RGB", (40, 32), (200, 30, 60)).save(buf, format="PNG")
    clip, preprocess = load_clip(str(clip_dir))
    with torch.no_grad():
        pixels = preprocess(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))[None]
        want = F.normalize(clip.encode_image(pixels), dim=-1)
        visual, pp = build_visual(f"local-dir:{clip_dir}")
        tower = VisionTower(visual, pp, "pooled")
        got_tower = F.normalize(tower(pixels)[1], dim=-1)
        images, _ = clip_encoders(f"local-dir:{clip_dir}", None, "cpu")
        got_eval = images([{"image": buf.getvalue()}])
    assert torch.allclose(got_tower, want, atol=1e-6)
    assert torch.allclose(got_eval, want, atol=1e-6)
