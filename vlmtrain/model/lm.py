"""The causal LM: a local Hugging Face checkpoint, or a tiny one built from a config dict.

Never downloads: `from_pretrained(path, local_files_only=True)`. A config dict names a
`model_type` (gpt2, opt, llama, ...) and its sizes; the vocabulary size and special-token ids
come from the tokenizer so tiny models and trained-offline tokenizers always agree.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from vlmtrain.errors import ConfigError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def build_lm(
    path: str | None,
    config: dict[str, Any] | None,
    tokenizer,
    dtype: str = "float32",
    attn_implementation: str = "sdpa",
) -> nn.Module:
    """An `AutoModelForCausalLM` from `path` (local) or `config` (dict with `model_type`)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    torch_dtype = DTYPES[dtype]
    if path:
        return AutoModelForCausalLM.from_pretrained(
            str(path),
            local_files_only=True,
            dtype=torch_dtype,
            attn_implementation=attn_implementation,
        )
    if not config or "model_type" not in config:
        raise ConfigError("model needs `lm` (a local path) or `lm_config` with a model_type")
    kwargs = dict(config)
    model_type = kwargs.pop("model_type")
    kwargs.setdefault("vocab_size", len(tokenizer))
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            kwargs.setdefault(name, value)
    lm_cfg = AutoConfig.for_model(model_type, **kwargs)
    lm = AutoModelForCausalLM.from_config(lm_cfg, attn_implementation=attn_implementation)
    return lm.to(torch_dtype)


def lm_hidden_size(lm: nn.Module) -> int:
    """Width of the LM's input embeddings (what projected image features must match)."""
    return int(lm.get_input_embeddings().weight.shape[1])
