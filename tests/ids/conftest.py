"""Fixtures for identifier maps and tries: a small manifest, a tokenizer, a tiny GPT-2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vlmdata.core.manifest import ManifestSink

N_IMAGES = 40
N_TEST = 10
COLOURS = ["red", "green", "blue", "yellow", "black"]
SHAPES = ["circle", "square", "triangle", "star"]


def captions(i: int) -> list[str]:
    c, s = COLOURS[i % 5], SHAPES[(i // 5) % 4]
    return [f"a {c} {s} number {i}", f"one {s} that is {c}"]


@pytest.fixture(scope="session")
def manifest_dir(tmp_path_factory):
    """OUT with only a manifest table: 30 train then 10 test images."""
    out = tmp_path_factory.mktemp("images")
    with ManifestSink(out, extra_columns=["image_id"]) as sink:
        for i in range(N_IMAGES):
            split = "train" if i < N_IMAGES - N_TEST else "test"
            sink.keep(
                {
                    "key": f"img_{i:03d}",
                    "source": "shapes",
                    "split": split,
                    "path": f"{i}.png",
                    "texts": captions(i),
                    "image_id": str(1000 + i),
                }
            )
    return out


@pytest.fixture(scope="session")
def pseudo_queries(tmp_path_factory):
    """GRACE's pseudo-query JSON for the test images, keyed as GRACE keys Flickr30k's: the image
    file's stem (`line['image_id'] + ".jpg"` in convert_flicker30k_to_wds_t2id7.py; here the
    manifest's `{i}.png`); two images share a query on purpose."""
    items = []
    for i in range(N_IMAGES - N_TEST, N_IMAGES):
        caps = [f"query {i} about {COLOURS[i % 5]}", f"{SHAPES[i % 4]} picture {i}"]
        if i in (30, 31):
            caps.append("a shared query")
        original = [{"raw": c} for c in captions(i)]
        items.append({"image_id": str(i), "caption": caps, "original_caption": original})
    path = tmp_path_factory.mktemp("pq") / "pseudo_queries.json"
    path.write_text(json.dumps(items))
    return path


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory):
    """A byte-level BPE trained offline on the captions, queries and digits."""
    from vlmdata.core.tokenizer import train_tokenizer

    texts = [c for i in range(N_IMAGES) for c in captions(i)]
    texts += [f"query {i} picture {i} image_{i} 0_1-1_2" for i in range(N_IMAGES)]
    texts += [" ".join(str(i)) for i in range(100)]
    out = tmp_path_factory.mktemp("tok") / "tok"
    train_tokenizer(texts * 3, out, vocab_size=300)
    return out


@pytest.fixture(scope="session")
def embeddings(tmp_path_factory):
    rng = np.random.default_rng(7)
    centres = rng.normal(size=(4, 8))
    emb = centres[np.arange(N_IMAGES) % 4] + 0.1 * rng.normal(size=(N_IMAGES, 8))
    path = tmp_path_factory.mktemp("emb") / "emb.npy"
    np.save(path, emb.astype(np.float32))
    return path


def tiny_gpt2(vocab_size: int, tok):
    """A random 2-layer GPT-2 of width 64, built from a config (no download)."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=vocab_size,
        n_positions=64,
        n_embd=64,
        n_layer=2,
        n_head=2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(cfg).eval()
