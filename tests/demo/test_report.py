"""The demo's closing table (vlmdata.demo.report / `vlmdata demo-report`) and its tiny CLIP."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.vlmdata import main
from vlmdata.core.errors import DataError
from vlmdata.demo.report import recall_table


def _report(path, metrics, images=50):
    rows = [{"metric": m, "value": v, "count": c} for m, v, c in metrics]
    path.write_text(json.dumps({"metrics": rows, "details": {"images": images}}))
    return path


def test_table_exact(tmp_path):
    gen = _report(
        tmp_path / "g.json",
        [("recall@1", 0.1, 250), ("recall@5", 0.4, 250), ("recall@10", 0.6, 250)],
    )
    emb = _report(
        tmp_path / "e.json",
        [("t2i_recall@1", 0.02, 250), ("t2i_recall@10", 0.3, 250), ("i2t_recall@1", 0.9, 50)],
    )
    table = recall_table([("GRACE", gen), ("FROMAGe", emb)])
    assert table.splitlines() == [
        "| text→image retrieval | R@1 | R@5 | R@10 | queries |",
        "|---|---:|---:|---:|---:|",
        "| GRACE | 0.100 | 0.400 | 0.600 | 250 |",
        "| FROMAGe | 0.020 | - | 0.300 | 250 |",
        "| chance (K / 50 test images) | 0.020 | 0.100 | 0.200 | |",
        "| GRACE ÷ chance | 5.0x | 4.0x | 3.0x | |",
        "| FROMAGe ÷ chance | 1.0x | - | 1.5x | |",
    ]


def test_reports_over_different_image_sets_are_refused(tmp_path):
    a = _report(tmp_path / "a.json", [("recall@1", 0.1, 10)], images=50)
    b = _report(tmp_path / "b.json", [("recall@1", 0.1, 10)], images=100)
    with pytest.raises(DataError, match=r"different numbers of images: \[50, 100\]"):
        recall_table([("a", a), ("b", b)])
    (tmp_path / "c.json").write_text(json.dumps({"metrics": [{"metric": "cider"}]}))
    with pytest.raises(DataError, match="c.json: no recall@K metrics"):
        recall_table([("c", tmp_path / "c.json")])


def test_cli_writes_the_table(tmp_path):
    gen = _report(tmp_path / "g.json", [("recall@10", 0.5, 20)], images=10)
    out = tmp_path / "results.md"
    res = CliRunner().invoke(main, ["demo-report", str(tmp_path), f"A=B={gen}", "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "| A=B | - | - | 0.500 | 20 |" in out.read_text()  # label split at the last '='
    assert "| chance (K / 10 test images) | 0.100 | 0.500 | 1.000 | |" in res.output
    res = CliRunner().invoke(main, ["demo-report", str(tmp_path), str(gen)])
    assert res.exit_code == 2 and "expected LABEL=REPORT.json" in res.output


def test_demo_clip_is_seeded_and_loads_as_local_dir(tmp_path):
    import open_clip
    import torch

    from vlmdata.demo.clip import save_demo_clip

    a = save_demo_clip(tmp_path / "a", seed=1, image_size=32)
    b = save_demo_clip(tmp_path / "b", seed=1, image_size=32)
    c = save_demo_clip(tmp_path / "c", seed=2, image_size=32)
    weights = "open_clip_model.safetensors"
    assert (a / weights).read_bytes() == (b / weights).read_bytes()
    assert (a / weights).read_bytes() != (c / weights).read_bytes()
    model = open_clip.create_model(f"local-dir:{a}")
    with torch.no_grad():
        emb = model.encode_image(torch.zeros(2, 3, 32, 32))
    assert emb.shape == (2, 64)


def test_footer_says_how_the_reports_were_made_not_this_shell(tmp_path, monkeypatch):
    facts = {"torch": "2.14.1", "numpy": "2.4.6", "scikit-learn": "1.9.1",
             "open_clip_torch": "3.3.0", "transformers": "5.24.0", "deepspeed": "0.19.8",
             "OMP_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2",
             "ONEDNN_MAX_CPU_ISA": "AVX2"}  # fmt: skip
    gen = _report(tmp_path / "g.json", [("recall@10", 0.5, 20)], images=10)
    gen.write_text(json.dumps({**json.loads(gen.read_text()), "made_with": facts}))
    monkeypatch.setenv("OMP_NUM_THREADS", "7")  # this shell differs from the run
    res = CliRunner().invoke(main, ["demo-report", str(tmp_path), f"G={gen}"])
    assert res.exit_code == 0, res.output
    assert res.output.rstrip().splitlines()[-1] == (
        "made with torch 2.14.1, numpy 2.4.6, scikit-learn 1.9.1, open_clip_torch 3.3.0, "
        "transformers 5.24.0, deepspeed 0.19.8; OMP_NUM_THREADS=1 ATEN_CPU_CAPABILITY=avx2 "
        "MKL_CBWR=AVX2 ONEDNN_MAX_CPU_ISA=AVX2"
    )
    other = _report(tmp_path / "o.json", [("recall@10", 0.4, 20)], images=10)
    other.write_text(json.dumps({**json.loads(other.read_text()),
                                 "made_with": {**facts, "transformers": "5.25.0"}}))  # fmt: skip
    res = CliRunner().invoke(main, ["demo-report", str(tmp_path), f"G={gen}", f"O={other}"])
    lines = res.output.rstrip().splitlines()
    assert lines[-2].startswith("g.json: made with") and "transformers 5.24.0" in lines[-2]
    assert lines[-1].startswith("o.json: made with") and "transformers 5.25.0" in lines[-1]


def test_every_eval_report_records_how_it_was_made():
    import torch

    from vlmtrain.eval.report import Report

    made = Report(task="x").to_dict()["made_with"]
    assert made["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert "OMP_NUM_THREADS" in made
