"""`make demo` in small: examples/demo.sh end to end on a smaller generated data set.

demo data -> manifest -> shards -> numeric + structured ids -> tries -> GRACE on 2 CPU ranks
through `vlmtrain launch` -> generative retrieval -> FROMAGe -> embedding retrieval -> table.
GRACE must retrieve far better than chance; every stage's output must be where the next expects.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGES = 50


def _recalls(report: Path) -> dict[str, float]:
    return {m["metric"]: m["value"] for m in json.loads(report.read_text())["metrics"]}


def test_demo_pipeline_retrieves_well_above_chance(tmp_path):
    env = {
        **os.environ,
        "VLM_BIN": str(Path(sys.executable).parent),
        "DEMO_IMAGES": "800",
        "DEMO_TEST": str(TEST_IMAGES),
        "DEMO_VAL": "0",
        "DEMO_GRACE_STEPS": "300",
        "DEMO_FROMAGE_STEPS": "20",
    }
    env.pop("DS_ACCELERATOR", None)
    out = tmp_path / "demo"
    res = subprocess.run(
        ["bash", str(ROOT / "examples" / "demo.sh"), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]

    index = pl.read_parquet(out / "shards" / "index.parquet")
    assert index.height == 800
    assert index.filter(pl.col("split") == "test").height == TEST_IMAGES
    for scheme in ("numeric", "structured"):
        ids = pl.read_parquet(out / "ids" / f"{scheme}.parquet")
        assert ids.height == 800 and ids["identifier"].n_unique() == 800

    grace = _recalls(out / "reports" / "grace.json")
    chance10 = 10 / TEST_IMAGES
    assert grace["recall@10"] >= 2 * chance10, grace  # 0.2 by chance; a trained model > 0.4
    assert grace["recall@1"] <= grace["recall@5"] <= grace["recall@10"]
    fromage = _recalls(out / "reports" / "fromage.json")
    assert set(fromage) >= {"t2i_recall@10", "i2t_recall@10"}

    table = (out / "results.md").read_text()
    assert f"| chance (K / {TEST_IMAGES} test images) | 0.020 | 0.100 | 0.200 | |" in table
    assert f"| GRACE structured ids | {grace['recall@1']:.3f} |" in table
    assert "demo finished in" in res.stdout
