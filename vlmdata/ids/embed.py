"""`embed_images`: open_clip image embeddings of a shards directory, in index order.

Feeds GRACE's structured identifiers (hierarchical k-means) and retrieval baselines. By default
the vectors are CLIP's projected image embeddings as they come, not L2-normalised: GRACE's
`structured_id.py` clusters `SentenceTransformer('clip-ViT-L-14').encode(image)`, which is
HF CLIP's `visual_projection` output with no Normalize module (`normalize_embeddings` off), so
its k-means sees the raw vectors; `normalize=True` gives unit vectors (cosine geometry). Models are
named by the one rule of vlmdata.core.clip_source: "NAME:CHECKPOINT" (a local weights file), a
directory holding open_clip_config.json and its weights (open_clip's "local-dir:" form), or
"random:NAME" for random weights. Nothing is downloaded.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from vlmdata.core import layout
from vlmdata.core.atomic import atomic_open
from vlmdata.core.errors import DataError


def load_clip(model: str, device: str = "cpu"):
    """(open_clip model in eval mode, its eval image transform): MODEL by the one rule of
    vlmdata.core.clip_source (a bare architecture name needs weights or `random:`)."""
    from vlmdata.core.clip_source import create_clip, resolve_clip

    return create_clip(resolve_clip(model), device)


def embed_images(
    out: str | os.PathLike,
    output: str | os.PathLike,
    *,
    model: str,
    batch_size: int = 64,
    device: str = "cpu",
    normalize: bool = False,
    progress: bool = False,
) -> tuple[int, int]:
    """Write (n_images, dim) float32 embeddings (L2-normalised if `normalize`); returns (n, dim).
    `progress`: a bar over the images (a CPU embeds a few dozen a second: 30k images take
    minutes)."""
    import torch
    from PIL import Image
    from tqdm import tqdm

    from vlmdata.shards import ShardReader

    if not (Path(out) / layout.INDEX).exists():
        raise DataError("embed reads images from shards: no index here", file=str(out))
    clip, preprocess = load_clip(model, device)
    reader = ShardReader(out)
    chunks: list[np.ndarray] = []
    bar = tqdm(total=len(reader), unit="img", desc="embed", disable=not progress)
    with torch.inference_mode(), bar:
        for start in range(0, len(reader), batch_size):
            pixels = []
            for i in range(start, min(start + batch_size, len(reader))):
                sample = reader[i]
                try:
                    img = Image.open(io.BytesIO(sample["image"])).convert("RGB")
                except OSError as e:
                    raise DataError(f"row {i} (key {sample['key']!r}): {e}", file=str(out)) from e
                pixels.append(preprocess(img))
            feats = clip.encode_image(torch.stack(pixels).to(device), normalize=normalize)
            chunks.append(feats.float().cpu().numpy())
            bar.update(len(pixels))
    reader.close()
    emb = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    with atomic_open(output, "wb") as f:
        np.save(f, emb.astype(np.float32), allow_pickle=False)
    return int(emb.shape[0]), int(emb.shape[1]) if emb.ndim == 2 else 0
