"""A loaded vision-language dual encoder (:class:`VLP`) and loading any open_clip model by name and tag.

JSD never runs the VLP's encoders while it trains (arXiv 2508.16707): every caption and image is encoded once into
its pre-projection feature (:mod:`jsdlib.vlp.features`), and the projection initialises JSD's dense branch
(:mod:`jsdlib.vlp.projection`). The bundled CPU model is the stand-in (:mod:`jsdlib.vlp.standin`), itself an
open_clip model registered from a config (:func:`register_model_config`).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from jsdlib.common.integrity import file_sha256
from jsdlib.common.io import atomic_write
from jsdlib.common.paths import cache_dir
from jsdlib.vlp.projection import tokenize, word_embeddings
from jsdlib.vlp.quiet import quiet_loading


class PretrainedUnavailableError(RuntimeError):
    """The requested pretrained weights are not on this machine and cannot be downloaded."""


def _open_clip():
    """open_clip, imported on first use (importing it costs seconds; ``jsdlib.vlp.features`` does not need it)."""
    import open_clip  # noqa: PLC0415

    return open_clip


def register_model_config(name: str, cfg: dict) -> str:
    """Register an open_clip model config under ``name`` (written to the cache, then ``add_model_config``)."""
    path = cache_dir() / "open_clip_configs" / f"{name}.json"
    text = json.dumps(cfg, indent=1, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        atomic_write(path, text)
    _open_clip().add_model_config(path)
    return name


@dataclass
class VLP:
    """A loaded dual encoder with its eval preprocessing and tokenizer.

    ``weights`` says where the weights came from (a tag, a file, or ``"random"``) and ``fingerprint``
    identifies them exactly (used in feature-cache keys).
    """

    model: nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    weights: str
    fingerprint: str
    arch: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        """Size of the text tower's tokenizer vocabulary (|V| of the sparse head)."""
        return word_embeddings(self).shape[0]

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Projected (dense) text embeddings."""
        self.model.eval()
        return self.model.encode_text(tokenize(self.model, self.tokenizer, texts), normalize=normalize)

    @torch.no_grad()
    def encode_images(self, images: Sequence, normalize: bool = True) -> torch.Tensor:
        """Projected (dense) image embeddings from PIL images."""
        self.model.eval()
        batch = torch.stack([self.preprocess(im) for im in images])
        return self.model.encode_image(batch, normalize=normalize)


def load_openclip(name: str, pretrained: str | None = None) -> VLP:
    """Any open_clip model by architecture name and pretrained tag (or checkpoint file).

    ``pretrained=None`` builds the architecture with random weights (offline, like open_clip's own
    tests). A tag needs its weights in the local Hugging Face / open_clip cache; offline the download
    cannot happen and :class:`PretrainedUnavailableError` says so plainly.
    """
    open_clip = _open_clip()
    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; open_clip.list_models() lists the known ones")
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {name!r}; known tags: {tags}")
        try:
            with quiet_loading(logging.CRITICAL):
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except Exception as exc:  # download failure offline: RuntimeError, OSError, network guard ...
            raise PretrainedUnavailableError(
                f"the open_clip weights {name!r} / {pretrained!r} are not on this machine and cannot be "
                f"downloaded here (no internet: {type(exc).__name__}: {str(exc)[:200]}). Fetch them once on a "
                f"machine with internet (they land in the Hugging Face cache, ~/.cache/huggingface) and copy "
                f"that cache here, or pass the checkpoint file path as `pretrained`."
            ) from exc
        fingerprint = f"tag:{name}/{pretrained}"
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        fingerprint = f"file:{file_sha256(pretrained)}" if pretrained else "random"
    model.eval()
    return VLP(model, preprocess, open_clip.get_tokenizer(name), name, pretrained or "random", fingerprint)


__all__ = ["VLP", "load_openclip", "register_model_config", "PretrainedUnavailableError"]
