"""Tokenizers from local paths only, and offline training of small ones.

Loading takes a directory saved by `transformers` (`save_pretrained`) or a `tokenizer.json`;
nothing is fetched from a hub. Training exists because tiny test and demo models have no bundled
tokenizer: a byte-level BPE is trained on the data set's own texts in a second or two.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "pad_token": "<pad>",
    "unk_token": "<unk>",
}


GENERIC_CLASSES = ("PreTrainedTokenizerFast", "TokenizersBackend")  # one class in transformers 5


def load_tokenizer(path: str | os.PathLike):
    """A `PreTrainedTokenizerFast` from a saved directory or a `tokenizer.json` file.

    A directory saved with the generic fast class (every tokenizer `train_tokenizer` makes) is
    loaded by that class itself: the object AutoTokenizer would build, without AutoTokenizer's
    import of torch (~600 MB of RSS in `build-trie` / `build-ids`, which need no torch)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer not found: {path}")
    if path.is_file():
        return PreTrainedTokenizerFast(tokenizer_file=str(path), **SPECIAL_TOKENS)
    if _saved_class(path) in GENERIC_CLASSES:
        return PreTrainedTokenizerFast.from_pretrained(str(path), local_files_only=True)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def _saved_class(path: Path) -> str | None:
    """`tokenizer_class` of a saved directory's tokenizer_config.json (None if unreadable)."""
    import json

    try:
        config = json.loads((path / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config.get("tokenizer_class") if isinstance(config, dict) else None


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | os.PathLike,
    vocab_size: int = 1000,
    extra_special_tokens: Iterable[str] = (),
):
    """Train a byte-level BPE on `texts` and save it as a transformers tokenizer directory."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(SPECIAL_TOKENS.values()) + list(extra_special_tokens)
    tok = Tokenizer(models.BPE(unk_token=SPECIAL_TOKENS["unk_token"]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS)
    extra = [t for t in extra_special_tokens]
    if extra:
        fast.add_special_tokens({"additional_special_tokens": extra})
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))
    return fast


def pad_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token, else its eos.

    The one home of this rule (training collate, generation, evaluation). A model's tokenizer
    always has a pad token: `vlmtrain.model.vlm.add_model_tokens` sets pad = eos when missing.
    """
    pad = tokenizer.pad_token_id
    if pad is None:
        pad = tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return int(pad)
