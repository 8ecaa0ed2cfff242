"""Tiny offline fixtures for the eval tests: generated images in real shards, a BPE tokenizer
trained on their captions, numeric identifiers, a test-split trie, and a tiny GRACE model
trained for a few seconds so decoding has something to find."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from vlmdata.core import layout

# (caption A, caption B) per image; the last six images form the test split
CAPTIONS = [
    ("a red circle on a blue background", "one red circle over blue"),
    ("a green square next to a yellow star", "green square and yellow star"),
    ("two black dogs run on the grass", "black dogs running on grass"),
    ("a white cat sleeps on a red sofa", "white cat asleep on a sofa"),
    ("a small boat on a calm lake", "little boat on a lake"),
    ("three people ride bikes in the city", "people riding bikes in town"),
    ("an old man reads a newspaper", "a man reading the paper"),
    ("a child flies a kite on the beach", "kid with a kite at the beach"),
]
N_TRAIN = 2
TINY_VISION = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16,
                   "mlp_ratio": 2.0},
}  # fmt: skip
TINY_LM = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 2, "n_positions": 512}
ENDOFCHUNK = "<|endofchunk|>"


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny matrices: extra threads only add contention on shared cores (restored after)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def saved_recall(rows: list[dict], k: int) -> float:
    """Recall@K by its definition from --save-predictions rows: the share of queries with one of
    their answers among the first K distinct retrieved items (null beams take no place)."""
    hits = 0
    for row in rows:
        distinct = list(dict.fromkeys(x for x in row["ranked"] if x is not None))
        hits += any(a in distinct[:k] for a in row["answers"])
    return hits / len(rows)


def png_bytes(i: int) -> bytes:
    im = Image.new("RGB", (24, 20), ((37 * i) % 256, (91 * i) % 256, (53 * i + 40) % 256))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def shards_dir(tmp_path_factory):
    """Real shards (vlmdata.shards.write_shards) of 8 images, 2 train + 6 test."""
    from vlmdata.core.manifest import ManifestSink
    from vlmdata.shards import write_shards

    root = tmp_path_factory.mktemp("eval_data")
    images = root / "images"
    images.mkdir()
    with ManifestSink(root / "work", extra_columns=["image_id"]) as sink:
        for i, caps in enumerate(CAPTIONS):
            (images / f"im{i}.png").write_bytes(png_bytes(i))
            split = "train" if i < N_TRAIN else "test"
            sink.keep({"key": f"im{i}", "source": "test", "split": split, "path": f"im{i}.png",
                       "texts": list(caps), "image_id": str(100 + i)})  # fmt: skip
    write_shards(root / "work" / layout.MANIFEST, images, root / "out", progress=False)
    return root / "out"


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory):
    from vlmdata.core.tokenizer import train_tokenizer

    texts = [c for pair in CAPTIONS for c in pair] * 5 + ["caption: id image: 0 1 2 3 4 5 6 7 8 9"]
    out = tmp_path_factory.mktemp("tok")
    # GRACE ends its identifiers with <|endofchunk|>: the tokenizer has it, for that case
    train_tokenizer(texts, out, vocab_size=300, extra_special_tokens=[ENDOFCHUNK])
    return out


@pytest.fixture(scope="session")
def ids_path(shards_dir, tokenizer_dir, tmp_path_factory):
    from vlmdata.ids.build import build_ids

    path = tmp_path_factory.mktemp("ids") / "ids.parquet"
    build_ids(shards_dir, path, scheme="numeric", seed=0, tokenizer=tokenizer_dir)
    return path


@pytest.fixture(scope="session")
def trie_path(ids_path, tokenizer_dir, tmp_path_factory):
    from vlmdata.trie.from_files import trie_from_ids
    from vlmtrain.recipes import get_recipe

    path = tmp_path_factory.mktemp("trie") / "test.trie"
    prefix = get_recipe("grace").id_prefix  # the trie must hold the recipe's exact targets
    trie_from_ids(ids_path, tokenizer_dir, split="test", prefix=prefix).save(path)
    return path


@pytest.fixture(scope="session")
def grace_bundle(shards_dir, tokenizer_dir, ids_path):
    """A ModelBundle: a tiny GRACE model trained on query->id for every caption."""
    import torch

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmdata.shards import ShardReader
    from vlmtrain.model.vlm import ModelConfig, build_model
    from vlmtrain.recipes import RecipeContext, get_recipe
    from vlmtrain.recipes.grace import QUERY2ID, load_identifiers

    tok = load_tokenizer(tokenizer_dir)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # session fixtures start before the module-scoped thread fixture
    torch.manual_seed(0)
    cfg = ModelConfig(vision="tiny", vision_config=TINY_VISION, lm_config=dict(TINY_LM),
                      vision_feature="pooled", num_visual_tokens=1, projector="linear",
                      train=["lm"])  # fmt: skip
    model = build_model(cfg, tok)
    recipe = get_recipe("grace")
    # the stored tokens are checked against this tokenizer (a mismatch is an error)
    ctx = RecipeContext.for_model(model, identifiers=load_identifiers(ids_path, tok))
    reader = ShardReader(shards_dir)
    examples = [recipe.make(s, ctx, QUERY2ID, text_index=j) for s in reader for j in range(2)]
    batch = recipe.collate(examples)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    losses = []
    for _ in range(60):
        loss, _ = recipe.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    torch.set_num_threads(threads)
    assert losses[-1] < losses[0] / 2, losses[::10]
    from vlmtrain.eval.generation import ModelBundle
    from vlmtrain.train.config import RecipeConfig, TrainConfig

    return ModelBundle(
        model, tok, TrainConfig(model=cfg, recipe=RecipeConfig(name="grace"), seed=0)
    )


@pytest.fixture(scope="session")
def grace_export(grace_bundle, tmp_path_factory):
    """The trained model written as the trainer exports it (safetensors + config + tokenizer)."""
    from vlmtrain.train.checkpoint import export_names, write_export

    model, tok, cfg = grace_bundle.model, grace_bundle.tokenizer, grace_bundle.cfg
    names = set(export_names(model, cfg.model, "full"))
    state = {n: p.detach().clone().contiguous() for n, p in model.named_parameters() if n in names}
    out = tmp_path_factory.mktemp("run") / "export"
    return write_export(out, state, cfg, tok, {"step": 60})


@pytest.fixture(scope="session")
def tiny_bundle(tokenizer_dir):
    """tiny_bundle(recipe, options, **model overrides) -> ModelBundle of an untrained model."""
    import torch

    from vlmdata.core.tokenizer import load_tokenizer
    from vlmtrain.eval.generation import ModelBundle
    from vlmtrain.model.vlm import ModelConfig, build_model
    from vlmtrain.train.config import RecipeConfig, TrainConfig

    def make(recipe: str, options: dict | None = None, **overrides):
        tok = load_tokenizer(tokenizer_dir)
        cfg = dict(vision="tiny", vision_config=TINY_VISION, lm_config=dict(TINY_LM),
                   vision_feature="pooled", num_visual_tokens=1, projector="linear")  # fmt: skip
        cfg.update(overrides)
        torch.manual_seed(0)
        model = build_model(ModelConfig(**cfg), tok).eval()
        run = TrainConfig(model=model.cfg, recipe=RecipeConfig(recipe, dict(options or {})))
        return ModelBundle(model, tok, run)

    return make
