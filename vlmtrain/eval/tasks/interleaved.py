"""Shared by FROMAGe's VIST and VisDial protocols: the [RET] embedding of an interleaved
context of captions and images, and the images of a benchmark folder.

Context pieces are FROMAGe's: each caption tokenized on its own with the tokenizer's <s> first
(`tokenizer(c, add_special_tokens=True)` with OPT), each image as its captioning-mode visual
tokens, and [RET] after the last caption; the embedding is the projected last-layer state there.
Both scripts squash every image to the tower's size before CLIP's processor
(`img.resize((224, 224))`), so images are loaded that way here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from PIL import Image

from vlmdata.core.errors import DataError

Piece = str | Image.Image  # a caption, or an image


def image_files(folder: str | os.PathLike) -> dict[str, Path]:
    """{file stem: path} of the files in `folder` (one level; VIST's <photo id>.jpg/.png/...,
    VisDial's VisualDialog_val2018_<12-digit id>.jpg)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.is_file()}


def load_squashed(path: Path, size: tuple[int, int]) -> Image.Image | None:
    """RGB image resized to `size` ignoring aspect, as both scripts do; None if undecodable
    (the VIST script skips those images)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB").resize(size)
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def load_for_tower(model, path: Path) -> Image.Image | None:
    """`load_squashed` to the size of the model's vision tower."""
    h, w = model.vision.image_size
    return load_squashed(path, (w, h))


def context_ids(model, pieces: list[Piece]) -> tuple[list[int], list[Image.Image]]:
    """Token ids with image placeholders for `pieces`, [RET] after the last; and the images."""
    tok = model.tokenizer
    ids: list[int] = []
    images: list[Image.Image] = []
    for piece in pieces:
        if isinstance(piece, Image.Image):
            ids += [model.image_token_id] * model.num_image_tokens
            images.append(piece)
        else:
            bos = [] if tok.bos_token_id is None else [tok.bos_token_id]
            ids += bos + tok(piece, add_special_tokens=False)["input_ids"]
    if model.ret_token_id is None:
        raise DataError("this checkpoint has no [RET] token (model.ret_token): not FROMAGe")
    return ids + [model.ret_token_id], images


def ret_embedding(model, pieces: list[Piece]) -> Any:
    """(D,) normalised [RET] embedding of one interleaved context (one forward pass)."""
    import torch

    ids, images = context_ids(model, pieces)
    dev = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=dev)
    mask = torch.ones_like(input_ids)
    pixels = None
    if images:
        transform = model.image_transform
        pixels = torch.stack([transform(im) for im in images]).to(dev)
    with torch.no_grad():
        out = model(input_ids, mask, pixel_values=pixels, output_hidden_states=True)
        return model.ret_embeddings(out.hidden_states[-1], input_ids, mask)[0]


def image_embeddings(model, images: list[Image.Image], batch_size: int = 32) -> Any:
    """(N, D) normalised retrieval embeddings of `images` (FROMAGe's retrieval-mode vectors)."""
    import torch

    dev = next(model.parameters()).device
    transform = model.image_transform
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            pixels = torch.stack([transform(im) for im in images[i : i + batch_size]])
            out.append(model.encode_images(pixels.to(dev)).float().cpu())
    return torch.cat(out).numpy()


def ret_embeddings(model, contexts: list[list[Piece]], progress: bool, unit: str) -> Any:
    """(N, D) float [RET] embeddings of the contexts (one forward pass each); the progress bar
    counts `unit`s."""
    import numpy as np
    from tqdm import tqdm

    steps = tqdm(contexts, desc=f"{unit}s", unit=unit, disable=not progress)
    return np.stack([ret_embedding(model, c).float().cpu().numpy() for c in steps])
