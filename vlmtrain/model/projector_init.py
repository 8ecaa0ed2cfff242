"""Start a projector from LLaVA-1.5's released `mm_projector.bin` (AutoVER's initialisation).

The file is a torch zip archive whose pickle holds a flat {name: tensor} dict, names as LLaVA's
`LlavaMetaModel` saves them: `model.mm_projector.0.weight`, `.0.bias`, `.2.weight`, `.2.bias`
(mlp2x_gelu: Linear, GELU, Linear) or `model.mm_projector.weight` / `.bias` (linear). It is read
with `torch.load(weights_only=True)`: tensors and plain containers only, so a pickle that would
build any other object (run code) is refused instead of executed.
"""

from __future__ import annotations

import os

import torch
from torch import nn

from vlmtrain.errors import CheckpointError

KEYWORD = "mm_projector."


def read_llava_projector(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """{name after `mm_projector.`: tensor} of a LLaVA projector file (LLaVA's own `get_w`)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError, ValueError) as e:
        raise CheckpointError(
            f"cannot read as a weights-only torch file: {e}", file=str(path)
        ) from e
    except Exception as e:  # noqa: BLE001 - torch's refusal of an unsafe global (UnpicklingError)
        raise CheckpointError(f"refused (not a plain tensor file): {e}", file=str(path)) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"holds a {type(state).__name__}, not a {{name: tensor}} dict",
                        file=str(path))  # fmt: skip
    out = {}
    for name, value in state.items():
        if not isinstance(name, str) or not torch.is_tensor(value):
            raise CheckpointError(f"entry {name!r} is not a named tensor", file=str(path))
        if KEYWORD in name:
            out[name.split(KEYWORD, 1)[1]] = value
    if not out:
        raise CheckpointError(f"no {KEYWORD}* tensors (keys: {sorted(state)[:5]})", file=str(path))
    return out


def load_llava_projector(projector: nn.Module, path: str | os.PathLike) -> None:
    """Copy a LLaVA projector file into a TokenProjector (`net.` + LLaVA's names); every
    parameter must be present with its shape, and the file may hold nothing else."""
    weights = {f"net.{k}": v for k, v in read_llava_projector(path).items()}
    own = dict(projector.named_parameters())
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    if missing or extra:
        raise CheckpointError(f"projector layout differs: missing {missing}, unexpected {extra}",
                        file=str(path))  # fmt: skip
    for name, p in own.items():
        if tuple(weights[name].shape) != tuple(p.shape):
            raise CheckpointError(f"{name}: shape {tuple(weights[name].shape)} in the file, "
                            f"{tuple(p.shape)} in the model", file=str(path))  # fmt: skip
    with torch.no_grad():
        for name, p in own.items():
            p.copy_(weights[name].to(p.dtype))
