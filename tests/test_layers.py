"""vlmtrain's subpackages import only downwards (docs/DESIGN.md, "Layers").

The oracle is the declared order below, not the code: every import in vlmtrain, at module level
or inside a function (lazy imports count: they are the same dependency, paid later), is
resolved to the layer it names; an edge from a layer to one above it fails the test.
"""

from __future__ import annotations

import ast
from pathlib import Path

import vlmtrain

# top to bottom; "root" is vlmtrain's own modules (errors, contract, typed), below every
# subpackage: they import none of them
LAYERS = ("eval", "train", "recipes", "model", "data", "root")
PACKAGE = Path(vlmtrain.__file__).parent


def layer_of(module: str) -> str | None:
    """The layer of a dotted module name inside vlmtrain; None outside it."""
    parts = module.split(".")
    if parts[0] != "vlmtrain":
        return None
    if len(parts) > 1 and (PACKAGE / parts[1]).is_dir():
        return parts[1]
    return "root"


def imported_modules(source: str, module: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source` (of `module`), at any depth."""
    out = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            # `from vlmtrain import data` names the subpackage, not the root
            names = [f"{base}.{a.name}" for a in node.names] if base == "vlmtrain" else [base]
            out += [(node.lineno, n) for n in names]
    return sorted(out)


def upward_edges(source: str, module: str) -> list[str]:
    """'module:line -> target (from layer -> to layer)' for each import that points up."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    here = layer_of(module)
    bad = []
    for line, target in imported_modules(source, module):
        there = layer_of(target)
        if there is not None and rank[there] < rank[here]:
            bad.append(f"{module}:{line} -> {target} ({here} -> {there})")
    return bad


def vlmtrain_modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
        out.append((".".join(parts), path))
    return out


def test_every_subpackage_has_a_declared_layer():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS) - {"root"}


def test_no_import_points_up_a_layer():
    bad = []
    for module, path in vlmtrain_modules():
        bad += upward_edges(path.read_text(encoding="utf-8"), module)
    assert bad == []


def test_the_check_sees_lazy_relative_and_package_imports():
    source = (
        "from vlmtrain.contract import IGNORE_INDEX\n"  # down: fine
        "def f():\n"
        "    from vlmtrain.recipes import get_recipe\n"  # up, inside a function
        "from ..train import config\n"  # up, relative
        "from vlmtrain import eval\n"  # up, the package itself
        "import vlmtrain.errors\n"  # the root: fine
    )
    assert upward_edges(source, "vlmtrain.data.packing") == [
        "vlmtrain.data.packing:3 -> vlmtrain.recipes (data -> recipes)",
        "vlmtrain.data.packing:4 -> vlmtrain.train (data -> train)",
        "vlmtrain.data.packing:5 -> vlmtrain.eval (data -> eval)",
    ]
    assert upward_edges("from vlmtrain.data import config\n", "vlmtrain.errors") == [
        "vlmtrain.errors:1 -> vlmtrain.data (root -> data)"
    ]
