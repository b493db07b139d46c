"""A trained JSD model on disk: one safetensors file (``E`` in float16, the rest float32) with its metadata.

``jsdlib/assets/jsd_cpu_emoji.safetensors`` is the committed model of the CPU course (trained by
:func:`jsdlib.apps.bundled.train_bundled_jsd`); :func:`load_jsd` reads it or any file :func:`save_jsd` wrote.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from jsdlib.common.integrity import load_safetensors, save_safetensors
from jsdlib.common.paths import ASSETS
from jsdlib.jsd.model import JSDModel

JSD_ASSET = ASSETS / "jsd_cpu_emoji.safetensors"
FORMAT = "jsdlib-jsd-1"
_HALF = ("head.E",)


class BundledModelError(FileNotFoundError):
    """A bundled checkpoint is missing or not a jsdlib JSD checkpoint."""


def save_jsd(model, path, meta: dict | None = None) -> Path:
    """Write a :class:`~jsdlib.jsd.model.JSDModel` to ``path`` (safetensors, atomic; ``E`` as float16).

    ``meta`` (JSON-serialisable) is stored in the file's metadata together with the shapes and masked ids.
    """
    path = Path(path)
    sd = {k: (v.detach().to(torch.float16) if k in _HALF else v.detach().float()).contiguous().cpu()
          for k, v in model.state_dict().items()}
    keep = model.head.keep
    info = {"format": FORMAT, "mask_ids": (keep == 0).nonzero().squeeze(1).tolist() if model.head.masked else [],
            "freeze_final": bool(model.freeze_final), "meta": meta or {}}
    return save_safetensors(sd, path, {"jsdlib": json.dumps(info)})


def load_jsd(path=None):
    """``(model, meta)`` from a file written by :func:`save_jsd` (default: the committed cpu-emoji model).

    The model is in eval mode on the CPU, float32 (``E`` upcast from its stored float16). The file's content
    digest and finite weights are checked (:func:`jsdlib.common.integrity.load_safetensors`).
    """
    path = Path(path) if path is not None else JSD_ASSET
    if not path.is_file():
        raise BundledModelError(f"no JSD checkpoint at {path}; the committed one is {JSD_ASSET} "
                                "(recreate it with `jsdlib jsd export --out PATH`)")
    fix = ("restore it with `git checkout -- jsdlib/assets`" if path.resolve().parent == JSD_ASSET.parent
           else "recreate it with `jsdlib jsd export --out PATH`")
    sd, header = load_safetensors(path, "JSD checkpoint", fix=fix)
    raw = header.get("jsdlib")
    info = json.loads(raw) if raw else {}
    if info.get("format") != FORMAT:
        raise BundledModelError(f"{path} is not a jsdlib JSD checkpoint (format {info.get('format')!r}, "
                                f"expected {FORMAT!r})")
    proj = {"W_t": sd["text_proj.weight"], "b_t": sd["text_proj.bias"],
            "W_v": sd["image_proj.weight"], "b_v": sd["image_proj.bias"]}
    E = sd["head.E"].float()
    model = JSDModel(proj, E.shape[0], E.shape[1], E, tau_init=float(sd["tau"]),
                     freeze_final=info.get("freeze_final", False), mask_ids=info.get("mask_ids") or None)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval(), info.get("meta", {})
