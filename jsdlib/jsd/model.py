"""The trainable part of JSD (arXiv 2508.16707): the two final projections, the shared sparse head, and tau::

    d_t = normalize(W_t h_t + b_t)        d_i = normalize(W_v h_i + b_v)        (initialised from the VLP)
    z   = SparseHead(d)                   one head for both modalities (:mod:`jsdlib.jsd.head`)
    tau learnable, init 0.07, clamped to [1e-3, 0.5] after every step

The VLP's encoders never run here: the model reads cached pre-projection features ``h``.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.jsd.head import SparseHead
from jsdlib.jsd.presets import JSDConfig
from jsdlib.jsd.words import vocab_mask_ids


class JSDModel(nn.Module):
    """The trainable part of JSD: the text/image final projections, the shared sparse head, and tau.

    ``d = normalize(W h + b)`` per modality; ``z = head(d)``. ``freeze_final=True`` fixes the projections
    (the ablation, and D2S's frozen dense embeddings).
    """

    def __init__(self, proj: dict[str, torch.Tensor], vocab_size: int, emb_dim: int,
                 E_init: torch.Tensor | None = None, tau_init: float = 0.07, freeze_final: bool = False,
                 mask_ids: Sequence[int] | None = None):
        super().__init__()
        missing = {"W_t", "b_t", "W_v", "b_v"} - set(proj)
        if missing:
            raise KeyError(f"JSDModel: projection init lacks {sorted(missing)}")
        self.text_proj = self._linear(proj["W_t"], proj["b_t"], "text")
        self.image_proj = self._linear(proj["W_v"], proj["b_v"], "image")
        if self.text_proj.out_features != self.image_proj.out_features:
            raise ValueError(f"JSDModel: text projection gives {self.text_proj.out_features}-d, image projection "
                             f"{self.image_proj.out_features}-d; they must share the dense space")
        self.head = SparseHead(self.text_proj.out_features, emb_dim, vocab_size, E_init, mask_ids)
        self.tau = nn.Parameter(torch.tensor(float(tau_init)))
        self.freeze_final = freeze_final
        for p in (*self.text_proj.parameters(), *self.image_proj.parameters()):
            p.requires_grad_(not freeze_final)

    @staticmethod
    def _linear(W: torch.Tensor, b: torch.Tensor, what: str) -> nn.Linear:
        if W.dim() != 2 or b.shape != (W.shape[0],):
            raise ValueError(f"JSDModel: {what} projection W {tuple(W.shape)} / b {tuple(b.shape)} is not a linear map")
        lin = nn.Linear(W.shape[1], W.shape[0])
        with torch.no_grad():
            lin.weight.copy_(W.float())
            lin.bias.copy_(b.float())
        return lin

    def dense_text(self, h_t: torch.Tensor) -> torch.Tensor:
        """``d_t = normalize(W_t h_t + b_t)``."""
        return F.normalize(self.text_proj(h_t), dim=-1)

    def dense_image(self, h_i: torch.Tensor) -> torch.Tensor:
        """``d_i = normalize(W_v h_i + b_v)``."""
        return F.normalize(self.image_proj(h_i), dim=-1)

    def forward(self, h_t: torch.Tensor, h_i: torch.Tensor, active_only: bool = False):
        """(d_t, d_i, z_t, z_i) for pre-projection caption and image features.

        ``active_only=True`` returns ``z_t, z_i`` restricted to the vocabulary columns active in either of them
        (:meth:`SparseHead.forward_active`): same scores, L1 and gradients, much cheaper; used for training.
        """
        if h_t.shape[-1] != self.text_proj.in_features or h_i.shape[-1] != self.image_proj.in_features:
            raise ValueError(f"JSDModel: expects text features of width {self.text_proj.in_features} and image "
                             f"features of width {self.image_proj.in_features}, "
                             f"got {tuple(h_t.shape)} / {tuple(h_i.shape)}")
        d_t, d_i = self.dense_text(h_t), self.dense_image(h_i)
        if not active_only:
            return d_t, d_i, self.head(d_t), self.head(d_i)
        z, _ = self.head.forward_active(torch.cat([d_t, d_i]))
        return d_t, d_i, z[:len(d_t)], z[len(d_t):]

    @torch.no_grad()
    def clamp_tau_(self, lo: float = 1e-3, hi: float = 0.5) -> None:
        """tau <- clamp(tau, lo, hi) (done after every optimiser step)."""
        self.tau.clamp_(lo, hi)

    def trainable(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]


def build_model(feats, cfg: JSDConfig, E_init: torch.Tensor | None = None,
                special_ids: Sequence[int] | None = None, freeze_final: bool | None = None,
                tau_init: float | None = None, vocab=None) -> JSDModel:
    """A :class:`JSDModel` for the features' projection init and the word embeddings ``E_init`` (|V|, e).

    The head masks ``special_ids`` when ``cfg.mask_special_tokens`` and, when ``cfg.vocab_mask`` is not ``"none"``,
    the non-word terms of ``vocab`` (:func:`jsdlib.jsd.words.vocab_mask_ids`)."""
    if E_init is not None:
        vocab_size, emb_dim = E_init.shape
    elif cfg.vocab_size and cfg.emb_dim:
        vocab_size, emb_dim = cfg.vocab_size, cfg.emb_dim
    else:
        raise ValueError("build_model needs the word embeddings E_init (e.g. "
                         "jsdlib.vlp.projection.word_embeddings(vlp)) or cfg.vocab_size and cfg.emb_dim for a random E")
    mask_ids = None
    if cfg.mask_special_tokens:
        if special_ids is None:
            raise ValueError("cfg.mask_special_tokens=True needs special_ids (e.g. Vocabulary.special_ids)")
        mask_ids = list(special_ids)
    if cfg.vocab_mask != "none":       # issue 14: every active term a word (jsdlib.jsd.words)
        if vocab is None:
            raise ValueError(f"cfg.vocab_mask={cfg.vocab_mask!r} needs the vocabulary (vocab=, e.g. FeatureSet.vocab)")
        mask_ids = sorted(set(mask_ids or []) | set(vocab_mask_ids(vocab, cfg.vocab_mask)))
    return JSDModel(feats.proj, vocab_size, emb_dim, E_init,
                    tau_init=cfg.tau_init if tau_init is None else tau_init,
                    freeze_final=cfg.freeze_final if freeze_final is None else freeze_final, mask_ids=mask_ids)


__all__ = ["JSDModel", "build_model"]
