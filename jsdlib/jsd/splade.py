"""SPLADE's max pooling over token positions, for contrast with JSD's one-vector head (issue 18, point 8).

SPLADE (Formal et al., SIGIR 2021) reads a text's **token states** ``h_1..h_N`` and gives every position its own
term weights through the MLM head, then keeps, per vocabulary term ``j``, the largest over the positions::

    w_ij = MLM(h_i)_j,        z_j = max_i  log(1 + ReLU(w_ij))          (i over the non-padding positions)

so a term fires when *some* token of the text predicts it. JSD's head (:class:`jsdlib.jsd.head.SparseHead`)
reads **one** vector per text or image, the normalised dense embedding ``d``, and has no positions to pool over:
``z = log(1 + ReLU(E LN(W_p d)))``. That is what lets one head serve images too, which have no tokens of the
vocabulary. :func:`max_pooled_terms` is SPLADE's pooling for any per-position logits; :func:`tied_mlm_logits`
gives MiniLM's token states such logits through its (tied) word embeddings, ``w_ij = h_i . E_j``, the MLM
decoder without its transform layer (all-MiniLM-L6-v2 ships no MLM head).
"""
from __future__ import annotations

import torch

from jsdlib.jsd.head import log1p_relu


def max_pooled_terms(logits: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``z_j = max_i log(1 + ReLU(logits[i, j]))`` over the positions ``i`` where ``mask`` is 1.

    ``logits``: (N, |V|) for one text or (B, N, |V|) for a batch; ``mask``: (N,) / (B, N), 1 for real tokens
    (default: all). Returns (|V|,) / (B, |V|). Padding never contributes: its weights are set to 0 before the
    max, the smallest value ``log(1 + ReLU(.))`` takes.
    """
    single = logits.dim() == 2
    if single:
        logits = logits.unsqueeze(0)
        mask = None if mask is None else mask.unsqueeze(0)
    if logits.dim() != 3:
        raise ValueError(f"max_pooled_terms expects (N, |V|) or (B, N, |V|) logits, got {tuple(logits.shape)}")
    w = log1p_relu(logits)
    if mask is not None:
        if mask.shape != logits.shape[:2]:
            raise ValueError(f"mask {tuple(mask.shape)} does not match the positions {tuple(logits.shape[:2])}")
        w = w * mask.unsqueeze(-1).to(w.dtype)
    z = w.max(dim=1).values
    return z[0] if single else z


def tied_mlm_logits(token_states: torch.Tensor, E: torch.Tensor) -> torch.Tensor:
    """``w_ij = h_i . E_j``: per-position term logits from the word embeddings ``E`` (|V|, e)."""
    if token_states.shape[-1] != E.shape[1]:
        raise ValueError(f"token states of width {token_states.shape[-1]} cannot meet embeddings of width {E.shape[1]}")
    return token_states.float() @ E.float().T


__all__ = ["max_pooled_terms", "tied_mlm_logits"]
