"""pyproject.toml and environment.yml name the same dependencies; the torch pin is the one the machines need."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower().replace("_", "-")


def _env_pip_deps() -> list[str]:
    deps, in_pip = [], False
    for line in (ROOT / "environment.yml").read_text().splitlines():
        s = line.strip()
        if s.startswith("- pip:"):
            in_pip = True
            continue
        if in_pip and s.startswith("- "):
            dep = s[2:].split("#")[0].strip()
            if dep and not dep.startswith("-e"):
                deps.append(dep)
    return deps


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    assert sorted(map(_norm, _env_pip_deps())) == sorted(map(_norm, wanted))


def test_torch_pin():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch>=2.4,<=2.14.1" in deps


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "jsdlib.cli.main", "--help"], capture_output=True, text=True, check=True)
    for cmd in ("data build-emoji", "vlp train-standin", "eval dense"):
        assert cmd in out.stdout


def test_console_script_entry_point_is_a_function():
    """pyproject's ``jsdlib = module:function`` names a callable (a stale ``jsdlib.cli:main`` would name a package)."""
    import importlib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    module, func = spec["jsdlib"].split(":")
    assert callable(getattr(importlib.import_module(module), func)), spec["jsdlib"]


def test_readme_opens_with_the_two_commands():
    head = (ROOT / "README.md").read_text().split("\n## ")[0]
    assert "make run" in head and "make test" in head
    assert "make test" in (ROOT / ".ci" / "run").read_text()
