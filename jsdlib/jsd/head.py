"""The sparse head (arXiv 2508.16707): one head, shared by captions and images, reads the *normalised dense* vector::

    u = LayerNorm(W_p d + b_p)          W_p: dense_dim -> e   (e = the text tower's word-embedding width)
    z = log(1 + ReLU(E u))              E: (|V|, e), no bias, a trainable *copy* of the word embeddings

Every dimension of ``z`` is a token of the text tower's vocabulary (read it with :mod:`jsdlib.jsd.vocab`); its
regularisers are in :mod:`jsdlib.jsd.losses`, the efficiency numbers in :mod:`jsdlib.jsd.efficiency`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn



def log1p_relu(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + ReLU(x))`` in fp32 (also under autocast: bf16 log1p is slow on CPU).

    Without autograd the log is taken only at the positive entries (the rest are exactly 0 either way): the
    same numbers, several times faster when most terms are inactive, as at evaluation time.
    """
    r = torch.relu(x).float()
    if torch.is_grad_enabled() and r.requires_grad:
        return torch.log1p(r)
    pos = r > 0
    r[pos] = torch.log1p(r[pos])
    return r


class SparseHead(nn.Module):
    """``z = log(1 + ReLU(E LayerNorm(W_p d + b_p)))``: a dense vector -> |V| non-negative term weights.

    ``E_init`` (|V|, e): the text tower's input word embeddings; the head keeps its own trainable copy
    (not tied to the tower). Without it ``E`` is drawn from N(0, 0.02^2) (not the paper's init).
    ``mask_ids``: vocabulary ids forced to zero (e.g. special tokens); ``None`` masks nothing (default).
    """

    def __init__(self, dense_dim: int, emb_dim: int, vocab_size: int, E_init: torch.Tensor | None = None,
                 mask_ids: Sequence[int] | torch.Tensor | None = None):
        super().__init__()
        for name, v in (("dense_dim", dense_dim), ("emb_dim", emb_dim), ("vocab_size", vocab_size)):
            if int(v) != v or v < 1:
                raise ValueError(f"SparseHead: {name} must be a positive integer, got {v!r}")
        self.proj = nn.Linear(dense_dim, emb_dim)           # W_p, b_p
        self.norm = nn.LayerNorm(emb_dim)
        if E_init is not None:
            if tuple(E_init.shape) != (vocab_size, emb_dim):
                raise ValueError(f"SparseHead: E_init has shape {tuple(E_init.shape)}, expected "
                                 f"(vocab_size, emb_dim) = ({vocab_size}, {emb_dim})")
            E = E_init.detach().clone().float()              # a copy: trainable, not tied
        else:
            E = torch.randn(vocab_size, emb_dim) * 0.02
        self.E = nn.Parameter(E)
        keep = torch.ones(vocab_size)
        if mask_ids is not None:
            ids = torch.as_tensor(list(mask_ids) if not torch.is_tensor(mask_ids) else mask_ids, dtype=torch.long)
            if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
                raise IndexError(f"SparseHead: mask_ids must lie in [0, {vocab_size}), got {ids.tolist()[:5]}...")
            keep[ids] = 0.0
        self.register_buffer("keep", keep, persistent=False)
        self.masked = mask_ids is not None and len(mask_ids) > 0

    @property
    def vocab_size(self) -> int:
        return self.E.shape[0]

    def _u(self, d: torch.Tensor) -> torch.Tensor:
        """``u = LayerNorm(W_p d + b_p)`` of (B, dense_dim) dense vectors (checked)."""
        if d.dim() != 2 or d.shape[1] != self.proj.in_features:
            raise ValueError(f"SparseHead expects (batch, {self.proj.in_features}) dense vectors, got {tuple(d.shape)}")
        return self.norm(self.proj(d))

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """(B, dense_dim) -> (B, |V|) non-negative term weights."""
        u = self._u(d)                                       # u = LayerNorm(W_p d + b_p)
        z = log1p_relu(u @ self.E.T)                         # z = log(1 + ReLU(E u))
        return z * self.keep if self.masked else z

    def logits(self, d: torch.Tensor) -> torch.Tensor:
        """The pre-activation logits ``l = E LayerNorm(W_p d + b_p)`` (B, |V|), ``-inf`` at masked ids:
        ``z = log(1 + ReLU(l))`` ranks terms in the order of ``l`` (:mod:`jsdlib.jsd.caption_words`)."""
        l = self._u(d) @ self.E.T
        return l.masked_fill(self.keep == 0, float("-inf")) if self.masked else l

    def forward_active(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z[:, cols], cols)``: the same ``z`` restricted to the terms non-zero in at least one row.

        The columns left out are exactly zero for every row, and ReLU passes no gradient through them, so
        dot products, L1 and every gradient are the same as with :meth:`forward` (to float rounding). Training
        uses it: the full ``E u`` is computed once without autograd and only the active columns are
        recomputed with it, which makes the backward pass (and ``S_s``) cost ~|active|/|V| of the dense one.
        """
        u = self._u(d)
        with torch.no_grad():   # E u^T (|V| x B) is ~1.5x faster than u E^T on CPU BLAS; same signs up to rounding
            active = (self.E @ u.T).amax(dim=1) > 0
            if self.masked:
                active &= self.keep.bool()
            cols = active.nonzero().squeeze(1)
        z = log1p_relu(u @ self.E[cols].T)
        return z, cols


__all__ = ["SparseHead", "log1p_relu"]
