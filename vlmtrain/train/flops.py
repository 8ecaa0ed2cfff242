"""Model FLOPs per training step, and MFU: those FLOPs per second over the device's peak.

The rule (docs/DESIGN.md, "Efficiency"): MODEL FLOPs are what the maths of one step needs, counted
on real tokens only (padding, recomputation by activation checkpointing and optimizer updates are
not counted; they are the overheads MFU exposes).

- LM, per sequence of s real tokens: `m * (2 * N * s + 4 * L * A * s^2)`, where N is the LM's
  weight matrices less its embedding tables (lookups, not matmuls; a table tied to the LM head
  counts, as the head), L the layers, A = heads x head_dim (the score and value matmuls, PaLM's
  convention: the full s x s, not half), and m the pass multiplier below. Every sequence counts:
  context and supervised tokens, image placeholders, and extra LM passes a recipe makes (each
  `*attention_mask` in the batch: FROMAGe's [RET] texts, AutoVER's entity names). Packed rows count
  per example (s = one example's length), never the row's length.
- Vision tower and projector, per image: their forward FLOPs, measured once on a blank image with
  torch's FlopCounterMode (on the meta device, so free; SDPA through its math kernel, so the
  attention matmuls are counted on every device), times their multiplier.
- Multiplier m: 3 (forward + input grads + weight grads) for a part whose weights train, 2 for a
  frozen part that gradients pass through (a trainable part lies upstream: the projector before a
  frozen LM), 1 for forward only (a frozen tower).

MFU = model FLOPs of the step summed over ranks / step seconds / (ranks x peak FLOP/s of one
device). The peak comes from `PEAKS` (dense tensor-core figures from the vendors' data sheets) or
`log.peak_tflops`; without either (a CPU) no MFU is reported, only TFLOP/s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from vlmtrain.data.packing import segment_lengths

# (pattern on torch.cuda.get_device_name(), 16-bit dense TFLOP/s, fp32 TFLOP/s), first match wins.
# 16-bit: bf16/fp16 tensor cores, dense (no 2:4 sparsity), fp32 accumulate; V100/T4: fp16 only.
# fp32: without TF32 (torch's default for matmuls). Sources: NVIDIA data sheets.
PEAKS: list[tuple[str, float, float]] = [
    (r"GH200", 989.0, 67.0),
    (r"H200", 989.0, 67.0),
    (r"H100.*NVL", 835.0, 60.0),
    (r"H100.*PCIe", 756.0, 51.0),
    (r"H100|H800", 989.0, 67.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"H20\b", 148.0, 44.0),
    (r"B200", 2250.0, 75.0),
    (r"A100|A800", 312.0, 19.5),
    (r"L40S", 362.0, 91.6),
    (r"L40\b", 181.0, 90.5),
    (r"\bL4\b", 121.0, 30.3),
    (r"\bA10\b", 125.0, 31.2),
    (r"\bA30\b", 165.0, 10.3),
    (r"\bA40\b", 149.7, 37.4),
    (r"RTX A6000", 154.8, 38.7),
    (r"RTX 4090", 165.2, 82.6),
    (r"V100.*PCI", 112.0, 14.0),
    (r"V100", 125.0, 15.7),
    (r"\bT4\b", 65.0, 8.1),
]


def peak_tflops(device_name: str, precision: str) -> float | None:
    """Peak dense TFLOP/s of one device for `precision` (bf16 | fp16 | fp32); None if unknown."""
    for pattern, half, single in PEAKS:
        if re.search(pattern, device_name):
            return single if precision == "fp32" else half
    return None


def device_peak(precision: str, override: float | None = None) -> tuple[float | None, str]:
    """(peak TFLOP/s, where it came from) for this process's device."""
    if override:
        return float(override), "log.peak_tflops"
    if not torch.cuda.is_available():
        return None, "cpu (set log.peak_tflops for an MFU)"
    name = torch.cuda.get_device_name()
    peak = peak_tflops(name, precision)
    return peak, (f"{name}, {precision}" if peak else f"{name}: not in the table")


# ---- the model's share ----------------------------------------------------------------------


def numel(p: torch.nn.Parameter) -> int:
    """Elements of a parameter, also when ZeRO-3 has partitioned it away (ds_numel)."""
    return int(getattr(p, "ds_numel", p.numel()))


def _dims(p: torch.nn.Parameter) -> int:
    return len(getattr(p, "ds_shape", p.shape))


def lm_matmul_params(lm: torch.nn.Module) -> int:
    """N: the LM's weight matrices (parameters of 2+ dims; biases and norms are not matmuls) less
    its embedding tables (token and learned-position lookups), a table tied to the head counting
    as the head."""
    head = lm.get_output_embeddings()
    head_ids = {id(p) for p in head.parameters()} if head is not None else set()
    tables = [lm.get_input_embeddings()]
    tables += [m for m in lm.modules() if isinstance(m, torch.nn.Embedding)]
    table_ids = {id(p) for t in tables for p in t.parameters()} - head_ids
    return sum(numel(p) for p in lm.parameters() if _dims(p) >= 2 and id(p) not in table_ids)


def lm_attention_shape(config: Any) -> tuple[int, int]:
    """(layers, heads x head_dim) from a transformers config (gpt2 / opt / llama names)."""
    layers = int(config.num_hidden_layers)
    heads = int(config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or int(config.hidden_size) // heads
    return layers, heads * int(head_dim)


def multipliers(parts: list[str]) -> dict[str, int]:
    """Pass multiplier per part (3 trains, 2 gradients pass through, 1 forward only)."""
    vision = 3 if "vision" in parts else 1
    projector = 3 if "projector" in parts else (2 if vision > 1 else 1)
    upstream_of_lm = projector > 1 or "new_tokens" in parts
    lm = 3 if "lm" in parts else (2 if upstream_of_lm else 1)
    return {"vision": vision, "projector": projector, "lm": lm}


class _ImageFeatures(torch.nn.Module):
    """`vlm.image_features` as a forward (for torch.func.functional_call)."""

    def __init__(self, vlm) -> None:
        super().__init__()
        self.vlm = vlm

    def forward(self, pixels: torch.Tensor, tower_only: bool) -> torch.Tensor:
        return self.vlm.vision(pixels) if tower_only else self.vlm.image_features(pixels)


def image_forward_flops(model) -> tuple[float, float]:
    """(vision tower, projector) forward FLOPs for one image, counted on the meta device: the
    tower and projector run with meta stand-ins for their weights (no memory, no compute; fake
    tensors would start autograd's device threads, which breaks a later fork)."""
    h, w = model.vision.image_size
    dtype = next(model.vision.parameters()).dtype
    wrapper = _ImageFeatures(model)
    parts = ("vlm.vision.", "vlm.projector.")
    tensors = dict(wrapper.named_parameters()) | dict(wrapper.named_buffers())
    meta = {
        n: torch.empty_like(t, device="meta") for n, t in tensors.items() if n.startswith(parts)
    }
    image = torch.zeros(1, 3, h, w, dtype=dtype, device="meta")
    counts = []
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # its fused kernel is invisible to the counter
    try:
        for tower_only in (True, False):
            with sdpa_kernel(SDPBackend.MATH), torch.no_grad(), FlopCounterMode(display=False) as c:
                torch.func.functional_call(wrapper, meta, (image, tower_only))
            counts.append(float(c.get_total_flops()))
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counts[0], counts[1] - counts[0]


@dataclass(frozen=True)
class FlopModel:
    """What one step of this model costs per sequence and per image (see the module doc)."""

    lm_params: int
    lm_layers: int
    lm_attn_width: int
    image_vision: float = 0.0  # forward FLOPs per image
    image_projector: float = 0.0
    mult_lm: int = 3
    mult_vision: int = 1
    mult_projector: int = 3

    @classmethod
    def from_model(cls, model) -> FlopModel:
        """From a built VLM (before DeepSpeed partitions it)."""
        layers, width = lm_attention_shape(model.lm.config)
        vision, projector = image_forward_flops(model)
        m = multipliers(list(model.trainable_parts))
        return cls(
            lm_params=lm_matmul_params(model.lm),
            lm_layers=layers,
            lm_attn_width=width,
            image_vision=vision,
            image_projector=projector,
            mult_lm=m["lm"],
            mult_vision=m["vision"],
            mult_projector=m["projector"],
        )

    def lm_flops(self, lengths: torch.Tensor) -> float:
        """LM FLOPs of sequences with these real-token lengths."""
        s = lengths.to(torch.float64)
        per = 2.0 * self.lm_params * s + 4.0 * self.lm_layers * self.lm_attn_width * s * s
        return float(self.mult_lm * per.sum())

    def image_flops(self, images: int) -> float:
        per = self.mult_vision * self.image_vision + self.mult_projector * self.image_projector
        return float(images * per)

    def batch_flops(self, batch: dict[str, Any]) -> float:
        """Model FLOPs of one collated (padded or packed) micro-batch."""
        pixels = batch.get("pixel_values")
        images = 0 if pixels is None else int(pixels.shape[0])
        lm = sum(self.lm_flops(s) for s in sequence_lengths(batch))
        return lm + self.image_flops(images)

    def describe(self) -> str:
        return (
            f"model FLOPs: LM {self.mult_lm * 2}*{self.lm_params:,}*tokens "
            f"+ {self.mult_lm * 4}*{self.lm_layers}*{self.lm_attn_width}*len^2 per sequence; "
            f"per image: tower {self.mult_vision}x{self.image_vision:.3g} "
            f"+ projector {self.mult_projector}x{self.image_projector:.3g}"
        )


def sequence_lengths(batch: dict[str, Any]) -> list[torch.Tensor]:
    """Real-token lengths of every LM sequence in a batch, one tensor per `*attention_mask`.

    A packed batch (with `position_ids`) counts its examples, not its rows.
    """
    out = []
    for name, mask in batch.items():
        if not name.endswith("attention_mask") or not torch.is_tensor(mask) or mask.ndim != 2:
            continue
        positions = batch.get(name[: -len("attention_mask")] + "position_ids")
        out.append(mask.sum(1) if positions is None else segment_lengths(positions, mask))
    return out


def throughput(flops: float, seconds: float, world: int, peak: float | None) -> dict[str, float]:
    """`tflops` (model TFLOP/s per device) and `mfu` (its share of the peak, when known)."""
    if seconds <= 0:
        return {}
    per_device = flops / seconds / max(1, world) / 1e12
    out = {"tflops": per_device}
    if peak:
        out["mfu"] = per_device / peak
    return out


def speed(record: dict[str, Any]) -> dict[str, str]:
    """The throughput fields of a metrics record, formatted for the progress bar and summary."""
    out = {}
    if "samples_per_s" in record:
        out["samples/s"] = f"{record['samples_per_s']:.1f}"
        out["tokens/s"] = f"{record['tokens_per_s']:.0f}"
    if "mfu" in record:
        out["mfu"] = f"{100 * record['mfu']:.1f}%"
    elif "tflops" in record:
        out["TFLOP/s"] = f"{record['tflops']:.3g}"
    return out
