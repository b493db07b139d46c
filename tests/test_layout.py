"""jsdlib 0.2's shape, checked from the source: dependencies point one way, and every module is short.

Layers (``docs/decisions.md``, "Layout"): ``common`` -> ``data``, ``vlp`` -> ``jsd``, ``index``, ``cmc``, ``retrieval``
-> ``apps``, ``experiments`` -> ``cli``. A module may import from its own layer or any layer below it, never above.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "jsdlib"
LAYERS = {"common": 0, "data": 1, "vlp": 1, "jsd": 2, "index": 2, "cmc": 2, "retrieval": 2,
          "apps": 3, "experiments": 3, "cli": 4}
MAX_LINES = 450
MODULES = sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def _subpackage(path: Path) -> str | None:
    rel = path.relative_to(PKG).parts
    return rel[0] if len(rel) > 1 else None


def _imported(tree: ast.AST, path: Path) -> list[tuple[int, str]]:
    """(line, first jsdlib subpackage) of every import of jsdlib in the module, top level or inside a function."""
    out = []
    here = path.relative_to(PKG).with_suffix("").parts
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = list(here[:-1])[: len(here) - node.level] if node.level > 1 else list(here[:-1])
                mod = ".".join(["jsdlib", *base, *([node.module] if node.module else [])])
            else:
                mod = node.module or ""
            names = [mod] if mod != "jsdlib" else [f"jsdlib.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "jsdlib" and len(parts) > 1 and parts[1] in LAYERS:
                out.append((node.lineno, parts[1]))
    return out


def test_every_module_sits_in_a_known_subpackage():
    stray = [p.relative_to(PKG).as_posix() for p in MODULES
             if _subpackage(p) is None and p.name not in ("__init__.py", "__main__.py")]
    unknown = sorted({_subpackage(p) for p in MODULES} - set(LAYERS) - {None})
    assert not stray and not unknown, f"modules outside the layered subpackages: {stray}, unknown: {unknown}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PKG).as_posix())
def test_no_import_from_a_layer_above(path: Path):
    sub = _subpackage(path)
    level = LAYERS.get(sub, 5 if sub is None else -1)   # jsdlib/__init__.py re-exports from every layer
    bad = [f"line {ln}: jsdlib.{dep} (layer {LAYERS[dep]})" for ln, dep in _imported(ast.parse(path.read_text()), path)
           if LAYERS[dep] > level]
    assert not bad, f"{path.relative_to(PKG)} (layer {level}, {sub}) imports from above: {bad}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(PKG).as_posix())
def test_module_is_short(path: Path):
    n = len(path.read_text().splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(PKG)} has {n} lines (at most {MAX_LINES}): split it by idea"


def test_the_checks_can_fail(tmp_path):
    """The import parser sees a violation, top level or inside a function, absolute or relative."""
    bad = PKG / "common" / "_probe.py"
    src = "import os\n\ndef f():\n    from jsdlib.cmc import model\n    from ..apps import viz\n"
    deps = [d for _, d in _imported(ast.parse(src), bad)]
    assert deps == ["cmc", "apps"]


def test_the_top_level_api_resolves():
    """``jsdlib``'s few top-level names and every subpackage import on first use, from where they are defined."""
    import importlib

    import jsdlib

    for name in jsdlib.__all__:
        assert getattr(jsdlib, name) is not None, name
    for name, mod in jsdlib._NAMES.items():
        assert getattr(jsdlib, name) is getattr(importlib.import_module(mod), name)
