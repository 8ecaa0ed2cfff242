"""The trie's arrays against a level-order build written from the definition (DESIGN contract
5), and the build-trie fast path: tokenizer ids, name checks, memory per added name."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vlmdata.core.errors import DataError
from vlmdata.trie.build import build_csr


def oracle(seqs: list[list[int]], rows: list[int]) -> dict:
    """Level-order CSR by breadth-first walk of a dict trie: the nodes of depth d are numbered
    after those of depth d - 1, children in token order; edge e leads to node e + 1."""
    root: dict = {}
    ends: dict = {}  # id(node dict) -> rows ending there
    for s, r in zip(seqs, rows, strict=True):
        node = root
        for t in s:
            node = node.setdefault(t, {})
        ends.setdefault(id(node), []).append(r)
    offsets, tokens, level_starts, fanout = [0], [], [0], []
    level, number, terms, dups = [root], {id(root): 0}, [], []
    while level:
        level_starts.append(level_starts[-1] + len(level))
        fanout.append(max((len(n) for n in level), default=0))
        nxt = []
        for n in level:
            for t in sorted(n):
                tokens.append(t)
                number[id(n[t])] = len(tokens)
                nxt.append(n[t])
            offsets.append(len(tokens))
            got = sorted(ends.get(id(n), []))
            terms += [(number[id(n)], got[0])] if got else []
            dups += [(number[id(n)], r) for r in got[1:]]
        level = nxt
    return {"offsets": offsets, "tokens": tokens, "level_starts": level_starts[:-1] + [len(number)],
            "fanout": fanout, "terms": terms, "dups": sorted(dups)}  # fmt: skip


@pytest.mark.parametrize("vocab", [7, 70_000])  # uint16 tokens, and int32 past 2^16
@pytest.mark.parametrize("seed", range(4))
def test_arrays_equal_the_level_order_definition(vocab, seed):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, min(vocab, 7), rng.integers(0, 6)).tolist() for _ in range(300)]
    seqs += seqs[:20]  # duplicates (two entities with one name), empty sequences included
    seqs = [[t * (vocab // 7) for t in s] for s in seqs]  # tokens spread over the vocabulary
    rows = rng.permutation(1000)[: len(seqs)].tolist()
    lengths = np.array([len(s) for s in seqs])
    flat = np.array([t for s in seqs for t in s], dtype=np.int64)
    want = oracle(seqs, rows)
    for given_rows in (np.array(rows), None):
        csr = build_csr(flat, lengths, given_rows, vocab)
        got_rows = rows if given_rows is not None else list(range(len(seqs)))
        want = oracle(seqs, got_rows)
        assert csr.offsets.tolist() == want["offsets"] and csr.offsets.dtype == np.int32
        assert csr.tokens.tolist() == want["tokens"]
        assert csr.tokens.dtype == (np.uint16 if vocab <= 1 << 16 else np.int32)
        assert csr.level_starts == want["level_starts"]
        assert csr.level_max_fanout == want["fanout"]
        assert list(zip(csr.term_nodes.tolist(), csr.term_rows.tolist(), strict=True)) == sorted(
            want["terms"]
        )
        assert list(zip(csr.dup_nodes.tolist(), csr.dup_rows.tolist(), strict=True)) == want["dups"]
        assert csr.term_nodes.dtype == csr.term_rows.dtype == np.int32


def test_empty_input_is_the_root_alone():
    csr = build_csr(np.zeros(0, np.int32), np.zeros(0, np.int32), None, 10)
    assert csr.offsets.tolist() == [0, 0] and csr.level_starts == [0, 1]
    assert csr.level_max_fanout == [0] and len(csr.tokens) == len(csr.term_nodes) == 0


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    from vlmdata.core.tokenizer import train_tokenizer

    texts = [f"Entity {i} ({w})" for i, w in enumerate(["Paris", "Zürich", "東京", "Big Ben"])]
    return train_tokenizer(texts * 30, tmp_path_factory.mktemp("tok"), vocab_size=300)


def test_post_processor_set_aside_gives_the_same_ids_and_is_restored(tok):
    """A BERT-style template ([CLS] $A [SEP]) is set aside for the call: the ids equal
    transformers' own without special tokens, and the tokenizer keeps its template."""
    from tokenizers import processors

    from vlmdata.ids.tokens import _adds_only_specials, identifier_sequences

    backend = tok.backend_tokenizer
    before = backend.post_processor
    cls, sep = tok.convert_tokens_to_ids(["<s>", "</s>"])
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>",
        pair="<s> $A </s> $B </s>",
        special_tokens=[("<s>", cls), ("</s>", sep)],
    )
    try:
        names = ["Entity 3 (Paris)", "Zürich", "東京 Big Ben", " a"]
        (flat, lengths), = identifier_sequences(tok, names, eos=False)  # fmt: skip
        want = [tok(s, add_special_tokens=False)["input_ids"] for s in names]
        assert [x.tolist() for x in np.split(flat, np.cumsum(lengths)[:-1])] == want
        assert (
            backend.post_processor.__getstate__()
            == processors.TemplateProcessing(
                single="<s> $A </s>",
                pair="<s> $A </s> $B </s>",
                special_tokens=[("<s>", cls), ("</s>", sep)],
            ).__getstate__()
        )
        assert tok("Zürich")["input_ids"][0] == cls  # still adds its specials when asked
    finally:
        backend.post_processor = before
    twice = processors.TemplateProcessing(single="$A $A", pair="$A $B", special_tokens=[])
    assert not _adds_only_specials(twice)  # would repeat the ids: kept
    assert _adds_only_specials(processors.Sequence([processors.ByteLevel()]))


def test_bad_names_name_their_row(tok, tmp_path, monkeypatch):
    import vlmdata.trie.from_files as from_files
    from vlmdata.trie.from_files import trie_from_entities

    monkeypatch.setattr(from_files, "BATCH", 3)  # the bad row is in a later batch
    tok.save_pretrained(tmp_path / "tok")
    for names, want in ((["a", "b", "c", "d", None], "row 4: empty or null"),
                        (["a", "b", "c", "d", ""], "row 4: empty or null"),
                        ([1, 2], "holds int64, not names")):  # fmt: skip
        pq.write_table(pa.table({"entity_name": names}), tmp_path / "e.parquet")
        with pytest.raises(DataError, match=want):
            trie_from_entities(tmp_path / "e.parquet", tmp_path / "tok")


def test_entity_trie_memory_per_added_name(tok, tmp_path, monkeypatch):
    """Traced peak of `trie_from_entities` at n and 2n names grows by at most 180 bytes per
    added name (~11 tokens each under this 300-token BPE). Measured: 147 B here (the file's
    arrays are 37 B; tracemalloc counts the lazily mapped output arrays at full size); the
    build before issue 23's fast path, with int64 arrays over every token and node, 250 B."""
    import random

    import vlmdata.trie.from_files as from_files

    monkeypatch.setattr(from_files, "BATCH", 1024)
    tok.save_pretrained(tmp_path / "tok")
    rng = random.Random(0)
    words = ["Paris", "Zürich", "Big", "Ben", "Entity", "Tower", "River", "North"]
    for n in (500, 10_000, 20_000):
        names = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 4))) + f" {i}"
                 for i in range(n)]  # fmt: skip
        pq.write_table(pa.table({"entity_name": names}), tmp_path / f"{n}.parquet")

    def peak(n: int) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            from_files.trie_from_entities(tmp_path / f"{n}.parquet", tmp_path / "tok")
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    peak(500)  # warm-up: imports are not counted
    one, two = peak(10_000), peak(20_000)
    assert two - one <= 180 * 10_000, (one, two)
