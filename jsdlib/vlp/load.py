"""One entry point to a VLP: the bundled stand-in or any open_clip architecture."""
from __future__ import annotations

from jsdlib.vlp.openclip import VLP, load_openclip
from jsdlib.vlp.standin import load_standin


def load_vlp(name: str = "standin", pretrained: str | None = None) -> VLP:
    """``"standin"`` (``pretrained`` = optional checkpoint path) or an open_clip architecture name."""
    if name == "standin":
        return load_standin(pretrained)
    return load_openclip(name, pretrained)


__all__ = ["load_vlp"]
