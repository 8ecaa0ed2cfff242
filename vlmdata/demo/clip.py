"""A tiny open_clip model with seeded random weights, saved as an open_clip local directory.

The demo needs an image encoder without downloads: for `vlmdata embed` (GRACE's structured ids
are hierarchical k-means over CLIP image embeddings) and as the trained models' frozen vision
tower. Random weights still map images of similar colours and layouts to nearby embeddings, which
is what the ids' clusters need here. Saving the weights (rather than rebuilding from a config)
makes every later stage see the same encoder, so reruns give the same identifiers.

Layout (open_clip's `local-dir:` form, loadable by `open_clip.create_model("local-dir:DIR")`):
    DIR/open_clip_config.json   {"model_cfg": {...}, "preprocess_cfg": {...}}
    DIR/open_clip_model.safetensors
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from vlmdata.core.atomic import atomic_open, atomic_path


def tiny_clip_config(image_size: int = 64, width: int = 64) -> dict[str, Any]:
    """open_clip model_cfg of a 2-block ViT (patch 8) and a 1-block text tower."""
    return {
        "embed_dim": width,
        "vision_cfg": {
            "image_size": image_size,
            "patch_size": 8,
            "width": width,
            "layers": 2,
            "head_width": 32,
            "mlp_ratio": 2.0,
        },
        "text_cfg": {
            "context_length": 32,
            "vocab_size": 49408,  # open_clip's tokenizer ships this vocabulary
            "width": width,
            "heads": max(1, width // 32),
            "layers": 1,
        },
    }


def save_demo_clip(
    out_dir: str | os.PathLike, *, seed: int = 0, image_size: int = 64, width: int = 64
) -> Path:
    """Build the tiny CLIP with `torch.manual_seed(seed)` and save it; returns the directory."""
    import open_clip
    import torch
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = tiny_clip_config(image_size, width)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = open_clip.CLIP(**cfg)
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out / "open_clip_model.safetensors") as tmp:
        # one metadata key: safetensors writes a map's keys in no fixed order (bytes would vary)
        save_file(state, str(tmp), metadata={"format": "pt"})
    preprocess = {
        "size": image_size,
        "mean": list(OPENAI_DATASET_MEAN),
        "std": list(OPENAI_DATASET_STD),
        "interpolation": "bicubic",
        "resize_mode": "shortest",
    }
    with atomic_open(out / "open_clip_config.json", "w", encoding="utf-8") as f:
        config = {"model_cfg": cfg, "preprocess_cfg": preprocess, "seed": seed}
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    return out
