"""Image bytes -> normalised tensor, using the vision tower's own preprocessing numbers.

Two aspect policies: `crop` is open_clip's evaluation transform (resize the shortest side, centre
crop), which cuts off the edges of wide images; `pad` is LLaVA's expand-to-square, which pads the
short side with the mean colour first so nothing is lost (what LLaVA-1.5 trains with).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence

import torch
from PIL import Image

ASPECTS = ("pad", "crop")


def decode_image(data: bytes) -> Image.Image:
    """Decode image bytes to RGB (palette/alpha/greyscale images all become 3-channel)."""
    with Image.open(io.BytesIO(data)) as im:
        im.load()
        return im.convert("RGB")


def expand_to_square(image: Image.Image, fill: tuple[int, int, int]) -> Image.Image:
    """Pad the short side symmetrically with `fill` (LLaVA's `expand2square`)."""
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    out = Image.new(image.mode, (side, side), fill)
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


def build_image_transform(
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    aspect: str = "crop",
    interpolation: str = "bicubic",
) -> Callable[[Image.Image], torch.Tensor]:
    """A PIL -> (3, H, W) float tensor transform; `aspect` is "crop" or "pad"."""
    from torchvision import transforms as T

    if aspect not in ASPECTS:
        raise ValueError(f"image aspect must be one of {ASPECTS}, got {aspect!r}")
    size_hw = (size, size) if isinstance(size, int) else tuple(size)
    interp = {
        "bicubic": T.InterpolationMode.BICUBIC,
        "bilinear": T.InterpolationMode.BILINEAR,
    }.get(interpolation, T.InterpolationMode.BICUBIC)
    to_tensor = [T.ToTensor(), T.Normalize(mean=list(mean), std=list(std))]
    if aspect == "crop":
        resize = [T.Resize(min(size_hw), interpolation=interp), T.CenterCrop(size_hw)]
        return T.Compose([_to_rgb, *resize, *to_tensor])
    fill = tuple(int(round(m * 255)) for m in mean)
    pad = [ExpandToSquare(fill), T.Resize(size_hw, interpolation=interp)]
    return T.Compose([_to_rgb, *pad, *to_tensor])


class ExpandToSquare:
    """Picklable transform step (DataLoader workers may be spawned) for `expand_to_square`."""

    def __init__(self, fill: tuple[int, ...]):
        self.fill = tuple(fill)

    def __call__(self, image: Image.Image) -> Image.Image:
        return expand_to_square(image, self.fill)


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")
