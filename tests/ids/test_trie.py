"""Trie against brute force: children, lookup, walk, masks, save/load, subsets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmdata.trie import Trie
from vlmdata.trie.forest import batch_subset
from vlmdata.trie.mask import TrieLogitsProcessor

EOS = 0
VOCAB = 12

# identifier sets: short token lists over a small alphabet (many shared prefixes), eos-ended
seq_st = st.lists(st.integers(1, VOCAB - 1), min_size=1, max_size=5).map(lambda s: s + [EOS])
sets_st = st.lists(seq_st, min_size=1, max_size=25)


def brute_children(seqs, prefix):
    n = len(prefix)
    return sorted({s[n] for s in seqs if len(s) > n and s[:n] == prefix})


def all_prefixes(seqs):
    return {tuple(s[:i]) for s in seqs for i in range(len(s) + 1)}


@settings(max_examples=60, deadline=None)
@given(sets_st)
def test_children_equal_brute_force_for_every_prefix(seqs):
    trie = Trie.build(seqs, vocab_size=VOCAB, eos_id=EOS)
    for prefix in all_prefixes(seqs):
        assert trie.children(list(prefix)).tolist() == brute_children(seqs, list(prefix))
    # one step off the trie: a missing token after any prefix
    for prefix in all_prefixes(seqs):
        missing = set(range(VOCAB)) - set(brute_children(seqs, list(prefix)))
        if missing:
            assert trie.children([*prefix, min(missing)]).tolist() == []


@settings(max_examples=60, deadline=None)
@given(sets_st)
def test_lookup_round_trip_keeps_first_row_of_duplicates(seqs):
    rows = [10 * i + 3 for i in range(len(seqs))]
    trie = Trie.build(seqs, rows, vocab_size=VOCAB, eos_id=EOS)
    first = {}
    for s, r in zip(seqs, rows, strict=True):
        first.setdefault(tuple(s), r)
    for s in seqs:
        assert trie.lookup(s) == first[tuple(s)]
        assert trie.lookup(s[:-1]) is None  # without eos: not complete
    assert len(trie) == len(first)
    assert trie.header["n_duplicates"] == len(seqs) - len(first)


@settings(max_examples=30, deadline=None)
@given(sets_st, st.data())
def test_walk_matches_single_walks(seqs, data):
    trie = Trie.build(seqs, vocab_size=VOCAB, eos_id=EOS)
    depth = data.draw(st.integers(0, 6))
    pool = [list(p) for p in all_prefixes(seqs) if len(p) >= depth]
    rows = data.draw(
        st.lists(
            st.one_of(
                st.sampled_from(pool).map(lambda p: p[:depth]) if pool else st.nothing(),
                st.lists(st.integers(0, VOCAB + 3), min_size=depth, max_size=depth),
            ),
            min_size=1,
            max_size=12,
        )
    )
    nodes = trie.walk(np.array(rows, dtype=np.int64).reshape(len(rows), depth))
    assert nodes.tolist() == [trie.node(r) for r in rows]


@settings(max_examples=30, deadline=None)
@given(sets_st, st.data())
def test_logits_mask_equals_children_or_eos(seqs, data):
    trie = Trie.build(seqs, vocab_size=VOCAB, eos_id=EOS)
    depth = data.draw(st.integers(0, 4))
    prompt = 2
    rows = data.draw(
        st.lists(
            st.lists(st.integers(0, VOCAB - 1), min_size=depth, max_size=depth),
            min_size=1,
            max_size=8,
        )
    )
    # half the rows on the trie, so both branches of the mask builder are exercised
    on = [list(p)[:depth] for p in all_prefixes(seqs) if len(p) >= depth]
    rows = rows + on[: len(rows)]
    ids = torch.tensor([[7, 7] + r for r in rows], dtype=torch.long).reshape(len(rows), -1)
    scores = torch.randn(len(rows), VOCAB + 2)
    out = TrieLogitsProcessor(trie, prompt)(ids, scores)
    for i, r in enumerate(rows):
        want = brute_children(seqs, r) or [EOS]
        assert torch.isfinite(out[i]).nonzero().flatten().tolist() == want
        assert torch.equal(out[i, want], scores[i, want])


@pytest.mark.parametrize("wide", [1024, 3])
def test_mixed_batch_of_wide_narrow_and_off_trie_rows(monkeypatch, wide):
    import vlmdata.trie.mask as mask

    monkeypatch.setattr(mask, "WIDE", wide)  # 3: level-1 nodes take the dense-row path too
    rng = np.random.default_rng(0)
    seqs = [[int(a), int(b), EOS] for a, b in rng.integers(1, 60, size=(3000, 2))]
    trie = Trie.build(seqs, vocab_size=500, eos_id=EOS)
    scores = torch.randn(160, 500)
    out = TrieLogitsProcessor(trie, 0)(torch.zeros(160, 0, dtype=torch.long), scores)
    root = trie.children([]).tolist()
    assert (torch.isfinite(out).sum(1) == len(root)).all()  # all rows at the root: broadcast
    # 150 rows at 5 level-1 nodes (with WIDE=3: five dense groups), 10 rows off the trie
    firsts = [[s[0]] for s in seqs if s[0] <= 5][:150] + [[499]] * 10
    assert len(firsts) == 160
    out = TrieLogitsProcessor(trie, 0)(torch.tensor(firsts), scores)
    for i, p in enumerate(firsts):
        want = trie.children(p).tolist() or [EOS]
        assert torch.isfinite(out[i]).nonzero().flatten().tolist() == want
        assert torch.equal(out[i, want], scores[i, want])


@settings(max_examples=25, deadline=None)
@given(sets_st)
def test_save_load_round_trip_is_memory_mapped(tmp_path_factory, seqs):
    path = tmp_path_factory.mktemp("trie") / "x.trie"
    trie = Trie.build(seqs, vocab_size=VOCAB, eos_id=EOS, tokenizer_name="tok", meta={"a": 1})
    trie.save(path)
    back = Trie.load(path)
    assert (
        isinstance(back.tokens.base, np.memmap)
        or isinstance(back.tokens.base, memoryview)
        or (back.tokens.flags.owndata is False)
    )
    assert not back.tokens.flags.writeable
    for name in ("offsets", "tokens", "term_nodes", "term_rows"):
        assert np.array_equal(getattr(back, name), getattr(trie, name))
    assert (back.tokenizer_name, back.eos_id, back.vocab_size) == ("tok", EOS, VOCAB)
    assert back.header["meta"] == {"a": 1}
    for s in seqs:
        assert back.lookup(s) == trie.lookup(s)
    path2 = path.with_suffix(".again")
    back.save(path2)
    assert path2.read_bytes() == path.read_bytes()


# rows drawn from a small range: several sequences per row (semantic ids, one per text) and
# equal sequences under different rows (two entities with one name) are both common
rowed_st = st.lists(st.tuples(seq_st, st.integers(0, 6)), min_size=1, max_size=25)

ARRAYS = ("offsets", "tokens", "term_nodes", "term_rows", "dup_nodes", "dup_rows")


def assert_same_trie(a: Trie, b: Trie) -> None:
    """Node numbering is canonical (level order, children by token), so equal tries have
    equal arrays, duplicates included."""
    for name in ARRAYS:
        assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
    for key in ("n_sequences", "n_duplicates", "level_starts"):
        assert a.header[key] == b.header[key], key


@settings(max_examples=60, deadline=None)
@given(rowed_st, st.data())
def test_subset_equals_the_trie_built_from_the_subsets_sequences(pairs, data):
    seqs, rows = [s for s, _ in pairs], [r for _, r in pairs]
    trie = Trie.build(seqs, rows, vocab_size=VOCAB, eos_id=EOS)
    chosen = set(data.draw(st.lists(st.integers(0, 7), max_size=8)))
    keep = [(s, r) for s, r in pairs if r in chosen]
    want = Trie.build([s for s, _ in keep], [r for _, r in keep], vocab_size=VOCAB, eos_id=EOS)
    assert_same_trie(trie.subset(sorted(chosen)), want)
    # and the whole trie rebuilds from its own sequences, duplicates included
    assert_same_trie(Trie.from_flat(*trie.sequences(), vocab_size=VOCAB, eos_id=EOS), trie)


def test_subset_keeps_every_text_of_a_row_and_duplicated_sequences():
    multi = Trie.build([[1, 2, 0], [3, 0], [4, 5, 0]], [0, 0, 0], vocab_size=10, eos_id=0)
    sub = multi.subset([0])
    assert len(sub) == 3
    assert [sub.lookup(s) for s in ([1, 2, 0], [3, 0], [4, 5, 0])] == [0, 0, 0]
    twins = Trie.build([[5, 0], [5, 0]], vocab_size=10, eos_id=0)  # two entities, one name
    assert twins.lookup([5, 0]) == 0
    assert len(twins.subset([1])) == 1 and twins.subset([1]).lookup([5, 0]) == 1
    assert twins.subset([0, 1]).lookup([5, 0]) == 0  # the lowest row, as a fresh build
    assert len(twins.subset([7])) == 0  # a row the trie does not hold


def test_subset_survives_save_and_load(tmp_path):
    trie = Trie.build([[5, 0], [5, 0], [6, 0]], [3, 4, 4], vocab_size=10, eos_id=0)
    trie.save(tmp_path / "t.trie")
    back = Trie.load(tmp_path / "t.trie")
    assert back.subset([4]).lookup([5, 0]) == 4 and back.subset([4]).lookup([6, 0]) == 4


def test_sequences_round_trip_and_tokens_outside_vocab_rejected():
    seqs = [[3, 1, EOS], [3, EOS], [2, 2, 2, EOS]]
    trie = Trie.build(seqs, vocab_size=VOCAB, eos_id=EOS)
    flat, lengths, rows = trie.sequences()
    parts = np.split(flat, np.cumsum(lengths)[:-1])
    got = {int(r): s.tolist() for r, s in zip(rows, parts, strict=True)}
    assert got == {0: [3, 1, EOS], 1: [3, EOS], 2: [2, 2, 2, EOS]}
    with pytest.raises(ValueError, match="outside the vocabulary"):
        Trie.build([[VOCAB]], vocab_size=VOCAB, eos_id=EOS)


def test_prefix_allowed_tokens_fn_never_empty():
    trie = Trie.build([[4, 5, EOS]], vocab_size=VOCAB, eos_id=EOS)
    fn = trie.prefix_allowed_tokens_fn(1, pad_id=11)
    assert fn(0, torch.tensor([9])) == [4]
    assert fn(0, torch.tensor([9, 4, 5])) == [EOS]
    assert fn(0, torch.tensor([9, 4, 5, EOS])) == [EOS, 11]
    assert fn(0, torch.tensor([9, 6])) == [EOS, 11]


@settings(max_examples=25, deadline=None)
@given(rowed_st, st.data())
def test_batch_subset_masks_each_item_to_its_own_candidates(pairs, data):
    seqs, rows_of = [s for s, _ in pairs], [r for _, r in pairs]
    trie = Trie.build(seqs, rows_of, vocab_size=VOCAB, eos_id=EOS)
    n_items = data.draw(st.integers(1, 4))
    sets = [data.draw(st.lists(st.integers(0, 7), max_size=6)) for _ in range(n_items)]
    forest = batch_subset(trie, sets)
    beams = 2
    depth = data.draw(st.integers(0, 3))
    rows = []
    for b, rows_b in enumerate(sets):
        cand = [s for s, r in pairs if r in set(rows_b)]  # every sequence of the item's rows
        for _ in range(beams):
            pool = [s[:depth] for s in cand if len(s) >= depth] or [[1] * depth]
            rows.append((b, data.draw(st.sampled_from(pool)), cand))
    ids = torch.tensor([r for _, r, _ in rows], dtype=torch.long).reshape(len(rows), depth)
    out = forest.logits_processor(0)(ids, torch.zeros(len(rows), VOCAB))
    for i, (b, prefix, cand) in enumerate(rows):
        want = brute_children(cand, prefix) or [EOS]
        assert torch.isfinite(out[i]).nonzero().flatten().tolist() == want
        assert forest.children(b, prefix).tolist() == brute_children(cand, prefix)
        sub = trie.subset(sets[b])
        for s in cand:
            assert forest.lookup(b, s) == sub.lookup(s) is not None


def test_core_imports_neither_decoding_module():
    """The layering: mask and forest build on core, never the other way (no import cycle)."""
    import ast
    import inspect

    import vlmdata.trie.core as core

    tree = ast.parse(inspect.getsource(core))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m and m.startswith("vlmdata.trie.")} - {
        "vlmdata.trie.build",
        "vlmdata.trie.header",
        "vlmdata.trie.storage",
    }


def test_a_trie_file_without_stored_duplicates_is_refused(tmp_path):
    from vlmdata.core.errors import DataError
    from vlmdata.trie.storage import load_arrays, save_arrays

    trie = Trie.build([[5, 0], [5, 0], [6, 0]], vocab_size=10, eos_id=0)
    trie.save(tmp_path / "t.trie")
    header, arrays = load_arrays(tmp_path / "t.trie")
    old = {k: v for k, v in arrays.items() if not k.startswith("dup_")}  # dup arrays dropped
    keep = {k: v for k, v in header.items() if k not in ("arrays", "format", "version")}
    save_arrays(tmp_path / "old.trie", keep, old)
    with pytest.raises(
        DataError, match=r"lacks the array\(s\) \['dup_nodes', 'dup_rows'\]; rebuild it"
    ):
        Trie.load(tmp_path / "old.trie")
