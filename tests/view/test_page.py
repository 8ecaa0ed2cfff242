"""`vlmdata view`: the page opened in real headless Chromium shows what the shard folder holds.

Oracles are read straight from the folder with pyarrow (the records, index and
rejects tables), not through the code under test.
"""

from __future__ import annotations

from collections import Counter

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.vlmdata import main
from tests.view.browser import install_chromium, probe, screenshot
from vlmdata.core import layout
from vlmdata.view import ViewOptions, write_view


@pytest.fixture(scope="session")
def browser():
    path, why = install_chromium()
    if path is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return path


def records_by_image(out) -> dict[str, list[tuple[str, str]]]:
    """image_key -> [(record key, split)] in the records table's order."""
    t = pq.read_table(out / layout.RECORDS, columns=["key", "image_key", "split"]).to_pylist()
    found: dict[str, list[tuple[str, str]]] = {}
    for r in t:
        found.setdefault(r["image_key"], []).append((r["key"], r["split"]))
    return found


def images_of_split(out) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for image, recs in records_by_image(out).items():
        for _, split in recs:
            found.setdefault(split, set()).add(image)
    return found


def assert_screenshot(png) -> None:
    with Image.open(png) as img:
        img.load()
        assert img.size == (1280, 1600)
        assert len(img.convert("RGB").getcolors(1 << 20)) > 50  # a page, not a blank window


def test_demo_page_in_chromium(demo_shards, browser, tmp_path):
    page = tmp_path / "demo.html"
    write_view(demo_shards, page, ViewOptions(samples=8))
    dom = probe(browser, page, tmp_path)
    assert_screenshot(screenshot(browser, page, tmp_path / "demo.png"))
    splits = images_of_split(demo_shards)
    assert {s: len(k) for s, k in splits.items()} == {"train": 50, "val": 20, "test": 20}
    assert {s: len(keys) for s, keys in dom["splits"].items()} == {s: 8 for s in splits}
    for split, keys in dom["splits"].items():
        assert len(set(keys)) == 8 and set(keys) <= splits[split]
    index = pq.read_table(demo_shards / layout.INDEX).to_pylist()
    size = {r["key"]: (r["width"], r["height"]) for r in index}
    assert len(dom["images"]) == 24  # one per card, each decoded at its stored size (< 160 px)
    for alt, w, h in dom["images"]:
        assert w > 0 and (w, h) == size[alt]
    texts = pq.read_table(demo_shards / layout.RECORDS, columns=["texts"])["texts"]
    assert dict(dom["hists"]) == {
        "image width (px)": 90,
        "image height (px)": 90,
        "caption length (words)": sum(len(t) for t in texts.to_pylist()),
    }


def test_records_and_rejects_page_in_chromium(mixed_shards, browser, tmp_path):
    out, images, _ = mixed_shards
    page = tmp_path / "mixed.html"
    write_view(out, page, ViewOptions(samples=24, images=str(images)))
    dom = probe(browser, page, tmp_path)
    assert_screenshot(screenshot(browser, page, tmp_path / "mixed.png"))
    by_image = records_by_image(out)
    assert {s: set(k) for s, k in dom["splits"].items()} == images_of_split(out)  # all drawn
    shared = [k for k, recs in by_image.items() if len({s for _, s in recs}) > 1]
    assert len(shared) == 1 and len(by_image[shared[0]]) == 4
    assert all(shared[0] in keys for keys in dom["splits"].values())
    assert dom["cards"] == {k: [key for key, _ in recs] for k, recs in by_image.items()}
    assert all(w > 0 and h > 0 for _, w, h in dom["images"])
    assert len(dom["images"]) > len(by_image)  # reject examples show their images too
    rejects = pq.read_table(out / layout.REJECTS, columns=["stage", "reason"]).to_pylist()
    expected = Counter((r["stage"], r["reason"]) for r in rejects)
    assert {(s, r): int(n.replace(",", "")) for s, r, n in dom["bars"]} == expected
    assert dom["examples"] == {r: min(3, n) for (_, r), n in expected.items()}


def test_same_seed_same_page_other_seed_other_sample(demo_shards, tmp_path):
    pages = [tmp_path / f"{name}.html" for name in ("a", "b", "c")]
    for page, seed in zip(pages, (0, 0, 1), strict=True):
        write_view(demo_shards, page, ViewOptions(samples=8, seed=seed))
    a, b, c = (p.read_bytes() for p in pages)
    assert a == b and a != c


def test_page_size_does_not_grow_with_the_data(tmp_path):
    from tests.shards.conftest import make_good_set
    from vlmdata.shards import write_shards

    sizes = []
    for n in (20, 200):
        manifest, images = make_good_set(tmp_path / f"in{n}", n)
        write_shards(manifest, images, tmp_path / f"out{n}", samples_per_shard=50, progress=False)
        sizes.append(
            write_view(tmp_path / f"out{n}", tmp_path / f"{n}.html", ViewOptions(samples=5))
        )
    assert sizes[1] < 1.2 * sizes[0], sizes


def test_cli_writes_the_page_and_refuses_a_folder_without_shards(mixed_shards, tmp_path):
    out, _, _ = mixed_shards
    res = CliRunner().invoke(main, ["view", str(out), "-o", str(tmp_path / "p.html")])
    assert res.exit_code == 0, res.output
    assert "page:" in res.output and (tmp_path / "p.html").stat().st_size > 1000
    res = CliRunner().invoke(main, ["view", str(tmp_path), "-o", str(tmp_path / "q.html")])
    assert res.exit_code == 2 and layout.INDEX in res.output
    assert not (tmp_path / "q.html").exists()


def test_page_of_an_s3_shard_set_equals_the_local_one(mixed_shards, tmp_path):
    """The same manifest sharded into moto's S3 server: the page, read from and written to S3
    through the CLI, is the local page but for the folder's name."""
    import json

    from tests.s3_server import moto_s3
    from vlmdata.shards import write_shards

    out, images, manifest = mixed_shards
    local = tmp_path / "local.html"
    write_view(out, local, ViewOptions(images=str(images)))
    with moto_s3() as s3:
        url = s3.url("view-run")
        write_shards(manifest, images, url, samples_per_shard=4, min_side=16,
                     storage_options=s3.options, progress=False)  # fmt: skip
        args = ["view", url, "-o", f"{url}/page.html", "--images", str(images)]
        res = CliRunner().invoke(main, [*args, "--storage-options", json.dumps(s3.options)])
        assert res.exit_code == 0, res.output
        remote = s3.objects("view-run")["page.html"].decode("utf-8")
    assert remote == local.read_text(encoding="utf-8").replace(str(out), url)


def test_a_record_on_a_missing_image_is_a_clear_error(mixed_shards, tmp_path):
    import shutil

    import pyarrow as pa

    out = tmp_path / "out"
    shutil.copytree(mixed_shards[0], out)
    table = pq.read_table(out / layout.RECORDS)
    keys = table["image_key"].to_pylist()
    keys[0] = "gone"
    i = table.schema.get_field_index("image_key")
    pq.write_table(table.set_column(i, "image_key", pa.array(keys)), out / layout.RECORDS)
    args = ["view", str(out), "-o", str(tmp_path / "p.html"), "--samples", "50"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and "'gone'" in res.output and "not in the index" in res.output
