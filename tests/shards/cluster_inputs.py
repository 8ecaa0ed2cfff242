"""A manifest that exercises every placement rule (group.py) across slices and partitions, for
the partitioned plan's tests: the local run is the oracle, compared file by file.

Rows (the rule each one exercises; shapes: our manifest contract, core/manifest.py):
- own images in three splits, jpg/png/webp, 1-3 texts (KEY.txt, --every-text copies);
- a repeated key whose first row has a missing image (so the second row places and claims
  it) and a repeated key after a placed row (duplicate_key);
- records sharing an image by image_key (LLaVA-style, `source` llava: shared duplicates),
  one naming another file for that image key (image_key_conflict);
- images with the same bytes under other keys: a `test` row (duplicate_image, or joined with
  --duplicate-images share) and a `llava` row (joined: llava shares images);
- a chain linking components: a key repeated on two image keys whose bytes equal a third's;
- a bad key, a missing file, a file that is not an image.
"""

from __future__ import annotations

from pathlib import Path

from tests.shards.conftest import image_bytes, row, write_manifest
from vlmdata.core import layout

N_OWN = 30


def make_rule_set(root: Path) -> tuple[Path, Path]:
    images = root / "images"
    images.mkdir(parents=True, exist_ok=True)
    fmts = [("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")]
    for i in range(N_OWN):
        fmt, ext = fmts[i % 3]
        (images / f"i{i}.{ext}").write_bytes(image_bytes(i, (30 + i % 5, 20 + i % 3), fmt))
    name = {i: f"i{i}.{fmts[i % 3][1]}" for i in range(N_OWN)}
    (images / "same3.jpg").write_bytes((images / name[3]).read_bytes())
    (images / "same4.png").write_bytes((images / name[4]).read_bytes())
    (images / "same7.png").write_bytes((images / name[7]).read_bytes())
    (images / "broken.jpg").write_bytes(b"not an image at all")
    splits = ("train", "test", "val")
    rows = []
    for i in range(N_OWN):
        rows.append(row(f"k{i:03d}", name[i], splits[i % 3], n_texts=1 + i % 3))
        if i == 5:
            rows.append(row("dupkey", "missing.jpg", "train", image_key="gone"))  # key stays free
            rows.append(row("k002", name[9], "train"))  # duplicate_key
        if i == 8:
            rows.append(row("dupkey", name[20], "test", n_texts=3))  # places: claims "dupkey"
            for n in range(3):
                rows.append(row(f"q{n}", name[21], "train", image_key="img21", source="llava"))
        if i == 12:
            rows.append(row("q9", name[22], "train", image_key="img21", source="llava"))
            rows.append(row("twin3", "same3.jpg", "test"))  # same bytes as k003
            rows.append(row("twin4", "same4.png", "val", source="llava"))  # joins k004
            rows.append(row("", name[1], "train"))  # bad_key
            rows.append(row("nofile", "absent.png", "train"))
            rows.append(row("broken", "broken.jpg", "test"))
        if i == 20:
            rows.append(row("dupkey", name[23], "train"))  # duplicate_key, after a placed one
            rows.append(row("chain", "same7.png", "train", image_key="c7"))
            rows.append(row("chain", name[24], "train"))  # duplicate_key through the chain
            rows.append(row("q3", name[21], "val", image_key="img21", source="llava"))
    manifest = write_manifest(root / layout.MANIFEST, rows, ("image_key",))
    return manifest, images
