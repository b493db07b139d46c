"""Every committed notebook follows the course conventions (layout.md) so that --nbval really checks it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found: nbval would check nothing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_executed_with_header(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert first.startswith("# ") and "**Time:**" in first and "**Needs:**" in first and "learn" in first
    code = [c for c in nb["cells"] if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert all(c["execution_count"] is not None for c in code), "commit notebooks executed"
    assert not [o for c in code for o in c["outputs"] if o["output_type"] == "error"]
    assert any("## Exercise" in "".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    src = NB_DIR / "src" / (path.stem + ".py")
    assert src.exists(), f"{path.name} has no source script in notebooks/src/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_matches_its_source(path):
    from jsdlib.notebooks import script_to_notebook

    built = script_to_notebook((NB_DIR / "src" / (path.stem + ".py")).read_text())
    committed = json.loads(path.read_text())
    assert ["".join(c["source"]) for c in committed["cells"]] == [c["source"] for c in built.cells], \
        f"{path.name} differs from notebooks/src/{path.stem}.py: run `python -m jsdlib.notebooks {path.name[:2]}`"
