"""How sparse a retriever is, measured as D2S does (arXiv 2508.16707): active terms and expected FLOPs.

    p_j(X)      = share of the vectors in X with z_j != 0
    terms(X)    = mean number of non-zero terms per vector = sum_j p_j(X)
    FLOPs(Q, D) = sum_j p_j(Q) p_j(D)            the expected multiplications per (query, document) pair
"""
from __future__ import annotations

import torch


def active_terms(Z: torch.Tensor) -> float:
    """Mean number of non-zero terms per vector (rows of ``Z``)."""
    if Z.dim() != 2:
        raise ValueError(f"active_terms expects a (n, |V|) matrix, got shape {tuple(Z.shape)}")
    return float((Z != 0).sum(dim=1).double().mean())


def term_shares(Z: torch.Tensor) -> torch.Tensor:
    """``p_j`` = share of the rows of ``Z`` with a non-zero weight on term j (float64, shape (|V|,))."""
    if Z.dim() != 2 or Z.shape[0] == 0:
        raise ValueError(f"term_shares expects a non-empty (n, |V|) matrix, got shape {tuple(Z.shape)}")
    return (Z != 0).sum(dim=0).double() / Z.shape[0]


def flops(Zq: torch.Tensor, Zd: torch.Tensor) -> float:
    """D2S FLOPs: ``sum_j p_j(Q) * p_j(D)``, the expected number of multiplications per (query, doc) pair."""
    if Zq.dim() != 2 or Zd.dim() != 2 or Zq.shape[1] != Zd.shape[1]:
        raise ValueError(f"flops: queries {tuple(Zq.shape)} and documents {tuple(Zd.shape)} must be "
                         "2-D over the same vocabulary")
    return float((term_shares(Zq) * term_shares(Zd)).sum())


def efficiency(enc: dict) -> dict[str, float]:
    """Active terms per caption (query) and per image (document), and D2S FLOPs between them.

    One pass per matrix: with ``p_j`` the share of vectors using term j, mean active terms = ``sum_j p_j`` and
    FLOPs = ``sum_j p_j(Q) p_j(D)`` (the same numbers as :func:`active_terms` / :func:`flops`).
    """
    p_q, p_d = term_shares(enc["Z_t"]), term_shares(enc["Z_i"])
    return {"terms_q": float(p_q.sum()), "terms_d": float(p_d.sum()), "flops": float((p_q * p_d).sum())}


__all__ = ["active_terms", "term_shares", "flops", "efficiency"]
