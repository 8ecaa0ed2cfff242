"""Generators shared by the shards tests: small deterministic images and manifests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vlmdata.core import layout
from vlmdata.core.manifest import manifest_schema


def image_bytes(seed: int, size: tuple[int, int] = (40, 32), fmt: str = "JPEG") -> bytes:
    """A noisy RGB image, different for every seed, encoded in `fmt`."""
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format=fmt)
    return out.getvalue()


def bomb_png(side: int = 10_000) -> bytes:
    """A tiny PNG whose header declares side×side pixels (default: over PIL's 89M limit).

    Built by hand (IHDR + a little IDAT + IEND): only the header is ever read.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit greyscale
    idat = zlib.compress(b"\0" * (side // 8 + 1) * 4)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_manifest(path: Path, rows: list[dict], extras: tuple[str, ...] = ()) -> Path:
    schema = manifest_schema(extras)
    full = [{c: r.get(c) for c in schema.names} for r in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(full, schema=schema), path)
    return path


def row(key: str, path: str | None, split: str = "train", n_texts: int = 2, **extra) -> dict:
    texts = [f"caption {i} of {key}" for i in range(n_texts)]
    return {"key": key, "source": "test", "split": split, "path": path, "texts": texts, **extra}


def make_good_set(root: Path, n: int, *, splits=("train", "test")) -> tuple[Path, Path]:
    """n valid images (jpg, png and webp mixed) + their manifest; returns (manifest, images)."""
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    fmts = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")]
    rows = []
    for i in range(n):
        fmt, ext = fmts[i % 7 % 3] if i % 7 < 3 else fmts[0]
        name = f"sub/img{i:04d}.{'jpeg' if ext == 'jpg' else ext}"
        (images / name).parent.mkdir(exist_ok=True)
        (images / name).write_bytes(image_bytes(i, (32 + i % 9, 24 + i % 5), fmt))
        rows.append(row(f"s{i:04d}", name, splits[i % len(splits)], entity_id=f"Q{i}"))
    return write_manifest(root / layout.MANIFEST, rows, ("entity_id",)), images


@pytest.fixture
def good_set(tmp_path):
    return make_good_set(tmp_path / "in", 23)


BAD_COUNTS = {
    "missing_file": 2,
    "path_escape": 3,
    "empty_file": 1,
    "not_an_image": 2,
    "truncated": 1,
    "too_large": 1,
    "too_small": 1,
    "duplicate_image": 2,
    "bad_key": 1,
    "duplicate_key": 1,
}
MIN_SIDE = 16


def make_bad_set(root: Path, n_good: int = 12) -> tuple[Path, Path, list[str]]:
    """Good images interleaved with one or more rows for every reject reason.

    Returns (manifest, images, keys expected in the shards in order); shard with
    min_side=MIN_SIDE to trigger too_small. Reject counts: BAD_COUNTS.
    """
    manifest, images = make_good_set(root, n_good)
    import polars as pl

    good = pl.read_parquet(manifest).to_dicts()
    (root / "outside.jpg").write_bytes(image_bytes(900))
    (images / "bad").mkdir()
    (images / "bad" / "link.jpg").symlink_to(root / "outside.jpg")
    files = {
        "bad/empty.jpg": b"",
        "bad/text.jpg": b"just some text\n",
        "bad/anim.gif": b"GIF89a" + b"\0" * 40,
        "bad/cut.jpg": image_bytes(901, (64, 64))[:700],
        "bad/bomb.png": bomb_png(),
        "bad/tiny.jpg": image_bytes(902, (MIN_SIDE - 1, 40)),
        "bad/dup_a.png": (images / good[1]["path"]).read_bytes(),
        "bad/dup_b.jpg": (images / good[0]["path"]).read_bytes(),
    }
    for name, data in files.items():
        (images / name).write_bytes(data)
    bad = [
        row("m1", "bad/nope.jpg"),
        row("m2", None),
        row("e1", "../outside.jpg"),
        row("e2", str(root / "outside.jpg")),
        row("e3", "bad/link.jpg"),
        row("z1", "bad/empty.jpg"),
        row("n1", "bad/text.jpg"),
        row("n2", "bad/anim.gif"),
        row("t1", "bad/cut.jpg"),
        row("l1", "bad/bomb.png"),
        row("q1", "bad/tiny.jpg"),
        row("d1", "bad/dup_a.png"),
        row("d2", "bad/dup_b.jpg"),
        row("bad.key", good[2]["path"]),
        row(good[3]["key"], "bad/tiny.jpg"),
    ]
    rows: list[dict] = []
    for i, g in enumerate(good):  # interleave so rejects fall between kept samples
        rows.append(g)
        if i < len(bad):
            rows.append(bad[i])
    rows += bad[len(good) :]
    write_manifest(manifest, rows, ("entity_id",))
    return manifest, images, [g["key"] for g in good]
