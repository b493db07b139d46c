"""Where jsdlib's files live: the package, its bundled assets, and the repository root (bundled data)."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # jsdlib/
ASSETS = PACKAGE_DIR / "assets"                          # bundled checkpoints and digests
REPO_ROOT = PACKAGE_DIR.parent                           # notebooks/, data/, benchmarks/ of a source checkout
