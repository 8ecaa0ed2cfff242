"""Inputs in the published shapes at any size, for the bounded-memory tests and
benchmarks/bench_scale.py (shapes and sources named in each generator).

Deterministic for a seed, so a before/after run compares byte for byte.
"""

from __future__ import annotations

import json
import random
from collections import deque
from pathlib import Path

WORDS = (
    "a man woman dog cat red blue small large standing sitting on the in with of street "
    "beach mountain city river table field car bike tree house people group young old black "
    "white green holding looking running water snow light view portrait close up"
).split()


def _caption(rng: random.Random, n: int = 10) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def gen_cc3m(path: Path, rows: int, seed: int = 0) -> None:
    """`Train_GCC-training.tsv` of Google's Conceptual Captions release: caption<TAB>url, no
    header; ~1% of URLs repeat an earlier one (half a recent row's, half one of the first 100
    rows': duplicates near and far), a few ftp:// and private-IP URLs, 1 in 2,000 lines with a
    third field."""
    rng = random.Random(seed)
    recent: deque[str] = deque(maxlen=1000)
    pool: list[str] = []
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            url = f"http://img{i % 977}.example-cdn.com/photos/{i:09d}/{rng.getrandbits(40):x}.jpg"
            r = rng.random()
            if r < 0.005 and recent:
                url = rng.choice(recent)
            elif r < 0.01 and pool:
                url = rng.choice(pool)
            elif r < 0.012:
                url = "ftp://files.example.org/a.jpg"
            elif r < 0.013:
                url = "http://192.168.1.7/x.jpg"
            else:
                recent.append(url)
                if len(pool) < 100:
                    pool.append(url)
            line = f"{_caption(rng, rng.randint(6, 14))}\t{url}"
            if r > 0.9995:
                line = line + "\textra"
            f.write(line + "\n")


def _conversation(rng: random.Random, image: bool) -> list[dict]:
    turns = []
    for j in range(3):
        q = _caption(rng, 12) + "?"
        if j == 0 and image:
            q = "<image>\n" + q
        turns.append({"from": "human", "value": q})
        turns.append({"from": "gpt", "value": _caption(rng, 70)})
    return turns


def gen_llava(path: Path, rows: int, seed: int = 0) -> None:
    """`llava_v1_5_mix665k.json` (LLaVA-1.5 repository): one JSON list of {id, image,
    conversations}; ids repeat (the mix repeats COCO image ids), 3 human/gpt turn pairs with
    `<image>` in the first human turn (~2.5 KB a record), ~5% text-only records."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        f.write("[")
        for i in range(rows):
            image = rng.random() > 0.05
            rid = f"{rng.randrange(max(rows // 2, 1)):012d}"
            rec = {"id": rid, "conversations": _conversation(rng, image)}
            if image:
                rec = {"id": rid, "image": f"coco/train2017/{rid}.jpg", **rec}
            f.write(("," if i else "") + json.dumps(rec))
        f.write("]")


def gen_wiki6m(path: Path, rows: int, seed: int = 0) -> None:
    """OVEN's `Wiki6M_ver_1_0.jsonl`: {wikidata_id, wikipedia_title, wikipedia_content,
    wikipedia_image_url} a line; ~0.1% repeated ids, ~40% without an image URL."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            qid = f"Q{i + 1}" if rng.random() > 0.001 else f"Q{max(i // 2, 1)}"
            title = " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(1, 4)))
            title = f"{title} ({i})" if rng.random() < 0.5 else title
            url = None
            if rng.random() > 0.4:
                url = f"https://upload.wikimedia.org/wikipedia/commons/{i % 16:x}/{qid}.jpg"
            rec = {"wikidata_id": qid, "wikipedia_title": title,
                   "wikipedia_content": _caption(rng, 30), "wikipedia_image_url": url}  # fmt: skip
            f.write(json.dumps(rec) + "\n")


def gen_entities(path: Path, rows: int, seed: int = 0) -> None:
    """The `entities.parquet` that `manifest oven-kb` writes (entity_id, entity_name, url,
    content), names drawn like `gen_wiki6m`'s titles: for build-trie at OVEN's 6M without
    reading a 6M-line JSONL first."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vlmdata.sources.oven_kb import ENTITY_SCHEMA

    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with pq.ParquetWriter(path, ENTITY_SCHEMA) as w:
        for start in range(0, rows, 65536):
            n = min(65536, rows - start)
            names = []
            for i in range(start, start + n):
                title = " ".join(rng.choice(WORDS).title() for _ in range(rng.randint(1, 4)))
                names.append(f"{title} ({i})" if rng.random() < 0.5 else title)
            cols = {"entity_id": [f"Q{i + 1}" for i in range(start, start + n)],
                    "entity_name": names, "url": [None] * n, "content": [""] * n}  # fmt: skip
            w.write_table(pa.table(cols, schema=ENTITY_SCHEMA))


def gen_shard_folder(d: Path, images: int, seed: int = 0) -> None:
    """`d/manifest.parquet` + `d/images/`: `images` tiny distinct JPEGs (8x8, ~700 bytes) and
    their manifest rows (contract 1) with what `shard`'s plan must handle: splits train / val /
    none; ~5% extra records sharing an image through `image_key` (LLaVA-style questions about
    one image); ~1% byte-identical copies under another key (`duplicate_image`, or joined for
    source "llava"), and a few rejects: empty texts, a repeated key, a missing file, a bad
    split, an image_key naming another file."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = random.Random(seed)
    (d / "images").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for i in range(images):
        path = f"images/{i:07d}.jpg"
        if rng.random() < 0.01 and i > 0:  # same bytes as an earlier image
            data = (d / f"images/{rng.randrange(i):07d}.jpg").read_bytes()
        else:
            px = bytes(rng.randrange(256) for _ in range(8 * 8 * 3))
            buf = io.BytesIO()
            Image.frombytes("RGB", (8, 8), px).save(buf, "JPEG", quality=90)
            data = buf.getvalue()
        (d / path).write_bytes(data)
        source = "llava" if i % 7 == 0 else "cc3m"
        split = ("train", "train", "train", "val", None)[i % 5]
        rows.append(dict(key=f"k{i}", path=path, texts=[_caption(rng), _caption(rng, 4)],
                         source=source, split=split, question=None, image_key=None))  # fmt: skip
        if rng.random() < 0.05:  # another record on the same image
            q = _caption(rng, 5)
            rows.append(dict(key=f"k{i}_q", path=path, texts=[_caption(rng)], source=source,
                             split=split, question=q, image_key=f"k{i}"))  # fmt: skip
        r = rng.random()
        if r < 0.002:
            rows.append(dict(rows[-1], texts=[]))
        elif r < 0.004:
            rows.append(dict(rows[-1], texts=["again"]))  # duplicate_key
        elif r < 0.006:
            rows.append(dict(rows[-1], key=f"m{i}", path="images/missing.jpg", image_key=None))
        elif r < 0.007:
            rows.append(dict(rows[-1], key=f"s{i}", split="a/b", image_key=None))
        elif r < 0.008 and i > 0:
            rows.append(dict(rows[-1], key=f"c{i}", path=f"images/{i - 1:07d}.jpg",
                             image_key=rows[-1]["key"]))  # fmt: skip
    fields = [("key", pa.string()), ("source", pa.string()), ("split", pa.string()),
              ("url", pa.string()), ("path", pa.string()), ("texts", pa.list_(pa.string())),
              ("question", pa.string()), ("image_key", pa.string())]  # fmt: skip
    schema = pa.schema(fields)
    table = pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema)
    pq.write_table(table, d / "manifest.parquet")
