"""The report JSON schema, its table, and byte-identical rewrites."""

from __future__ import annotations

import json

import pytest

from vlmtrain.eval.report import Report, format_table, load_report, validate_report


def _report() -> Report:
    r = Report(task="vqa", config={"beams": 1}, checkpoint="runs/x", data="out/")
    r.add("accuracy", 0.5, 4)
    r.add("accuracy/yes/no", 1.0, 2)
    return r


def test_report_json_schema_and_rerun_bytes(tmp_path):
    path = tmp_path / "r.json"
    _report().write(path)
    first = path.read_bytes()
    obj = load_report(path)
    assert obj["schema_version"] == 1
    assert obj["task"] == "vqa"
    assert obj["metrics"] == [
        {"metric": "accuracy", "value": 0.5, "count": 4},
        {"metric": "accuracy/yes/no", "value": 1.0, "count": 2},
    ]
    assert obj["config"] == {"beams": 1} and obj["checkpoint"] == "runs/x"
    _report().write(path)
    assert path.read_bytes() == first
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp files left


def test_table_lists_every_metric():
    lines = format_table(_report().to_dict()).splitlines()
    assert lines[0] == "task: vqa"
    assert lines[3].split() == ["accuracy", "0.5000", "4"]
    assert lines[4].split() == ["accuracy/yes/no", "1.0000", "2"]


def test_schema_violations_are_rejected():
    good = _report().to_dict()
    with pytest.raises(ValueError, match="lacks"):
        validate_report({k: v for k, v in good.items() if k != "metrics"})
    bad = json.loads(json.dumps(good))
    bad["metrics"][0]["extra"] = 1
    with pytest.raises(ValueError, match="exactly"):
        validate_report(bad)
    with pytest.raises(ValueError, match="NaN"):
        _report().add("x", float("nan"), 1)
    assert _report().value("accuracy") == 0.5


def test_every_report_says_its_unit():
    r = _report()
    r.add("answered", 4, 4, unit="count")
    obj = r.to_dict()
    assert obj["units"] == {"accuracy": "fraction", "accuracy/yes/no": "fraction",
                            "answered": "count"}  # fmt: skip
    assert format_table(obj).splitlines()[-1] == (
        "values: accuracy fractions (0-1); accuracy/yes/no fractions (0-1); answered counts"
    )
    assert format_table(_report().to_dict()).splitlines()[-1] == "values: fractions (0-1)"
    with pytest.raises(ValueError, match="unit 'pct'"):
        r.add("x", 1.0, 1, unit="pct")
    bad = json.loads(json.dumps(obj))
    bad["units"]["accuracy"] = "pct"
    with pytest.raises(ValueError, match="unit 'pct' of accuracy"):
        validate_report(bad)
