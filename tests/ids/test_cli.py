"""The commands end to end on real shards: embed → build-ids → build-trie (CliRunner)."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.vlmdata import main
from vlmdata.core import layout
from vlmdata.core.manifest import ManifestSink
from vlmdata.core.tokenizer import load_tokenizer
from vlmdata.ids.build import read_ids
from vlmdata.ids.tokens import identifier_sequence
from vlmdata.trie import Trie

TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def shards_dir(tmp_path_factory):
    """12 images, one of them truncated (rejected by the shard writer): 11 samples, 3 shards."""
    from vlmdata.shards import write_shards

    root = tmp_path_factory.mktemp("shards")
    images = root / "images"
    images.mkdir()
    with ManifestSink(root / "work") as sink:
        for i in range(12):
            buf = io.BytesIO()
            Image.new("RGB", (24 + i, 20), (20 * i, 255 - 20 * i, (90 * i) % 256)).save(buf, "PNG")
            data = buf.getvalue()[:40] if i == 4 else buf.getvalue()
            (images / f"{i}.png").write_bytes(data)
            split = "test" if i >= 8 else "train"
            sink.keep(
                {
                    "key": f"k{i:02d}",
                    "source": "t",
                    "split": split,
                    "path": f"{i}.png",
                    "texts": [f"caption {i}"],
                }
            )
    write_shards(
        root / "work" / layout.MANIFEST,
        images,
        root / "out",
        samples_per_shard=4,
        progress=False,
    )
    return root / "out"


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP)
    d = tmp_path_factory.mktemp("clip")
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(d / "open_clip_model.safetensors"),
    )
    return d


def test_embed_then_structured_ids_then_trie(shards_dir, clip_dir, tok_dir, tmp_path):
    index_keys = pq.read_table(shards_dir / layout.INDEX).column("key").to_pylist()
    assert len(index_keys) == 11 and "k04" not in index_keys
    r = run("embed", shards_dir, "--model", clip_dir, "--batch-size", 4, "-o", tmp_path / "e.npy")
    assert r.exit_code == 0, r.output
    assert "11 embeddings of dim 32" in r.output
    emb = np.load(tmp_path / "e.npy", allow_pickle=False)
    assert emb.shape == (11, 32) and emb.dtype == np.float32
    # GRACE's k-means sees CLIP's projected vectors as they come (SentenceTransformer's CLIP
    # encode: no Normalize module); --normalize gives the same vectors at unit length
    assert not np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-3)
    r = run("embed", shards_dir, "--model", clip_dir, "--normalize", "-o", tmp_path / "n.npy")
    assert r.exit_code == 0, r.output
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    assert np.allclose(np.load(tmp_path / "n.npy"), unit, atol=1e-5)
    # batch size does not change the result; rows are in index order
    run("embed", shards_dir, "--model", clip_dir, "--batch-size", 1, "-o", tmp_path / "e1.npy")
    assert np.allclose(np.load(tmp_path / "e1.npy"), emb, atol=1e-5)
    r = run(
        "build-ids",
        shards_dir,
        "--scheme",
        "structured",
        "--embeddings",
        tmp_path / "e.npy",
        "--k",
        2,
        "--leaf-size",
        3,
        "--seed",
        0,
        "-o",
        tmp_path / "ids.parquet",
    )
    assert r.exit_code == 0, r.output
    assert "k-means: 100%" in r.output and "11/11" in r.output  # every image given its id
    table, meta = read_ids(tmp_path / "ids.parquet")
    assert table.column("key").to_pylist() == index_keys
    assert len(set(table.column("identifier").to_pylist())) == 11
    assert meta["params"]["k"] == 2 and meta["seed"] == 0
    r = run(
        "build-trie",
        "--ids",
        tmp_path / "ids.parquet",
        "--tokenizer",
        tok_dir,
        "--split",
        "test",
        "-o",
        tmp_path / "t.trie",
    )
    assert r.exit_code == 0, r.output
    assert "4 sequences" in r.output
    trie = Trie.load(tmp_path / "t.trie")
    tok = load_tokenizer(tok_dir)
    assert trie.tokenizer_name == str(tok_dir) and trie.vocab_size == len(tok)
    assert trie.header["meta"]["split"] == "test"
    for row, (ident, split) in enumerate(
        zip(table.column("identifier").to_pylist(), table.column("split").to_pylist(), strict=True)
    ):
        hit = trie.lookup(identifier_sequence(tok, ident))
        assert hit == (row if split == "test" else None)


def test_numeric_ids_and_prefixed_trie_from_shards(shards_dir, tok_dir, tmp_path):
    r = run(
        "build-ids",
        shards_dir,
        "--scheme",
        "numeric",
        "--tokenizer",
        tok_dir,
        "-o",
        tmp_path / "ids.parquet",
    )
    assert r.exit_code == 0 and "11 identifiers (numeric)" in r.output
    r = run(
        "build-trie",
        "--ids",
        tmp_path / "ids.parquet",
        "--tokenizer",
        tok_dir,
        "--prefix",
        "id ",
        "--eos",
        "<pad>",
        "-o",
        tmp_path / "t.trie",
    )
    assert r.exit_code == 0, r.output
    trie = Trie.load(tmp_path / "t.trie")
    tok = load_tokenizer(tok_dir)
    seq = identifier_sequence(tok, "1 0", prefix="id ", eos=False) + [tok.pad_token_id]
    assert trie.lookup(seq) == 10 and trie.eos_id == tok.pad_token_id


def test_entity_trie_maps_names_to_rows(tok_dir, tmp_path, monkeypatch):
    import vlmdata.trie.from_files as from_files

    monkeypatch.setattr(from_files, "BATCH", 2)  # streamed in batches: rows must still line up
    names = ["Eiffel Tower", "Big Ben", "Eiffel", "Big Ben", "Tower Bridge"]
    pq.write_table(
        pa.table({"entity_id": [f"Q{i}" for i in range(5)], "entity_name": names}),
        tmp_path / "entities.parquet",
    )
    r = run(
        "build-trie",
        "--entities",
        tmp_path / "entities.parquet",
        "--tokenizer",
        tok_dir,
        "-o",
        tmp_path / "e.trie",
    )
    assert r.exit_code == 0, r.output
    assert "4 sequences" in r.output and "1 duplicate sequences" in r.output
    trie = Trie.load(tmp_path / "e.trie")
    tok = load_tokenizer(tok_dir)
    got = [trie.lookup(identifier_sequence(tok, n)) for n in names]
    assert got == [0, 1, 2, 1, 4]
    sub = trie.subset([2, 4])
    assert [sub.lookup(identifier_sequence(tok, n)) for n in names] == [None, None, 2, None, 4]


def test_cli_errors_are_one_line_with_exit_2(manifest_dir, tok_dir, tmp_path):
    r = run("build-trie", "--tokenizer", tok_dir, "-o", tmp_path / "x.trie")
    assert r.exit_code == 2 and "exactly one of --ids or --entities" in r.output
    r = run("build-ids", manifest_dir, "--scheme", "semantic", "-o", tmp_path / "x.parquet")
    assert r.exit_code == 2 and "need --pseudo-queries" in r.output
    r = run("build-ids", manifest_dir, "--scheme", "numeric", "-o", tmp_path / "ids.parquet")
    r = run(
        "build-trie",
        "--ids",
        tmp_path / "ids.parquet",
        "--tokenizer",
        tok_dir,
        "--split",
        "val",
        "-o",
        tmp_path / "x.trie",
    )
    assert r.exit_code == 2 and "no rows with split 'val'" in r.output
    r = run("embed", manifest_dir, "--model", "ViT-B-32", "-o", tmp_path / "e.npy")
    assert r.exit_code == 2 and "no index here" in r.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--k", "1"], "k must be at least 2"),
        (["--k", "0"], "k must be at least 2"),
        (["--leaf-size", "0"], "leaf size must be at least 1"),
        (["--nan"], "1 rows hold NaN or infinity (first: row 3"),
    ],
)
def test_build_ids_structured_bad_parameters_exit_2(manifest_dir, tmp_path, args, message):
    emb = np.ones((40, 4), np.float32)
    if args == ["--nan"]:
        emb[3, 2], args = np.nan, []
    np.save(tmp_path / "e.npy", emb)
    r = run("build-ids", manifest_dir, "--scheme", "structured", "--embeddings",
            tmp_path / "e.npy", *args, "-o", tmp_path / "x.parquet")  # fmt: skip
    assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output
    assert r.output.startswith("error: ")


def test_embed_shows_progress_unless_quiet(shards_dir, clip_dir, tmp_path):
    args = ["embed", shards_dir, "--model", clip_dir, "-o", tmp_path / "e.npy"]
    loud, quiet = run(*args), run(*args, "-q")
    assert loud.exit_code == 0 and quiet.exit_code == 0
    assert "embed: 100%" in loud.output and "11/11" in loud.output
    assert "embed:" not in quiet.output and "11 embeddings of dim 32" in quiet.output
