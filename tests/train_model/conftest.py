"""Tiny offline model parts for the model/recipe tests: a BPE tokenizer trained on the test
captions, a 2-block open_clip ViT on 32x32 images, a 2-layer GPT-2 of width 64."""

from __future__ import annotations

import io

import pytest
from PIL import Image

CAPTIONS = [
    "a red circle on a blue background",
    "a green square next to a yellow star",
    "two black dogs run on the grass",
    "a white cat sleeps on a red sofa",
    "a small boat on a calm lake",
    "three people ride bikes in the city",
]
COLOURS = [
    (220, 30, 30),
    (30, 200, 40),
    (20, 20, 20),
    (240, 240, 240),
    (30, 60, 220),
    (200, 180, 20),
]

TINY_VISION = {
    "embed_dim": 32,
    "vision_cfg": {
        "image_size": 32,
        "patch_size": 8,
        "width": 32,
        "layers": 2,
        "head_width": 16,
        "mlp_ratio": 2.0,
    },
}
TINY_LM = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 256}


def png_bytes(colour, size=(40, 28)) -> bytes:
    """A two-tone PNG (left half `colour`, right half its inverse): images differ per sample."""
    im = Image.new("RGB", size, colour)
    inverse = tuple(255 - c for c in colour)
    im.paste(Image.new("RGB", (size[0] // 2, size[1]), inverse), (size[0] // 2, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def make_samples(n: int = 6) -> list[dict]:
    """Shard-style Samples (docs/DESIGN.md, contract 3) built directly as dicts."""
    out = []
    for i in range(n):
        caption = CAPTIONS[i % len(CAPTIONS)]
        meta = {
            "texts": [caption, caption.replace("a ", "one ", 1)],
            "split": "train",
            "source": "test",
            "entity_id": f"Q{i % 3}",
            "entity_name": f"entity {caption.split()[-1]}",
            "question": "what is shown here?",
        }
        out.append(
            {
                "key": f"s{i:03d}",
                "image": png_bytes(COLOURS[i % len(COLOURS)]),
                "image_ext": "png",
                "meta": meta,
                "txt": caption,
            }
        )
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from vlmdata.core.tokenizer import train_tokenizer

    texts = (
        CAPTIONS * 10
        + [
            "image: id caption: question: answer: entity what is shown here?",
            "A chat between a curious user and an artificial intelligence "
            "assistant. USER: ASSISTANT: describe the image. It shows",
        ]
        * 5
    )
    out = tmp_path_factory.mktemp("tok")
    train_tokenizer(texts, out, vocab_size=400)
    return out


@pytest.fixture()
def tokenizer(tokenizer_dir):
    from vlmdata.core.tokenizer import load_tokenizer

    return load_tokenizer(tokenizer_dir)


@pytest.fixture()
def samples():
    return make_samples()


def tiny_config(**overrides):
    from vlmtrain.model.vlm import ModelConfig

    base = dict(
        vision="tiny",
        vision_config=TINY_VISION,
        lm_config=dict(TINY_LM),
        vision_feature=-2,
        num_visual_tokens=4,
        projector="mlp2x_gelu",
    )
    base.update(overrides)
    return ModelConfig(**base)


@pytest.fixture()
def build(tokenizer):
    """build(**config overrides) -> a tiny VLM (seeded, so runs are reproducible)."""
    import torch

    from vlmtrain.model.vlm import build_model

    def _build(**overrides):
        torch.manual_seed(0)
        return build_model(tiny_config(**overrides), tokenizer)

    return _build


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run ~20x faster on one thread when the 2 cores are shared (no OpenMP
    spin-waiting against other processes); restored afterwards for other test areas."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
