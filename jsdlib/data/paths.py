"""Where the bundled data sets live: ``$JSDLIB_DATA`` if set, else the repository's ``data/``."""
from __future__ import annotations

import os
from pathlib import Path

from jsdlib.common.paths import REPO_ROOT


def data_root() -> Path:
    """The folder holding the bundled data sets: ``$JSDLIB_DATA`` if set, else the repository's ``data/``."""
    env = os.environ.get("JSDLIB_DATA")
    return Path(env) if env else REPO_ROOT / "data"


def emoji_paths() -> tuple[Path, Path]:
    """(JSON, image folder) of the bundled emoji set."""
    root = data_root() / "emoji"
    return root / "dataset_emoji.json", root / "images"


def wordnet_dir() -> Path:
    """The bundled WordNet sense-linking set in ZeSHEL format (``data/wordnet_zeshel``)."""
    return data_root() / "wordnet_zeshel"


__all__ = ["data_root", "emoji_paths", "wordnet_dir"]
