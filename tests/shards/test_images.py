"""Image checks: each reject reason from the bytes alone, resize modes, path containment."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from tests.shards.conftest import bomb_png, image_bytes
from vlmdata.shards.images import (
    ImageReject,
    check_image,
    resize_image,
    resolve_image_path,
    sniff_format,
)


@pytest.mark.parametrize(("fmt", "ext"), [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")])
def test_sniff_and_check_accepted_formats(fmt, ext):
    data = image_bytes(1, (37, 21), fmt)
    assert sniff_format(data) == ext
    info = check_image(data)
    assert (info.format, info.width, info.height) == (ext, 37, 21)


def _reason(data: bytes, **kw) -> str:
    with pytest.raises(ImageReject) as e:
        check_image(data, **kw)
    return e.value.reason


def test_each_reject_reason_from_bytes():
    jpg = image_bytes(2, (64, 48))
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    assert _reason(b"") == "empty_file"
    assert _reason(b"hello, not an image") == "not_an_image"
    assert _reason(gif.getvalue()) == "not_an_image"  # only jpg/png/webp are accepted
    assert _reason(jpg[:12]) == "truncated"  # cut inside the header
    assert _reason(b"\xff\xd8\xff" + b"garbage" * 9 + b"\xff\xd9") == "not_an_image"
    assert _reason(jpg[: len(jpg) // 2]) == "truncated"
    assert _reason(image_bytes(3, (40, 40), "PNG")[:-40]) == "truncated"
    assert _reason(jpg, min_side=49) == "too_small"
    assert check_image(jpg, min_side=48).width == 64
    assert _reason(jpg, max_pixels=64 * 48 - 1) == "too_large"


def test_pixel_limit_is_checked_before_decoding():
    data = bomb_png()  # 10000×10000 declared: 100M pixels > default 89,478,485
    assert len(data) < 100_000
    with pytest.raises(ImageReject) as e:
        check_image(data)
    assert e.value.reason == "too_large" and "100,000,000" in e.value.detail
    # far beyond PIL's own hard limit too (PIL raises DecompressionBombError in open)
    assert _reason(bomb_png(20_000)) == "too_large"


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("keep_ratio", (32, 16)), ("center_crop", (32, 32)), ("border", (32, 32))],
)
def test_resize_modes(mode, expected):
    out = resize_image(image_bytes(4, (100, 50)), mode=mode, size=32)
    im = Image.open(io.BytesIO(out))
    assert im.size == expected and im.format == "JPEG"
    assert resize_image(image_bytes(4, (100, 50)), mode=mode, size=32) == out  # deterministic


def test_keep_ratio_never_upscales_and_reencode_changes_format():
    small = image_bytes(5, (20, 10), "PNG")
    out = resize_image(small, mode="keep_ratio", size=64, reencode="webp")
    assert sniff_format(out) == "webp"
    assert Image.open(io.BytesIO(out)).size == (20, 10)


def test_border_pads_with_black():
    white = io.BytesIO()
    Image.new("RGB", (40, 20), "white").save(white, format="PNG")
    im = Image.open(io.BytesIO(resize_image(white.getvalue(), mode="border", size=20)))
    assert im.size == (20, 20)
    assert im.getpixel((10, 0)) == (0, 0, 0) and im.getpixel((10, 10)) == (255, 255, 255)


def test_resolve_image_path_refuses_escapes(tmp_path):
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "a" / "link.jpg")
    os.symlink(root / "a", root / "inner")
    for bad in ("../secret.jpg", "a/../../secret.jpg", str(tmp_path / "secret.jpg"), "a/link.jpg"):
        with pytest.raises(ImageReject) as e:
            resolve_image_path(root, bad)
        assert e.value.reason == "path_escape"
    assert Path(resolve_image_path(root, "inner/x.jpg")) == (root / "a" / "x.jpg").resolve()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_structure_check_catches_cut_files_without_decoding(fmt):
    data = image_bytes(6, (48, 40), fmt)
    assert check_image(data, decode=False).width == 48
    assert check_image(data + b"\0" * 100, decode=False).width == 48  # zero padding is fine
    for cut in (len(data) // 2, len(data) - 3):
        with pytest.raises(ImageReject) as e:
            check_image(data[:cut], decode=False)
        assert e.value.reason == "truncated"


@pytest.mark.parametrize(
    ("fmt", "mode", "kw"),
    [
        ("JPEG", "RGB", {}),
        ("JPEG", "L", {"progressive": True}),
        ("PNG", "RGBA", {}),
        ("WEBP", "RGB", {}),  # VP8 (lossy)
        ("WEBP", "RGB", {"lossless": True}),  # VP8L
        ("WEBP", "RGBA", {}),  # VP8X (alpha)
    ],
)
def test_header_size_agrees_with_pil(fmt, mode, kw):
    from vlmdata.shards.images import header_size

    for size in ((1, 1), (37, 21), (300, 17)):
        out = io.BytesIO()
        Image.new(mode, size, 128 if mode == "L" else None).save(out, format=fmt, **kw)
        data = out.getvalue()
        assert header_size(data, sniff_format(data)) == Image.open(io.BytesIO(data)).size
        assert check_image(data, decode=False).width == size[0]
    assert header_size(b"\xff\xd8\xff\xe0\x00", "jpg") is None  # cut: PIL decides instead


def test_structure_check_limits_come_from_the_header():
    assert _reason(bomb_png(), decode=False) == "too_large"
    assert _reason(image_bytes(2, (64, 48)), decode=False, min_side=49) == "too_small"
    assert _reason(b"\xff\xd8\xff\xe0\x00\x10JFIF", decode=False) == "truncated"


def test_resolve_image_path_with_a_shared_folder_set_still_refuses_escapes(tmp_path):
    """prepare_chunk passes one `real_dirs` set for a run of rows: a folder seen once is not
    lstat-ed again, yet a symlinked file or folder met later is still followed and judged."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (tmp_path / "secret.jpg").write_bytes(b"x")
    os.symlink(tmp_path / "secret.jpg", root / "a" / "link.jpg")
    os.symlink(root / "a", root / "inner")
    os.symlink(tmp_path, root / "out")
    seen: set[str] = set()
    assert resolve_image_path(root, "a/x.jpg", seen) == str((root / "a" / "x.jpg").resolve())
    assert seen == {str((root / "a").resolve())}
    for bad in ("a/link.jpg", "out/secret.jpg"):
        with pytest.raises(ImageReject) as e:
            resolve_image_path(root, bad, seen)
        assert e.value.reason == "path_escape"
    assert Path(resolve_image_path(root, "inner/x.jpg", seen)) == (root / "a" / "x.jpg").resolve()
    assert str(root.resolve() / "inner") not in seen  # a symlink is never remembered as real
