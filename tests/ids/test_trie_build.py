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
    for given_rows in (np.array(rows), np.array(rows) // 3, None):  # // 3: rows repeat
        csr = build_csr(flat, lengths, given_rows, vocab)
        got_rows = given_rows.tolist() if given_rows is not None else list(range(len(seqs)))
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


@pytest.mark.parametrize(
    "width, vocab",
    [(1, 300), (50, 300), (40_000, 70_000), (2**25, 2**33)],  # root, packed, packed, too wide
)
def test_level_sort_is_a_stable_sort_of_the_edge_keys(width, vocab):
    """`_packed_keys` + `_sort_keys` (key and position in one uint64 where they fit) against
    the definition: sequences ordered by ((node - first) * vocab + token, position)."""
    from vlmdata.trie.build import _packed_keys, _sort_keys

    rng = np.random.default_rng(width)
    n, lo = 3000, 17
    nodes = np.sort(rng.integers(lo, lo + width, n)).astype(np.int64)
    nodes[-1] = lo + width - 1  # the widest key there can be
    toks = rng.integers(0, min(vocab, 40), n)
    toks[-1] = vocab - 1
    keys = [(int(a) - lo) * vocab + int(t) for a, t in zip(nodes, toks, strict=True)]
    want = sorted(range(n), key=lambda i: (keys[i], i))
    key, pbits = _packed_keys(None if width == 1 else nodes, toks, (lo, lo + width), vocab)
    assert (pbits == 0) == (width == 2**25)  # the root packs too
    perm, got = _sort_keys(key, pbits)
    assert perm.tolist() == want
    assert got.tolist() == [keys[i] for i in want]


def test_level_build_holds_under_30_bytes_per_sequence():
    """`build_levels`' traced peak over 200,000 sequences (tokens and lengths made before):
    under 27 bytes a sequence. Measured 24.3: the live state (position, remaining length,
    node: 9 B) and one level's packed keys; 25.7 with a row kept per live sequence; 35.5
    when the root was sorted by an int64 argsort, the keys were held while the edges were
    split (two int64 temporaries of them) and the ended sequences were filtered out of three
    arrays at once."""
    from vlmdata.trie.build import build_levels

    rng = np.random.default_rng(0)
    n = 200_000
    lengths = rng.integers(2, 9, size=n).astype(np.uint8)
    flat = rng.integers(0, 50, size=int(lengths.sum())).astype(np.uint16)  # shared prefixes
    gc.collect()
    tracemalloc.start()
    try:
        levels = sum(1 for _ in build_levels(flat, lengths, None, 32_000))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert levels == 9  # the edges below depths 0-7, and the leaves
    assert peak < 27 * n, peak / n


def test_entity_names_come_in_full_batches_across_row_groups(tmp_path):
    """`_name_batches` reads a row group at a time and hands the names over `rows` at a
    time (the last batch fewer), in file order, whatever the groups' sizes."""
    from vlmdata.trie.from_files import _name_batches

    names = [f"n{i}" for i in range(1_000)]
    pq.write_table(pa.table({"entity_name": names, "x": range(1_000)}), tmp_path / "e.parquet",
                   row_group_size=77)  # fmt: skip
    for rows in (1, 50, 77, 300, 5_000):
        got = [b.to_pylist() for b in _name_batches(tmp_path / "e.parquet", "entity_name", rows)]
        assert [len(b) for b in got[:-1]] == [rows] * (len(got) - 1) and 0 < len(got[-1]) <= rows
        assert [s for b in got for s in b] == names
    pq.write_table(pa.table({"entity_name": pa.array([], pa.string())}), tmp_path / "empty.parquet")
    assert list(_name_batches(tmp_path / "empty.parquet", "entity_name", 10)) == []


def test_spool_copies_its_chunks_in_blocks_and_dtype(tmp_path):
    """A spool's bytes in the file are its chunks joined, cast, whatever the block size."""
    import io

    from vlmdata.trie.storage import Spool

    chunks = [np.arange(k, 3 * k, dtype=np.int64) - 5 for k in (0, 1, 7, 300)]
    want = np.concatenate(chunks).astype("<i4").tobytes()
    for block in (1, 24, 1 << 20):  # bytes: under one element, a few, all at once
        sp = Spool(np.int64, tmp_path)
        for c in chunks:
            sp.append(c)
        out = io.BytesIO()
        sp.copy_to(out, np.dtype(np.int32), block=block)
        sp.close()
        assert out.getvalue() == want and sp.count == 616 and sp.max == 894
    assert not list(tmp_path.iterdir())  # the spools were unnamed files


def test_empty_input_is_the_root_alone():
    csr = build_csr(np.zeros(0, np.int32), np.zeros(0, np.int32), None, 10)
    assert csr.offsets.tolist() == [0, 0] and csr.level_starts == [0, 1]
    assert csr.level_max_fanout == [0] and len(csr.tokens) == len(csr.term_nodes) == 0


@pytest.mark.parametrize("vocab", [7, 70_000])
@pytest.mark.parametrize("seed", range(3))
def test_file_written_level_by_level_is_the_saved_builds_bytes(vocab, seed, tmp_path):
    """`Trie.write_flat` (each level spooled to disk as built) writes exactly the bytes of
    `from_flat(...).save`, rows given or not, int32 or int64 rows, and leaves no spool."""
    from vlmdata.trie.core import Trie

    rng = np.random.default_rng(seed)
    seqs = [rng.integers(0, 7, rng.integers(0, 6)).tolist() for _ in range(400)]
    seqs += seqs[:30]  # duplicates and empty sequences
    lengths = np.array([len(s) for s in seqs])
    flat = np.array([t * (vocab // 7) for s in seqs for t in s], dtype=np.int64)
    big = 2**40 + rng.permutation(len(seqs))  # rows past int32: the int64 row arrays
    cases = [(rng.permutation(2000)[: len(seqs)], flat, lengths), (None, flat, lengths),
             (big, flat, lengths), (None, flat[:0], lengths[:0])]  # fmt: skip
    for i, (rows, f, lens) in enumerate(cases):
        kw = {"vocab_size": vocab, "eos_id": 0, "tokenizer_name": "t", "meta": {"i": i}}
        Trie.from_flat(f, lens, rows, **kw).save(tmp_path / f"saved{i}.trie")
        got = Trie.write_flat(tmp_path / f"written{i}.trie", f, lens, rows, **kw)
        want = (tmp_path / f"saved{i}.trie").read_bytes()
        assert (tmp_path / f"written{i}.trie").read_bytes() == want
        assert got.n_nodes == Trie.load(tmp_path / f"saved{i}.trie").n_nodes  # the file, mapped
        if len(lens):
            assert got.lookup(seqs[1]) == Trie.load(tmp_path / f"saved{i}.trie").lookup(seqs[1])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        f"{k}{i}.trie" for k in ("saved", "written") for i in range(len(cases))
    )


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


def _entity_trie_peak(from_files, tmp_path, n: int, **kwargs) -> int:
    """Traced peak bytes of `trie_from_entities` over the n-name file of `_entity_files`."""
    gc.collect()
    tracemalloc.start()
    try:
        from_files.trie_from_entities(tmp_path / f"{n}.parquet", tmp_path / "tok", **kwargs)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _entity_files(tok, tmp_path, monkeypatch):
    """The tokenizer saved and 500 / 10,000 / 20,000 entity names as Parquet in `tmp_path`
    (batches of 1,024 names); the `from_files` module the memory tests call."""
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
    return from_files


def test_entity_trie_memory_per_added_name(tok, tmp_path, monkeypatch):
    """Traced peak of `trie_from_entities` at n and 2n names grows by at most 180 bytes per
    added name (~11 tokens each under this 300-token BPE). Measured: 147 B here (the file's
    arrays are 37 B; tracemalloc counts the lazily mapped output arrays at full size); the
    build before issue 23's fast path, with int64 arrays over every token and node, 250 B."""
    from_files = _entity_files(tok, tmp_path, monkeypatch)

    def peak(n: int) -> int:
        return _entity_trie_peak(from_files, tmp_path, n)

    peak(500)  # warm-up: imports are not counted
    one, two = peak(10_000), peak(20_000)
    assert two - one <= 180 * 10_000, (one, two)


def test_entity_trie_written_as_built_memory_per_added_name(tok, tmp_path, monkeypatch):
    """What `vlmdata build-trie` runs (`out=`: levels streamed to the file): traced peak at n
    and 2n names grows by at most 75 bytes per added name, the same names as the test above.
    Measured: 60 B (the tokens, uint16, and uint8 lengths, held through the build, ~23 B; the
    live sequences' state and one level's sort); main before this, saving the built trie,
    149 B. The file is the bytes `trie_from_entities(...).save` writes."""
    from_files = _entity_files(tok, tmp_path, monkeypatch)

    def peak(n: int) -> int:
        return _entity_trie_peak(from_files, tmp_path, n, out=tmp_path / f"{n}.trie")

    peak(500)  # warm-up: imports are not counted
    one, two = peak(10_000), peak(20_000)
    assert two - one <= 75 * 10_000, (one, two)
    from_files.trie_from_entities(tmp_path / "500.parquet", tmp_path / "tok").save(
        tmp_path / "saved.trie"
    )
    assert (tmp_path / "500.trie").read_bytes() == (tmp_path / "saved.trie").read_bytes()


# Names built to break a joined tokenizer text (vlmdata/ids/joined.py): spaces, tabs, newlines
# and Unicode spaces at either end, contractions and a combining mark first, an added token at
# an edge, control characters, empty names. Pieces chosen from the GPT-2 pattern's alternatives.
PIECES = ["a", "Big", "s", "'", "'s", "'ll", " ", "  ", "\n", "\t", "\r\n", "1", "23", "é",
          "\u0301", "\u00a0", "\u200b", "\u3000", "東京", "😀", "<s>", "(", ")", ".", "-", "\x7f",
          "\x00", "Zürich"]  # fmt: skip


def edge_names(n: int, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    names = ["".join(rng.choice(PIECES) for _ in range(rng.randint(1, 6))) for _ in range(n)]
    return names + ["", " a", "a ", "'s", "a'", "<s>", "<s>a", "a<s>", "\u00a0a", "a\u00a0", "é"]


def per_name(tok, names: list[str]) -> list[list[int]]:
    """The definition: transformers' own call on each name alone."""
    return [tok(s, add_special_tokens=False)["input_ids"] for s in names]


def sequences(tok, names: list[str], **kw) -> list[list[int]]:
    from vlmdata.ids.tokens import identifier_sequences

    out = []
    for flat, lengths in identifier_sequences(tok, names, eos=False, **kw):
        out += [x.tolist() for x in np.split(flat, np.cumsum(lengths)[:-1])] if len(lengths) else []
    return out


@pytest.fixture(scope="module")
def edge_tok(tmp_path_factory):
    """A byte-level BPE trained on such names: it has merges across spaces and newlines
    ("ĠĊ", "ĊĠ", ...), so a name's space run taken in by the joining newline changes ids."""
    from vlmdata.core.tokenizer import train_tokenizer

    return train_tokenizer(edge_names(3000, seed=5), tmp_path_factory.mktemp("t"), 600)


def test_joined_names_give_each_names_own_ids(edge_tok):
    """Byte-level BPE (GPT-2's pattern, no prefix space): names that may be are joined by
    newlines into one tokenizer text, the rest go alone, and every name's ids equal
    transformers' call on that name alone, over 3,000 names made to break the join."""
    from vlmdata.ids import joined
    from vlmdata.ids.tokens import _newline

    tok = edge_tok
    assert {"ĠĊ", "ĊĠ"} <= set(tok.get_vocab())  # the merges a wrong join would show
    backend = tok.backend_tokenizer
    newline = _newline(backend)
    assert newline == (tok.convert_tokens_to_ids("Ċ"), [])  # GPT-2's byte-level newline
    names = edge_names(3000)
    mask = joined.joinable(names, [])
    assert 0.2 < mask.mean() < 0.8  # both paths run, interleaved
    assert joined.joinable(["Big Ben", "東京", "😀x", "(a)", "a b\tc"], []).all()
    # a space, NBSP, tab, newline or combining mark at an end, a newline inside, empty: alone
    alone = [" a", "a\u00a0", "\ta", "a\n", "\u0301a", "a\nb", "", "\u200ba", "a\x7f"]
    assert not joined.joinable(alone, []).any()
    want = per_name(tok, names)
    assert sequences(tok, names, batch_size=700) == want
    assert sequences(tok, names, prefix="id ") == per_name(tok, ["id " + s for s in names])
    assert gc.isenabled()  # the GC pause ends with the call


def stripping_tokenizer(tmp_path):
    """A byte-level BPE with `<mask>` stripping the spaces beside it (RoBERTa's mask token)
    and a single_word added token."""
    from tokenizers import AddedToken

    from vlmdata.core.tokenizer import train_tokenizer

    tok = train_tokenizer(edge_names(300, seed=1), tmp_path, vocab_size=300)
    tok.add_special_tokens({"mask_token": AddedToken("<mask>", lstrip=True, rstrip=True)})
    tok.add_tokens([AddedToken("Ben", single_word=True)])  # matched only as a whole word
    return tok


def test_names_with_a_stripping_added_token_go_alone(tmp_path):
    """`<mask>` with lstrip/rstrip next to the joining newline would take it in: such names
    are tokenized alone, and the ids still equal transformers' per name; a single_word added
    token at a name's end is matched as in the name alone."""
    from vlmdata.ids import joined

    tok = stripping_tokenizer(tmp_path)
    assert joined.strip_tokens(tok.backend_tokenizer) == ["<mask>"]
    names = ["ab<mask>", "cd", "<mask>ef", "g <mask> h", "Big"] + edge_names(500, seed=2)
    assert joined.joinable(names[:5], ["<mask>"]).tolist() == [False, True, False, False, True]
    # a single_word token next to the newline matches as at the text's ends, and only there
    names += ["Ben", "Ben.", "xBen", "Bens", "Big Ben", "Ben Big", "Ben_", "(Ben)"] * 2
    assert sequences(tok, names) == per_name(tok, names)
    assert tok.convert_tokens_to_ids("Ben") in sequences(tok, ["Ben"])[0]


def other_kinds(tmp_path) -> dict:
    """Fast tokenizers the join does not apply to, trained offline with `tokenizers`: a
    byte-level BPE adding a prefix space (GPT-2 / RoBERTa's option), a BERT-style WordPiece
    (BertNormalizer, BertPreTokenizer, [CLS] $A [SEP]) and a SentencePiece-style Unigram
    (Metaspace, as T5 / Llama-2)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = edge_names(400, seed=3) * 3
    kinds = {}
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"],
                            initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))  # fmt: skip
    kinds["bpe prefix space"] = bpe
    wp = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wp.normalizer = normalizers.BertNormalizer(lowercase=True)
    wp.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wp.train_from_iterator(texts, trainers.WordPieceTrainer(
        vocab_size=300, special_tokens=["[UNK]", "[CLS]", "[SEP]"]))  # fmt: skip
    wp.post_processor = processors.BertProcessing(("[SEP]", 2), ("[CLS]", 1))
    kinds["wordpiece"] = wp
    uni = Tokenizer(models.Unigram())
    uni.pre_tokenizer = pre_tokenizers.Metaspace()
    uni.train_from_iterator(texts, trainers.UnigramTrainer(
        vocab_size=200, special_tokens=["<unk>"], unk_token="<unk>"))  # fmt: skip
    kinds["unigram"] = uni
    return {k: PreTrainedTokenizerFast(tokenizer_object=t) for k, t in kinds.items()}


def test_other_tokenizer_kinds_go_name_by_name_with_transformers_ids(tmp_path):
    from vlmdata.ids.tokens import _newline

    names = edge_names(600, seed=4)
    for kind, tok in other_kinds(tmp_path).items():
        assert _newline(tok.backend_tokenizer) is None, kind
        assert sequences(tok, names, batch_size=250) == per_name(tok, names), kind


def test_gc_pause_keeps_the_callers_setting(tok):
    gc.disable()
    try:
        sequences(tok, ["Big Ben", " a"])
        assert not gc.isenabled()
    finally:
        gc.enable()
    sequences(tok, ["Big Ben", " a"])
    assert gc.isenabled()
