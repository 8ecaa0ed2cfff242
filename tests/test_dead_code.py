"""No function, class or method in the library (vlmdata, vlmtrain, cli) is referenced nowhere.

A use anywhere in the tree counts: the library, tests, benchmarks, examples and the console
scripts in pyproject.toml. vulture finds the names; tests/dead_code_whitelist.py lists the
framework entry points it cannot see used, each with its reason."""

from __future__ import annotations

from pathlib import Path

from vulture import Vulture

try:
    import tomllib
except ImportError:  # Python 3.10: vulture depends on tomli there
    import tomli as tomllib

from tests.dead_code_whitelist import IGNORE_DECORATORS, IGNORE_NAMES

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ("vlmdata", "vlmtrain", "cli")
USERS = ("tests", "benchmarks", "examples")
KINDS = {"function", "method", "class", "property"}
# 60 is vulture's confidence for an unused function, method, class or property: lower would
# miss them, higher reports only unused imports, variables and unreachable code.
MIN_CONFIDENCE = 60


def unused_definitions(root: Path, library: tuple[str, ...], users: tuple[str, ...]) -> list[str]:
    """`path:line: kind name` for each definition under `library` that nothing under
    `library + users` (or the pyproject console scripts) refers to."""
    finder = Vulture(ignore_names=list(IGNORE_NAMES), ignore_decorators=list(IGNORE_DECORATORS))
    paths = [str(root / p) for p in library + users if (root / p).exists()]
    finder.scavenge(paths)
    pyproject = root / "pyproject.toml"
    if pyproject.exists():
        scripts = tomllib.loads(pyproject.read_text()).get("project", {}).get("scripts", {})
        # "cli.vlmdata:main" -> a reference to `main`, as the installed console script makes
        refs = "\n".join(target.split(":")[1] for target in scripts.values())
        finder.scan(refs, filename=str(pyproject))
    roots = [(root / p).resolve() for p in library]
    found = []
    for item in finder.get_unused_code(min_confidence=MIN_CONFIDENCE):
        path = Path(item.filename).resolve()
        if item.typ in KINDS and any(path.is_relative_to(r) for r in roots):
            rel = path.relative_to(root.resolve())
            found.append(f"{rel}:{item.first_lineno}: {item.typ} {item.name}")
    return sorted(found)


def test_no_unreferenced_definitions_in_the_library() -> None:
    assert unused_definitions(ROOT, LIBRARY, USERS) == []


def test_the_check_finds_a_planted_dead_function(tmp_path: Path) -> None:
    """The finder itself: a function, method and class no one names are reported; one used only
    by a test, one named by a console script, a click command and a torch forward are not."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "mod.py").write_text(
        "import click\n"
        "def used_by_test(): pass\n"
        "def dead(): pass\n"
        "def main(): pass\n"
        "class Dead: pass\n"
        "class Live:\n"
        "    def forward(self): pass\n"
        "    def dead_method(self): pass\n"
        "@click.group()\n"
        "def grp(): pass\n"
        "@grp.command()\n"
        "def sub(): pass\n"
        "x = Live()\n"
    )
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_mod.py").write_text(
        "from lib.mod import used_by_test\n\ndef test_it():\n    used_by_test()\n"
    )
    (tmp_path / "pyproject.toml").write_text('[project.scripts]\nlib = "lib.mod:main"\n')
    assert unused_definitions(tmp_path, ("lib",), ("tests",)) == [
        "lib/mod.py:3: function dead",
        "lib/mod.py:5: class Dead",
        "lib/mod.py:8: method dead_method",
    ]
