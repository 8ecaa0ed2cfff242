"""Every GRACE config's example command runs, at tiny size.

The commands are read from each config's leading comment (lines "#   vlmdata ..." /
"#   vlmtrain ...", "\\" continuing a line) and run in order in a working folder where the
paths they name stand for tiny things: shards/ (and /data/flickr30k-shards, OUT/shards) the
generated shards, tok/ (and /models/lm-1b) its tokenizer, the CLIP model a tiny random open_clip
folder, cuda the CPU. `vlmdata` commands run as written; `vlmtrain launch` runs its pre-flight
(paths, tokenizer, ids, stream mix) and stops where DeepSpeed's launcher would start the ranks
(tests/demo trains demo_grace and grace_tiny for real).
"""

from __future__ import annotations

import json
import shlex

import pytest
from click.testing import CliRunner

from cli.vlmdata import main as vlmdata_main
from cli.vlmtrain import main as vlmtrain_main
from tests.ids.test_cli import TINY_CLIP
from tests.train_loop.conftest import CONFIGS

GRACE_CONFIGS = ["grace_1b_vitl14.yaml", "grace_tiny.yaml", "demo_grace.yaml"]
PATHS = {"/data/flickr30k-shards": "shards", "/models/lm-1b": "tok", "OUT/": "out/"}
VALUES = {"--model": "clip", "--device": "cpu"}  # the CLIP model, the device


def example_commands(text: str) -> list[list[str]]:
    """The shell commands of a config's leading comment, as argv lists."""
    lines = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line[1:].strip())
    commands, current = [], ""
    for line in lines:
        if current or line.startswith(("vlmdata ", "vlmtrain ")):
            current += line.removesuffix("\\")
            if not line.endswith("\\"):
                commands.append(shlex.split(current))
                current = ""
    assert not current, f"unfinished command: {current}"
    return commands


def stand_ins(argv: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        if i and argv[i - 1] in VALUES:
            arg = VALUES[argv[i - 1]]
        for old, new in PATHS.items():
            arg = arg.replace(old, new)
        out.append(arg.replace("examples/configs/", f"{CONFIGS}/"))
    return out


@pytest.fixture()
def workdir(dataset, tmp_path, monkeypatch):
    """shards/, tok/, clip/ (tiny random open_clip), clip.pt; out/ holding the same."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP)
    clip = tmp_path / "clip"
    clip.mkdir()
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP}))
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(clip / "open_clip_model.safetensors"))
    (tmp_path / "shards").symlink_to(dataset["shards"])
    (tmp_path / "tok").symlink_to(dataset["tokenizer"])
    (tmp_path / "out").mkdir()
    for name in ("shards", "tok", "clip"):
        (tmp_path / "out" / name).symlink_to(tmp_path / name)
    (tmp_path / "clip.pt").write_bytes(b"")  # model.vision_pretrained: ranks would load it
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DS_ACCELERATOR", raising=False)
    return tmp_path


@pytest.mark.parametrize("name", GRACE_CONFIGS)
def test_grace_config_example_commands_run(name, workdir, monkeypatch):
    import vlmtrain.train.launch as launch

    started = []
    monkeypatch.setattr(launch, "run_launch", lambda plan: started.append(plan) or 0)
    text = (CONFIGS / name).read_text()
    commands = example_commands(text)
    assert [c[:2] for c in commands][-1] == ["vlmtrain", "launch"]
    for command in commands:
        argv = stand_ins(command)
        if argv[:2] == ["vlmtrain", "launch"] and "vision_pretrained:" in text:
            argv.append(f"model.vision_pretrained={workdir / 'clip.pt'}")
        main = vlmdata_main if argv[0] == "vlmdata" else vlmtrain_main
        res = CliRunner().invoke(main, argv[1:])
        assert res.exit_code == 0, f"{shlex.join(command)}\n{res.output}"
    assert len(started) == 1  # the launch passed its pre-flight and would start the ranks
    assert started[0].config_path.is_file()  # the resolved config the ranks would read
