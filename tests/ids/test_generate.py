"""Constrained beam search with a tiny random GPT-2: only valid identifiers come out."""

from __future__ import annotations

import pytest
import torch

from tests.ids.conftest import N_IMAGES, N_TEST, tiny_gpt2
from vlmdata.core.tokenizer import load_tokenizer
from vlmdata.ids.build import build_ids, read_ids
from vlmdata.ids.tokens import identifier_sequence
from vlmdata.trie import Trie
from vlmdata.trie.forest import batch_subset
from vlmdata.trie.from_files import trie_from_ids
from vlmdata.trie.mask import TrieLogitsProcessor

PREFIX = "id "


class NeverEmpty:
    """Wraps the processor inside generate(): every row must keep a finite score."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def __call__(self, input_ids, scores):
        out = self.inner(input_ids, scores)
        assert torch.isfinite(out).any(dim=-1).all()
        self.calls += 1
        return out


def _ids(scheme, manifest_dir, tok_dir, tmp_path, pseudo_queries, embeddings):
    kwargs = {"tokenizer": tok_dir, "seed": 1}
    tok_path = tok_dir
    if scheme == "semantic":
        kwargs["pseudo_queries"] = pseudo_queries
    if scheme == "structured":
        kwargs.update(embeddings=embeddings, k=3, leaf_size=4)
    if scheme in ("structured", "atomic"):
        tok_path = tmp_path / "tok-ext"
        kwargs["add_tokens"] = tok_path
    build_ids(manifest_dir, tmp_path / "ids.parquet", scheme=scheme, **kwargs)
    return tmp_path / "ids.parquet", tok_path


@pytest.mark.parametrize("scheme", ["numeric", "string", "semantic", "structured", "atomic"])
def test_beam_search_returns_only_test_identifiers(
    scheme, manifest_dir, tok_dir, tmp_path, pseudo_queries, embeddings
):
    ids_path, tok_path = _ids(scheme, manifest_dir, tok_dir, tmp_path, pseudo_queries, embeddings)
    trie = trie_from_ids(ids_path, tok_path, split="test", prefix=PREFIX)
    trie.save(tmp_path / "ids.trie")
    trie = Trie.load(tmp_path / "ids.trie")
    table, _ = read_ids(ids_path)
    tok = load_tokenizer(tok_path)
    model = tiny_gpt2(len(tok), tok)
    test_rows = {r for r, s in enumerate(table.column("split").to_pylist()) if s == "test"}
    texts = table.column("identifiers" if scheme == "semantic" else "identifier").to_pylist()
    # the trie's paths are exactly the shared rule's sequences
    for r in test_rows:
        for text in texts[r] if scheme == "semantic" else [texts[r]]:
            seq = identifier_sequence(tok, text, prefix=PREFIX)
            assert trie.lookup(seq) is not None
    prompt = torch.tensor([[tok.bos_token_id, 5, 9]] * 3)
    proc = NeverEmpty(TrieLogitsProcessor(trie, prompt.shape[1]))
    beams = 5
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        logits_processor=[proc],
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=len(trie.level_starts) + 1,  # deeper than any identifier
        do_sample=False,
        pad_token_id=tok.pad_token_id,
    )
    assert proc.calls > 1
    found = set()
    for row in out[:, prompt.shape[1] :].tolist():
        seq = row[: row.index(tok.eos_token_id) + 1]
        hit = trie.lookup(seq)
        assert hit in test_rows, (scheme, seq)
        found.add(hit)
        decoded = tok.decode(seq[:-1])
        assert decoded.removeprefix(PREFIX) in (
            texts[hit] if scheme == "semantic" else [texts[hit]]
        )
    assert len(found) >= 2  # distinct beams give distinct identifiers
    assert len(test_rows) == N_TEST and len(table) == N_IMAGES


def test_prefix_allowed_tokens_fn_drives_generate_too(manifest_dir, tok_dir, tmp_path):
    build_ids(manifest_dir, tmp_path / "ids.parquet", scheme="string", tokenizer=tok_dir)
    trie = trie_from_ids(tmp_path / "ids.parquet", tok_dir)
    tok = load_tokenizer(tok_dir)
    model = tiny_gpt2(len(tok), tok)
    prompt = torch.tensor([[tok.bos_token_id]])
    out = model.generate(
        prompt,
        prefix_allowed_tokens_fn=trie.prefix_allowed_tokens_fn(1),
        num_beams=3,
        num_return_sequences=3,
        max_new_tokens=8,
        pad_token_id=tok.pad_token_id,
    )
    for row in out[:, 1:].tolist():
        assert trie.lookup(row[: row.index(tok.eos_token_id) + 1]) is not None


def test_batched_candidate_sets_keep_each_item_to_its_own(manifest_dir, tok_dir, tmp_path):
    """AutoVER-style: item b's beams may only produce item b's retrieved candidates."""
    build_ids(manifest_dir, tmp_path / "ids.parquet", scheme="numeric", tokenizer=tok_dir)
    trie = trie_from_ids(tmp_path / "ids.parquet", tok_dir)
    tok = load_tokenizer(tok_dir)
    model = tiny_gpt2(len(tok), tok)
    sets = [[3, 17, 25], [0, 11, 12, 39], [7]]
    forest = batch_subset(trie, sets)
    beams = 3
    prompt = torch.tensor([[tok.bos_token_id, 9]] * len(sets))
    proc = NeverEmpty(forest.logits_processor(prompt.shape[1]))
    out = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        logits_processor=[proc],
        num_beams=beams,
        num_return_sequences=beams,
        max_new_tokens=6,
        pad_token_id=tok.pad_token_id,
    )
    for i, row in enumerate(out[:, prompt.shape[1] :].tolist()):
        seq = row[: row.index(tok.eos_token_id) + 1]
        assert trie.lookup(seq) in sets[i // beams]
