"""The losses of JSD and D2S (arXiv 2508.16707): scores, InfoNCE, KD, teachers, self-KD, regularisers.

Within a batch of B (image, caption) pairs -- **rows = images, columns = captions, labels y = arange(B)**::

    S_d = D_i D_t^T / tau                          dense scores (normalised projections, learnable tau)
    S_s = Z_i Z_t^T                                sparse scores (shared head, no temperature)
    S_x = w1 S_d + w2 S_s                          integrated score
    InfoNCE(S) = 1/2 [CE(S, y) + CE(S^T, y)]
    KD(S, P)   = - mean_rows sum_cols P log_softmax(S, dim=1)
    P_it = softmax(S_x, dim=1),  P_ti = softmax(S_x^T, dim=1)      the teachers
    L  = (lam1 InfoNCE(S_d) + lam2 InfoNCE(S_s) + InfoNCE(S_x)) / 2
    L' = (lam1 1/2[KD(S_d, P_it) + KD(S_d^T, P_ti)] + lam2 1/2[KD(S_s, P_it) + KD(S_s^T, P_ti)]) / 2
    loss = 1/2 (L + L') + 1/2 [eta_t(t) L1(Z_t) + eta_i(t) L1(Z_i)]

Sparsity comes from a regulariser (a tiny callable, :data:`REGULARISERS`) whose weight grows quadratically over
the first 20 % of the steps::

    L1(Z)    = mean_batch sum_j |z_j|                 (computed in fp32)
    FLOPS(Z) = sum_j (mean_batch |z_j|)^2
    eta(t)   = eta_max * min(1, t / T)^2,  T = 0.2 * total steps

Each equation is one function below.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------------------------
# Scores and contrastive / distillation losses (the JSD paper), one function each
# ----------------------------------------------------------------------------------------------
def _check_pair(A: torch.Tensor, B: torch.Tensor, what: str) -> None:
    if A.dim() != 2 or B.dim() != 2 or A.shape[1] != B.shape[1]:
        raise ValueError(f"{what}: need two 2-D matrices with the same width, "
                         f"got {tuple(A.shape)} and {tuple(B.shape)}")


def dense_score(D_i: torch.Tensor, D_t: torch.Tensor, tau) -> torch.Tensor:
    """``S_d = D_i D_t^T / tau`` (rows = images, columns = captions; D already L2-normalised)."""
    _check_pair(D_i, D_t, "dense_score")
    return D_i @ D_t.T / tau


def sparse_score(Z_i: torch.Tensor, Z_t: torch.Tensor) -> torch.Tensor:
    """``S_s = Z_i Z_t^T`` (raw dot product, no temperature)."""
    _check_pair(Z_i, Z_t, "sparse_score")
    return Z_i @ Z_t.T


def integrated_score(S_d: torch.Tensor, S_s: torch.Tensor, w1: float, w2: float) -> torch.Tensor:
    """``S_x = w1 * S_d + w2 * S_s``."""
    if S_d.shape != S_s.shape:
        raise ValueError(f"integrated_score: S_d {tuple(S_d.shape)} and S_s {tuple(S_s.shape)} differ in shape")
    return w1 * S_d + w2 * S_s


def _labels(S: torch.Tensor) -> torch.Tensor:
    if S.dim() != 2 or S.shape[0] != S.shape[1]:
        raise ValueError(f"in-batch losses need a square (B, B) score matrix, got {tuple(S.shape)}")
    return torch.arange(S.shape[0], device=S.device)


def info_nce(S: torch.Tensor) -> torch.Tensor:
    """``InfoNCE(S) = 1/2 [CE(S, y) + CE(S^T, y)]``, y = arange(B): both directions of in-batch contrast."""
    y = _labels(S)
    S = S.float()
    return 0.5 * (F.cross_entropy(S, y) + F.cross_entropy(S.T, y))


def kd_loss(S: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
    """``KD(S, P) = - mean_rows sum_cols P * log_softmax(S, dim=1)``: cross-entropy to a soft teacher P."""
    if S.shape != P.shape:
        raise ValueError(f"kd_loss: scores {tuple(S.shape)} and teacher {tuple(P.shape)} differ in shape")
    return -(P.float() * torch.log_softmax(S.float(), dim=1)).sum(dim=1).mean()


def teachers(S_x: torch.Tensor, transpose_quirk: bool = False,
             detach: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``P_it = softmax(S_x, dim=1)`` (image rows over captions), ``P_ti = softmax(S_x^T, dim=1)`` (caption rows
    over images).

    ``transpose_quirk=True`` reproduces the authors' released code: ``P_ti = softmax(S_x, dim=1)`` untransposed.
    ``detach=True`` stops gradients through the teacher (BGE-M3 style; the paper does not).
    """
    _labels(S_x)
    S_x = S_x.float()
    if detach:
        S_x = S_x.detach()
    P_it = torch.softmax(S_x, dim=1)
    P_ti = torch.softmax(S_x, dim=1) if transpose_quirk else torch.softmax(S_x.T, dim=1)
    return P_it, P_ti


def self_kd(S: torch.Tensor, P_it: torch.Tensor, P_ti: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The two directions of ``L'_X = 1/2 [KD(S, P_it) + KD(S^T, P_ti)]``, returned separately (i->t, t->i)."""
    return kd_loss(S, P_it), kd_loss(S.T, P_ti)


def jsd_loss(S_d: torch.Tensor, S_s: torch.Tensor, Z_t: torch.Tensor, Z_i: torch.Tensor, *,
             w1: float, w2: float, lam1: float, lam2: float, eta_t: float = 0.0, eta_i: float = 0.0,
             use_self_kd: bool = True, detach_teacher: bool = False, teacher_transpose_quirk: bool = False,
             reg: str = "l1") -> tuple[torch.Tensor, dict]:
    """``loss = 1/2 (L + L') + 1/2 [eta_t L1(Z_t) + eta_i L1(Z_i)]`` with every part in the returned dict.

    ``L = (lam1 InfoNCE(S_d) + lam2 InfoNCE(S_s) + InfoNCE(S_x)) / 2`` and
    ``L' = (lam1 L'_dense + lam2 L'_sparse) / 2``; ``use_self_kd=False`` sets ``L' = 0`` (the ablation).
    ``eta_t``/``eta_i`` are the regulariser weights *at this step* (see :func:`reg_weight`).
    """
    if S_d.shape != S_s.shape:
        raise ValueError(f"jsd_loss: S_d {tuple(S_d.shape)} and S_s {tuple(S_s.shape)} differ in shape")
    if Z_t.shape[0] != S_d.shape[1] or Z_i.shape[0] != S_d.shape[0]:
        raise ValueError(f"jsd_loss: Z_t has {Z_t.shape[0]} rows and Z_i {Z_i.shape[0]} "
                         f"but the scores are {tuple(S_d.shape)}")
    S_x = integrated_score(S_d, S_s, w1, w2)
    p = {"L_dense": info_nce(S_d), "L_sparse": info_nce(S_s), "L_inter": info_nce(S_x)}
    p["L"] = (lam1 * p["L_dense"] + lam2 * p["L_sparse"] + p["L_inter"]) / 2
    if use_self_kd:
        P_it, P_ti = teachers(S_x, transpose_quirk=teacher_transpose_quirk, detach=detach_teacher)
        p["KD_dense_it"], p["KD_dense_ti"] = self_kd(S_d, P_it, P_ti)
        p["KD_sparse_it"], p["KD_sparse_ti"] = self_kd(S_s, P_it, P_ti)
        p["Lp_dense"] = 0.5 * (p["KD_dense_it"] + p["KD_dense_ti"])
        p["Lp_sparse"] = 0.5 * (p["KD_sparse_it"] + p["KD_sparse_ti"])
        p["Lp"] = (lam1 * p["Lp_dense"] + lam2 * p["Lp_sparse"]) / 2
    else:
        p["Lp"] = torch.zeros((), device=S_d.device)
    p.update(sparsity_penalty(Z_t, Z_i, eta_t, eta_i, reg))
    p["loss"] = 0.5 * (p["L"] + p["Lp"]) + p["reg"]
    return p["loss"], p


def d2s_loss(S_s: torch.Tensor, S_d_cos: torch.Tensor, tau_d, Z_t: torch.Tensor, Z_i: torch.Tensor, *,
             eta_t: float = 0.0, eta_i: float = 0.0, reg: str = "l1") -> tuple[torch.Tensor, dict]:
    """D2S: ``1/2 [CE(S_s, softmax(S_d/tau_d, 1)) + CE(S_s^T, softmax(S_d^T/tau_d, 1))]
    + 1/2 [eta_t L1(Z_t) + eta_i L1(Z_i)]``.

    ``S_d_cos`` = cosines of the *frozen* dense embeddings (rows images). As in D2S's code the teacher is built
    without gradient, so the "learnable" tau_d receives none and stays at its init.
    """
    if S_s.shape != S_d_cos.shape:
        raise ValueError(f"d2s_loss: S_s {tuple(S_s.shape)} and S_d {tuple(S_d_cos.shape)} differ in shape")
    with torch.no_grad():
        T = S_d_cos.float() / tau_d
        P_it, P_ti = torch.softmax(T, dim=1), torch.softmax(T.T, dim=1)
    p = {"KD_it": kd_loss(S_s, P_it), "KD_ti": kd_loss(S_s.T, P_ti)}
    p["distill"] = 0.5 * (p["KD_it"] + p["KD_ti"])
    p.update(sparsity_penalty(Z_t, Z_i, eta_t, eta_i, reg))
    p["loss"] = p["distill"] + p["reg"]
    return p["loss"], p


# ----------------------------------------------------------------------------------------------
# Regularisers and their warm-up
# ----------------------------------------------------------------------------------------------
def l1_reg(Z: torch.Tensor) -> torch.Tensor:
    """``L1(Z) = mean_batch sum_j |z_j|``, computed in fp32 (also under autocast)."""
    if Z.dim() != 2:
        raise ValueError(f"l1_reg expects a (batch, |V|) matrix, got shape {tuple(Z.shape)}")
    return Z.float().abs().sum(dim=1).mean()


def flops_reg(Z: torch.Tensor) -> torch.Tensor:
    """``FLOPS(Z) = sum_j (mean_batch |z_j|)^2`` (Paria et al. 2020), computed in fp32."""
    if Z.dim() != 2:
        raise ValueError(f"flops_reg expects a (batch, |V|) matrix, got shape {tuple(Z.shape)}")
    return Z.float().abs().mean(dim=0).pow(2).sum()


REGULARISERS = {"l1": l1_reg, "flops": flops_reg}


def regulariser(name: str):
    """The regulariser function called ``name`` ("l1", the default, or "flops")."""
    if name not in REGULARISERS:
        raise ValueError(f"unknown regulariser {name!r}; choose one of {sorted(REGULARISERS)}")
    return REGULARISERS[name]


def sparsity_penalty(Z_t: torch.Tensor, Z_i: torch.Tensor, eta_t: float, eta_i: float,
                     reg: str = "l1") -> dict[str, torch.Tensor]:
    """``1/2 [eta_t R(Z_t) + eta_i R(Z_i)]`` (R = L1 by default) as ``{"reg_t", "reg_i", "reg"}``: the sparsity term
    of both the JSD and the D2S loss, with the weights ``eta`` of this step (:func:`reg_weight`)."""
    rfn = regulariser(reg)
    reg_t, reg_i = rfn(Z_t), rfn(Z_i)
    return {"reg_t": reg_t, "reg_i": reg_i, "reg": 0.5 * (eta_t * reg_t + eta_i * reg_i)}


def reg_weight(step: int, total: int, eta_max: float, warmup_frac: float = 0.2) -> float:
    """``eta(t) = eta_max * min(1, t / T)^2`` with ``T = warmup_frac * total`` (20 % of the steps)."""
    if total < 1:
        raise ValueError(f"reg_weight: total steps must be >= 1, got {total}")
    if not 0 < warmup_frac <= 1:
        raise ValueError(f"reg_weight: warmup_frac must be in (0, 1], got {warmup_frac}")
    T = warmup_frac * total
    return float(eta_max) * min(1.0, max(0, step) / T) ** 2


__all__ = ["dense_score", "sparse_score", "integrated_score", "info_nce", "kd_loss", "teachers", "self_kd",
           "jsd_loss", "d2s_loss", "l1_reg", "flops_reg", "REGULARISERS", "regulariser",
           "sparsity_penalty", "reg_weight"]
