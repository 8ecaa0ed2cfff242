"""Small embedded thumbnails: an image's bytes as a `data:image/jpeg;base64,...` URI.

JPEG at a small side keeps a page of a few hundred images to a few MB whatever the stored
images weigh (a 500 KB CC3M photo becomes ~4 KB).
"""

from __future__ import annotations

import base64
import io
import warnings
from dataclasses import dataclass

from PIL import Image


@dataclass(frozen=True)
class Thumb:
    uri: str  # data: URI of the thumbnail
    width: int  # the original image's size
    height: int


def thumbnail(data: bytes, side: int = 160, quality: int = 70) -> Thumb | None:
    """A JPEG data URI no larger than side x side; None when the bytes do not decode (the page
    then says so instead of showing a broken image)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                size = img.size
                img.draft("RGB", (side, side))  # JPEG: decode at a reduced scale
                img = _rgb(img)
                img.thumbnail((side, side))
                out = io.BytesIO()
                img.save(out, format="JPEG", quality=quality, optimize=True)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError, Warning):
        return None
    uri = "data:image/jpeg;base64," + base64.b64encode(out.getvalue()).decode("ascii")
    return Thumb(uri, size[0], size[1])


def _rgb(img: Image.Image) -> Image.Image:
    """RGB; transparency composited on white (JPEG has no alpha)."""
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        base = Image.new("RGB", img.size, (255, 255, 255))
        base.paste(img, mask=img.getchannel("A"))
        return base
    return img.convert("RGB")
