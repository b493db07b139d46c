"""Build and execute the tutorial notebooks in place (default CPU mode), keeping outputs and counts.

Notebooks are authored as percent-format scripts in ``notebooks/src/NN_name.py`` (``# %%`` code cells,
``# %% [markdown]`` text cells, ``# %% solution`` an exercise's solution: a code cell whose source JupyterLab
shows collapsed; diff-friendly) and committed executed as ``notebooks/NN_name.ipynb``,
which is what learners open and what ``pytest --nbval`` checks.

    python -m jsdlib.experiments.notebooks              # build every notebook from its source and execute it
    python -m jsdlib.experiments.notebooks 01           # only notebooks whose name starts with 01
    python -m jsdlib.experiments.notebooks --no-build   # re-execute the committed .ipynb files as they are
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from jsdlib.common.io import atomic_write
from jsdlib.common.paths import REPO_ROOT

ROOT = REPO_ROOT
NB_DIR = ROOT / "notebooks"
_CELL = re.compile(r"^# %%(?P<md> \[markdown\])?(?P<sol> solution)?[^\n]*$", re.M)


def script_to_notebook(text: str):
    """Percent-format script -> nbformat v4 notebook (markdown cells have their ``# `` prefixes removed)."""
    nb = nbformat.v4.new_notebook()
    marks = list(_CELL.finditer(text))
    for m, nxt in zip(marks, marks[1:] + [None]):
        body = text[m.end():nxt.start() if nxt else len(text)].strip("\n")
        if m.group("md"):
            lines = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in body.splitlines()]
            nb.cells.append(nbformat.v4.new_markdown_cell("\n".join(lines).strip("\n")))
        elif body.strip():
            cell = nbformat.v4.new_code_cell(body)
            if m.group("sol"):
                cell.metadata["jupyter"] = {"source_hidden": True}
                cell.metadata["tags"] = ["solution"]
            nb.cells.append(cell)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def execute(nb, cwd: Path, timeout: int = 1800):
    """Run every cell with nbclient in ``cwd`` (the notebooks folder), as nbval will. The kernel runs offline
    (``HF_HUB_OFFLINE=1`` unless the caller's environment says otherwise); this process's environment is unchanged."""
    env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **os.environ}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(cwd)}}).execute(env=env)
    return nb


def write_notebook(nb, dest: Path) -> None:
    """``nbformat.write`` atomically (a kill mid-write never leaves a broken committed notebook)."""
    text = nbformat.writes(nb)
    atomic_write(dest, text if text.endswith("\n") else text + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m jsdlib.experiments.notebooks", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prefix", nargs="*", help="only notebooks whose file name starts with one of these")
    p.add_argument("--no-build", action="store_true", help="execute the committed .ipynb files, not the sources")
    args = p.parse_args(argv)
    if args.no_build:
        targets = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    else:
        targets = sorted(NB_DIR.joinpath("src").glob("[0-9][0-9]_*.py"))
    if args.prefix:
        targets = [t for t in targets if t.name.startswith(tuple(args.prefix))]
    if not targets:
        print("no notebooks matched", file=sys.stderr)
        return 1
    for src in targets:
        dest = NB_DIR / (src.stem + ".ipynb")
        nb = nbformat.read(dest, as_version=4) if args.no_build else script_to_notebook(src.read_text())
        t0 = time.time()
        execute(nb, NB_DIR)
        write_notebook(nb, dest)
        print(f"{dest.relative_to(ROOT)}: executed in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
