"""CMC checkpoints: the frozen-variant head as safetensors (float16 by default), and the committed WordNet head."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from jsdlib.cmc.model import CMC
from jsdlib.common.integrity import load_safetensors, save_safetensors
from jsdlib.common.paths import ASSETS

CMC_WORDNET_ASSET = ASSETS / "cmc_wordnet.safetensors"
CMC_FORMAT = "jsdlib-cmc-1"


def save_cmc(model: CMC, path, meta: dict | None = None, half: bool = True) -> Path:
    """Write a frozen-variant CMC head to ``path`` (safetensors, atomic; float16 unless ``half=False``)."""
    if model.encoders != "frozen":
        raise ValueError("save_cmc stores the head of the frozen variant; save a finetuned model with torch.save")
    dt = torch.float16 if half else torch.float32
    sd = {k: v.detach().to(dt).contiguous().cpu() for k, v in model.head.state_dict().items()}
    info = {"format": CMC_FORMAT, "dim": model.head.dim, "n_layers": len(model.head.layers), "meta": meta or {}}
    if model.input_scale != "unit":   # files of unit-scale heads stay as they were before the option existed
        info["input_scale"] = model.input_scale
    return save_safetensors(sd, Path(path), {"jsdlib": json.dumps(info)})


def load_cmc(path) -> tuple[CMC, dict]:
    """``(model, meta)`` from :func:`save_cmc` (eval mode, float32; content digest and finite weights checked)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CMC checkpoint at {path}: train one with `jsdlib cmc export --out {path}`")
    sd, header = load_safetensors(path, "CMC checkpoint")
    raw = header.get("jsdlib")
    info = json.loads(raw) if raw else {}
    if info.get("format") != CMC_FORMAT:
        raise ValueError(f"{path} is not a jsdlib CMC checkpoint (format {info.get('format')!r})")
    model = CMC(info["dim"], "frozen", input_scale=info.get("input_scale", "unit"))
    model.head.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval(), info.get("meta", {})


def load_bundled(path=None) -> tuple[CMC, dict]:
    """The committed frozen-encoder CMC head for the WordNet task (``jsdlib/assets/cmc_wordnet.safetensors``)."""
    return load_cmc(CMC_WORDNET_ASSET if path is None else path)

