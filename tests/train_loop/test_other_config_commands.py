"""The LLaVA and AutoVER configs' example commands run as written, at tiny size.

GRACE's, FROMAGe's and the captioners' commands have their own tests (test_config_commands.py,
test_fromage_configs.py, test_captioner_configs.py). Here each remaining config's `vlmtrain
launch` line is read from its leading comment and run as written, with the paths it names
(/models/..., /data/..., runs/...) standing for local stand-ins: the shards carry records
`vlmdata manifest` made from files in the published format of the config's data set. The
launch runs its pre-flight and stops where DeepSpeed's launcher would start the ranks.
"""

from __future__ import annotations

import shlex

import polars as pl
import pytest
from click.testing import CliRunner

from cli.vlmtrain import main as vlmtrain_main
from tests.train_loop.conftest import CONFIGS, data_overrides
from tests.train_loop.test_config_commands import example_commands
from tests.train_loop.test_preflight import _local_stand_ins, _shards_of_its_format

OTHERS = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.startswith(("llava", "autover")))


def test_the_other_configs_are_the_llava_and_autover_ones():
    assert OTHERS == ["autover_7b.yaml", "autover_tiny.yaml", "llava15_7b_stage1.yaml",
                      "llava15_7b_stage2.yaml", "llava_stage1_tiny.yaml",
                      "llava_stage2_tiny.yaml"]  # fmt: skip


@pytest.mark.parametrize("name", OTHERS)
def test_example_command_runs(name, dataset, tmp_path, monkeypatch):
    import vlmtrain.train.launch as launch

    started = []
    monkeypatch.setattr(launch, "run_launch", lambda plan: started.append(plan) or 0)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    (tmp_path / "hosts").write_text("localhost slots=8\n")
    path = CONFIGS / name
    [command] = [c for c in example_commands(path.read_text()) if c[:2] == ["vlmtrain", "launch"]]
    argv = [a.replace("examples/configs/", f"{CONFIGS}/") for a in command]
    # the stand-ins go after the command's own overrides, so they name what its paths name
    argv += data_overrides(dataset, tmp_path / "run") + _local_stand_ins(tmp_path, path.read_text())
    argv.append(f"data.shards={_shards_of_its_format(path, tmp_path)}")
    kb = tmp_path / "recipe_options_kb"
    if kb.exists():  # the pre-flight's name check reads the KB: a table in its shape
        pl.DataFrame({"entity_id": ["Q1"], "entity_name": ["Yogurt"]}).write_parquet(kb)
    res = CliRunner().invoke(vlmtrain_main, argv[1:])
    assert res.exit_code == 0, f"{shlex.join(command)}\n{res.output}"
    assert len(started) == 1  # the launch passed its pre-flight and would start the ranks
    assert started[0].config_path.is_file()


def test_a_kb_that_is_no_entities_table_is_named(dataset, tmp_path, monkeypatch):
    import vlmtrain.train.launch as launch

    monkeypatch.setattr(launch, "run_launch", lambda plan: 0)
    path = CONFIGS / "autover_7b.yaml"
    over = data_overrides(dataset, tmp_path / "run") + _local_stand_ins(tmp_path, path.read_text())
    over.append(f"data.shards={_shards_of_its_format(path, tmp_path)}")
    (tmp_path / "recipe_options_kb").write_bytes(b"not parquet")
    res = CliRunner().invoke(vlmtrain_main, ["launch", str(path), *over])
    assert res.exit_code == 2, res.output
    assert "recipe.options.kb: not an entities table" in res.output
    assert "recipe_options_kb" in res.output
