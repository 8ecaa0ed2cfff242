"""Every console example of README.md and every example of every `--help` page names a command
that exists and options it takes, with valid choices and every required option given: each is
parsed by the command's own click parser (no file is read, nothing runs). Commands that run on
tiny inputs as documented are covered by the tests of each command (e.g. tests/eval/
test_oven_published.py runs the OVEN chain as the README writes it)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import click
import pytest

from cli.vlmdata import main as vlmdata
from cli.vlmtrain import main as vlmtrain

ROOT = Path(__file__).resolve().parents[1]
MAINS = {"vlmdata": vlmdata, "vlmtrain": vlmtrain}


def _join_continued(lines: list[str]) -> list[str]:
    """Lines ending in `\\` joined with the next; trailing `# comments` dropped."""
    out, cur = [], ""
    for line in lines:
        line = line.rstrip()
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        out.append(cur + line)
        cur = ""
    return [re.sub(r"\s+#.*$", "", c).strip() for c in out]


def readme_examples() -> list[str]:
    """`$ vlmdata ...` / `$ vlmtrain ...` lines of README.md's console blocks."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        lines = block.splitlines()
        starts = [i for i, ln in enumerate(lines) if re.match(r"\$ vlm(data|train) ", ln)]
        for i in starts:
            chunk = [lines[i][2:]]
            j = i
            while lines[j].rstrip().endswith("\\"):
                j += 1
                chunk.append(lines[j])
            found.extend(_join_continued(chunk))
    return found


def _commands(group: click.Group, path: list[str]):
    for name, cmd in sorted(group.commands.items()):
        yield [*path, name], cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, [*path, name])


def help_examples() -> list[tuple[str, str]]:
    """(page, example) for every `vlmdata ...` / `vlmtrain ...` line of every --help page."""
    found = []
    for prog, main in MAINS.items():
        pages = [([prog], main)] + [([prog, *p], c) for p, c in _commands(main, [])]
        for path, cmd in pages:
            with click.Context(cmd, info_name=" ".join(path)) as ctx:
                text = cmd.get_help(ctx)
            lines = [ln.strip() for ln in text.splitlines()]
            starts = [i for i, ln in enumerate(lines) if re.match(r"vlm(data|train) \S", ln)]
            for i in starts:
                chunk, j = [lines[i]], i
                while lines[j].endswith("\\"):
                    j += 1
                    chunk.append(lines[j])
                found.extend((" ".join(path), ex) for ex in _join_continued(chunk))
    return found


def check_parses(example: str) -> None:
    """Resolve the command and parse the arguments as click would, without running."""
    argv = shlex.split(example)
    argv = argv[: argv.index("|")] if "|" in argv else argv  # `... --json | jq .rejects`
    cmd, args, path = MAINS[argv[0]], argv[1:], [argv[0]]
    while isinstance(cmd, click.Group):
        assert args and args[0] in cmd.commands, f"{example}: no command {args[:1]} in {path}"
        path.append(args[0])
        cmd, args = cmd.commands[args[0]], args[1:]
    ctx = click.Context(cmd, info_name=" ".join(path), resilient_parsing=False)
    parser = cmd.make_parser(ctx)
    try:
        opts, rest, order = parser.parse_args(args)
    except click.UsageError as e:
        raise AssertionError(f"{example}: {e.format_message()}") from None
    for param in cmd.params:
        value = opts.get(param.name)
        if param.required and value is None:
            raise AssertionError(f"{example}: missing required {param.opts[0]}")
        if value is None or not isinstance(param.type, click.Choice):
            continue
        for v in value if isinstance(value, (list, tuple)) else [value]:
            assert v in param.type.choices, f"{example}: {param.opts[0]} {v!r} not a choice"
    if rest:
        raise AssertionError(f"{example}: extra arguments {rest}")


README = readme_examples()
HELP = help_examples()


def test_the_examples_are_found():
    # as many as the docs hold today (a parser that finds none would pass everything)
    assert len(README) >= 30 and len(HELP) >= 40
    assert any("eval oven" in e for e in README) and any("eval oven" in e for _, e in HELP)
    pages = {p for p, _ in HELP}
    assert {"vlmdata shard", "vlmdata download", "vlmtrain eval oven", "vlmtrain launch"} <= pages


@pytest.mark.parametrize("example", README)
def test_readme_example_parses(example):
    check_parses(example)


@pytest.mark.parametrize(("page", "example"), HELP, ids=[f"{p}: {e[:60]}" for p, e in HELP])
def test_help_example_parses(page, example):
    check_parses(example)


def test_a_broken_example_is_caught():
    for bad, why in [
        ("vlmdata shard m.parquet --images i/ -o o/ --resize-mode x", "No such option"),
        ("vlmdata shard m.parquet -o o/", "missing required --images"),
        ("vlmtrain eval ovn --data d/", "no command"),
        ("vlmdata download coco c.json -o o/ --resize huge", "not a choice"),
    ]:
        with pytest.raises(AssertionError, match=why):
            check_parses(bad)


def test_one_vocabulary_of_options():
    """Every output is -o/--output, every progress switch -q/--quiet (older names stay as
    aliases), and resizing is --resize/--resize-side wherever it exists."""
    for prog, main in MAINS.items():
        for path, cmd in _commands(main, []):
            if isinstance(cmd, click.Group):
                continue
            where = f"{prog} {' '.join(path)}"
            opts = {o: p for p in cmd.params for o in p.opts}
            for old in ("--out", "--dest"):
                if old in opts:
                    assert opts.get("--output") is opts[old], f"{where}: {old} without --output"
            if "--output" in opts:
                assert opts.get("-o") is opts["--output"], f"{where}: --output without -o"
            if "--quiet" in opts:
                assert opts.get("-q") is opts["--quiet"], f"{where}: --quiet without -q"
            if "--resize-mode" in opts or "--resize" in opts:
                assert "--resize" in opts and "--resize-side" in opts, where
