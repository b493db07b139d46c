"""Scoring a trained model on a whole split (arXiv 2508.16707): encode once, then the three score matrices.

Captions are the queries (rows), images the documents (columns)::

    sparse      Z_t Z_i^T
    dense       D_t D_i^T / tau
    integrated  w1 dense + w2 sparse            (the training-time S_x)
    authors'    w1 D_t D_i^T + w2 sparse        (:func:`authors_integrated_score`: no division by tau)

:func:`evaluate_model` adds text -> image R@K / MRR@10 and the efficiency numbers (:mod:`jsdlib.jsd.efficiency`).
"""
from __future__ import annotations

import torch

from jsdlib.common.metrics import t2i_metrics
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.losses import _check_pair, integrated_score
from jsdlib.jsd.model import JSDModel


@torch.no_grad()
def encode(model: JSDModel, feats, batch: int = 1024, device="cpu", bf16: bool = False) -> dict[str, torch.Tensor]:
    """``D_t, D_i, Z_t, Z_i`` for every caption and image of a split (eval mode, no gradient).

    ``bf16=True`` runs the head's vocabulary matmul in bfloat16 on CPU (used only for the per-epoch validation
    of ``cfg.cpu_bf16`` runs; test numbers are always computed in fp32).
    """
    model.eval()
    device = torch.device(device)
    out = {"D_t": [], "Z_t": [], "D_i": [], "Z_i": []}
    for key, h, dense in (("t", feats.text, model.dense_text), ("i", feats.image, model.dense_image)):
        for s in range(0, len(h), batch):
            d = dense(h[s:s + batch].to(device).float())
            with torch.autocast(device_type="cpu", dtype=torch.bfloat16, enabled=bf16 and device.type == "cpu"):
                z = model.head(d)
            out[f"D_{key}"].append(d.cpu())
            out[f"Z_{key}"].append(z.float().cpu())
    return {k: v[0] if len(v) == 1 else torch.cat(v) for k, v in out.items()}


def sparse_product(Zq: torch.Tensor, Zd: torch.Tensor) -> torch.Tensor:
    """``Zq Zd^T`` over only the terms active on both sides (the same numbers, far fewer multiplications)."""
    _check_pair(Zq, Zd, "sparse_product")
    cols = ((Zq != 0).any(0) & (Zd != 0).any(0)).nonzero().squeeze(1)
    if len(cols) == 0:
        return torch.zeros(Zq.shape[0], Zd.shape[0])
    return Zq[:, cols] @ Zd[:, cols].T


def score_matrices(enc: dict, tau: float, w1: float, w2: float) -> dict[str, torch.Tensor]:
    """Captions x images: ``sparse`` = Z_t Z_i^T, ``dense`` = D_t D_i^T / tau, ``integrated`` = w1 dense + w2 sparse."""
    S_s = sparse_product(enc["Z_t"], enc["Z_i"])
    S_d = enc["D_t"] @ enc["D_i"].T / tau
    return {"sparse": S_s, "dense": S_d, "integrated": integrated_score(S_d, S_s, w1, w2)}


def authors_integrated_score(enc: dict, w1: float, w2: float) -> torch.Tensor:
    """The authors' test-time integrated score (``dense_single`` in ``lightning_model.py`` ~255, 289), captions x
    images: ``w1 * cos(d_t, d_i) + w2 * Z_t Z_i^T`` -- the cosine is NOT divided by tau.

    :func:`score_matrices`' ``integrated`` is the training-time ``S_x = w1 * cos / tau + w2 * S_s`` instead; with
    tau ~ 0.01-0.07 the two weight the dense part 14-100x differently, so they can rank differently.
    """
    return integrated_score(enc["D_t"] @ enc["D_i"].T, sparse_product(enc["Z_t"], enc["Z_i"]), w1, w2)


@torch.no_grad()
def split_scores(model: JSDModel, feats, w1: float, w2: float, device="cpu",
                 batch: int = 1024) -> dict[str, torch.Tensor]:
    """The three captions x images score matrices (``sparse``, ``dense``, ``integrated``) of a Features split."""
    return score_matrices(encode(model, feats, batch, device), float(model.tau.detach()), w1, w2)


@torch.no_grad()
def evaluate_model(model: JSDModel, feats, w1: float, w2: float, device="cpu", batch: int = 1024,
                   bf16: bool = False) -> dict:
    """t2i metrics of the sparse, dense and integrated scores on a split, plus the efficiency numbers."""
    enc = encode(model, feats, batch, device, bf16)
    S = score_matrices(enc, float(model.tau.detach()), w1, w2)
    out = {k: t2i_metrics(v.numpy(), feats.caption_to_image) for k, v in S.items()}
    out.update(efficiency(enc))
    return out


__all__ = ["encode", "sparse_product", "score_matrices", "authors_integrated_score", "split_scores", "evaluate_model"]
