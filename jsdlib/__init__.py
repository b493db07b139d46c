"""jsdlib: the library behind the jsd-tutorial notebooks (JSD, CIKM 2025; CMC, EMNLP 2024).

One subpackage per idea, dependencies pointing one way (README "Layout", docs/decisions.md):

    common -> data, vlp -> jsd, index, cmc, retrieval -> apps, experiments -> cli

The notebooks import the subpackages (``from jsdlib import jsd, cmc``); the names below are the few a first
session needs. Everything is imported on first use, so ``import jsdlib`` stays cheap.
"""
from __future__ import annotations

import importlib

__version__ = "0.2.0"

SUBPACKAGES = ("common", "data", "vlp", "jsd", "index", "cmc", "retrieval", "apps", "experiments", "cli")
_NAMES = {  # name -> module that defines it
    "load_emoji": "jsdlib.data.karpathy", "load_wordnet": "jsdlib.data.zeshel", "load_karpathy": "jsdlib.data.karpathy",
    "load_vlp": "jsdlib.vlp.load", "get_preset": "jsdlib.jsd.presets", "train_jsd": "jsdlib.jsd.train",
    "load_jsd": "jsdlib.jsd.io", "EmojiSearch": "jsdlib.apps.bundled", "train_cmc": "jsdlib.cmc.train",
    "load_task": "jsdlib.cmc.tasks",
}
__all__ = ["__version__", *SUBPACKAGES, *_NAMES]


def __getattr__(name: str):
    if name in SUBPACKAGES:
        return importlib.import_module(f"jsdlib.{name}")
    if name in _NAMES:
        return getattr(importlib.import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'jsdlib' has no attribute {name!r}")
