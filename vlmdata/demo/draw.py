"""Drawing the demo images: one coloured shape at a named position on a plain background.

Everything a caption says is visible: the shape's outline, its colour, whether it is small or
large, where it sits and the background colour. Shapes are drawn at 4x resolution and reduced,
so edges are smooth without losing the colours a test re-detects from the pixels.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageDraw

# Saturated, well separated colours: a JPEG'd pixel is still nearest to the colour it was drawn in.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 220, 30),
    "purple": (140, 40, 180),
    "orange": (250, 140, 20),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
}
SHAPES = ("circle", "square", "triangle", "star", "diamond", "cross")
SIZES = {"small": 0.12, "large": 0.22}  # radius as a fraction of the image side
POSITIONS = {
    "left": (0.28, 0.5),
    "right": (0.72, 0.5),
    "top": (0.5, 0.28),
    "bottom": (0.5, 0.72),
    "center": (0.5, 0.5),
}
_SUPERSAMPLE = 4


@dataclass(frozen=True)
class Scene:
    """What one image shows; `dx`, `dy`, `scale` and `angle` are small jitters, not attributes."""

    shape: str
    color: str
    size: str
    position: str
    background: str
    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    angle: float = 0.0

    def attributes(self) -> dict[str, str]:
        return {
            "shape": self.shape,
            "color": self.color,
            "size": self.size,
            "position": self.position,
            "background": self.background,
        }


def _polygon(n: int, cx: float, cy: float, r: float, angle: float, start: float = -90.0):
    """Vertices of a regular n-gon, first vertex pointing up (before rotation)."""
    return [
        (
            cx + r * math.cos(math.radians(start + angle + 360.0 * i / n)),
            cy + r * math.sin(math.radians(start + angle + 360.0 * i / n)),
        )
        for i in range(n)
    ]


def _star(cx: float, cy: float, r: float, angle: float):
    outer = _polygon(5, cx, cy, r, angle)
    inner = _polygon(5, cx, cy, r * 0.45, angle, start=-90.0 + 36.0)
    return [p for pair in zip(outer, inner, strict=True) for p in pair]


def _rotate(points, cx: float, cy: float, angle: float):
    a = math.radians(angle)
    c, s = math.cos(a), math.sin(a)
    return [(cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c) for x, y in points]


def _shape_points(shape: str, cx: float, cy: float, r: float, angle: float):
    """Outline of every shape except the circle, as a polygon."""
    if shape == "square":
        h = r * 0.85
        box = [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
        return _rotate(box, cx, cy, angle)
    if shape == "triangle":
        return _polygon(3, cx, cy + r * 0.15, r * 1.1, angle)
    if shape == "star":
        return _star(cx, cy, r * 1.1, angle)
    if shape == "diamond":  # taller than wide, so it never looks like a turned square
        return _rotate(
            [(cx, cy - r), (cx + r * 0.62, cy), (cx, cy + r), (cx - r * 0.62, cy)], cx, cy, angle
        )
    if shape == "cross":
        w, h = r * 0.33, r
        arms = [
            (-w, -h),
            (w, -h),
            (w, -w),
            (h, -w),
            (h, w),
            (w, w),
            (w, h),
            (-w, h),
            (-w, w),
            (-h, w),
            (-h, -w),
            (-w, -w),
        ]
        return _rotate([(cx + x, cy + y) for x, y in arms], cx, cy, angle)
    raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of `size` x `size` pixels."""
    big = size * _SUPERSAMPLE
    img = Image.new("RGB", (big, big), PALETTE[scene.background])
    draw = ImageDraw.Draw(img)
    fx, fy = POSITIONS[scene.position]
    cx, cy = (fx + scene.dx) * big, (fy + scene.dy) * big
    r = SIZES[scene.size] * scene.scale * big
    fill = PALETTE[scene.color]
    if scene.shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    else:
        draw.polygon(_shape_points(scene.shape, cx, cy, r, scene.angle), fill=fill)
    return img.resize((size, size), Image.Resampling.BOX)


def encode_jpeg(img: Image.Image, quality: int = 92) -> bytes:
    """JPEG bytes, fixed settings (no EXIF or timestamps, so same image → same bytes); 4:4:4
    chroma keeps the small shapes' colours intact."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=False, progressive=False)
    return buf.getvalue()
