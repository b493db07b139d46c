"""JSD: joint sparse-dense optimisation with integrated-score self-distillation (spec jsd.md §2-§5).

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

Each equation is one function below. :class:`JSDModel` holds what is trained (the two final projections,
the shared :class:`~jsdlib.jsd.head.SparseHead`, tau); :func:`train_jsd` / :func:`train_d2s` train on cached
features; :func:`run_methods` produces every row of the comparison table (spec §5).

Batches: by default every image appears once per epoch, with one of its captions drawn at random each time
(``sampling="images"``), so an image never appears twice in a batch and there are no duplicate-image false
negatives to drop. ``sampling="captions"`` walks over all captions instead; then ``drop_duplicates=True``
(default) keeps only the first caption of an image within a batch.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.common.checkpoint import open_run, save_atomic, save_state
from jsdlib.common.hardware import cpu_bf16
from jsdlib.common.metrics import ranks, reciprocal_ranks, t2i_metrics
from jsdlib.jsd.presets import JSDConfig
from jsdlib.jsd.head import SparseHead, bag_mask, reg_weight, regulariser, term_shares


# ----------------------------------------------------------------------------------------------
# The equations (spec §2-§3), one function each
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
    ``eta_t``/``eta_i`` are the regulariser weights *at this step* (see :func:`jsdlib.jsd.head.reg_weight`).
    """
    if S_d.shape != S_s.shape:
        raise ValueError(f"jsd_loss: S_d {tuple(S_d.shape)} and S_s {tuple(S_s.shape)} differ in shape")
    if Z_t.shape[0] != S_d.shape[1] or Z_i.shape[0] != S_d.shape[0]:
        raise ValueError(f"jsd_loss: Z_t has {Z_t.shape[0]} rows and Z_i {Z_i.shape[0]} "
                         f"but the scores are {tuple(S_d.shape)}")
    rfn = regulariser(reg)
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
    p["reg_t"], p["reg_i"] = rfn(Z_t), rfn(Z_i)
    p["reg"] = 0.5 * (eta_t * p["reg_t"] + eta_i * p["reg_i"])
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
    rfn = regulariser(reg)
    with torch.no_grad():
        T = S_d_cos.float() / tau_d
        P_it, P_ti = torch.softmax(T, dim=1), torch.softmax(T.T, dim=1)
    p = {"KD_it": kd_loss(S_s, P_it), "KD_ti": kd_loss(S_s.T, P_ti)}
    p["distill"] = 0.5 * (p["KD_it"] + p["KD_ti"])
    p["reg_t"], p["reg_i"] = rfn(Z_t), rfn(Z_i)
    p["reg"] = 0.5 * (eta_t * p["reg_t"] + eta_i * p["reg_i"])
    p["loss"] = p["distill"] + p["reg"]
    return p["loss"], p


# ----------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------
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
                tau_init: float | None = None) -> JSDModel:
    """A :class:`JSDModel` for the features' projection init and the word embeddings ``E_init`` (|V|, e)."""
    if E_init is not None:
        vocab_size, emb_dim = E_init.shape
    elif cfg.vocab_size and cfg.emb_dim:
        vocab_size, emb_dim = cfg.vocab_size, cfg.emb_dim
    else:
        raise ValueError("build_model needs the word embeddings E_init (e.g. jsdlib.vlp.models.word_embeddings(vlp)) or "
                         "cfg.vocab_size and cfg.emb_dim for a random E")
    mask_ids = None
    if cfg.mask_special_tokens:
        if special_ids is None:
            raise ValueError("cfg.mask_special_tokens=True needs special_ids (e.g. Vocabulary.special_ids)")
        mask_ids = list(special_ids)
    return JSDModel(feats.proj, vocab_size, emb_dim, E_init,
                    tau_init=cfg.tau_init if tau_init is None else tau_init,
                    freeze_final=cfg.freeze_final if freeze_final is None else freeze_final, mask_ids=mask_ids)


# ----------------------------------------------------------------------------------------------
# Batches, schedules
# ----------------------------------------------------------------------------------------------
def _caption_table(image_to_captions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = torch.tensor([len(c) for c in image_to_captions])
    if (counts == 0).any():
        raise ValueError(f"image {int((counts == 0).nonzero()[0])} has no caption")
    flat = torch.tensor([c for cs in image_to_captions for c in cs])
    offsets = torch.cumsum(counts, 0) - counts
    return flat, offsets, counts


def epoch_batches(feats, batch_size: int, gen: torch.Generator, sampling: str = "images",
                  drop_duplicates: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (caption indices, image indices) batches, drawn with ``gen``.

    ``"images"``: images shuffled, one random caption each (no image twice in a batch). ``"captions"``: all
    captions shuffled; with ``drop_duplicates`` a caption whose image is already in the batch is dropped.
    A trailing batch of one pair is merged into the previous batch.
    """
    n_img = len(feats.image_to_captions)
    if sampling == "images":
        flat, offsets, counts = _caption_table(feats.image_to_captions)
        order = torch.randperm(n_img, generator=gen)
        pick = (torch.rand(n_img, generator=gen) * counts[order]).long()
        caps = flat[offsets[order] + pick]
        pairs = [(caps[s:s + batch_size], order[s:s + batch_size]) for s in range(0, n_img, batch_size)]
    elif sampling == "captions":
        c2i = torch.as_tensor(np.asarray(feats.caption_to_image), dtype=torch.long)
        order = torch.randperm(len(c2i), generator=gen)
        pairs = []
        for s in range(0, len(order), batch_size):
            caps = order[s:s + batch_size]
            imgs = c2i[caps]
            if drop_duplicates:
                seen, keep = set(), []
                for k, i in enumerate(imgs.tolist()):
                    if i not in seen:
                        seen.add(i)
                        keep.append(k)
                caps, imgs = caps[keep], imgs[keep]
            pairs.append((caps, imgs))
    else:
        raise ValueError(f"sampling must be 'images' or 'captions', got {sampling!r}")
    if len(pairs) > 1 and len(pairs[-1][0]) < 2:
        (c1, i1), (c2, i2) = pairs[-2], pairs.pop()
        pairs[-1] = (torch.cat([c1, c2]), torch.cat([i1, i2]))
        if drop_duplicates and len(set(pairs[-1][1].tolist())) < len(pairs[-1][1]):
            pairs[-1] = (c1, i1)
    return pairs


def steps_per_epoch(feats, cfg: JSDConfig) -> int:
    """Number of optimiser steps in one epoch (the batch count of :func:`epoch_batches`)."""
    n = len(feats.image_to_captions) if cfg.sampling == "images" else len(feats.caption_to_image)
    k = math.ceil(n / cfg.batch_size)
    return k - 1 if k > 1 and n % cfg.batch_size == 1 else k


def lr_factor(step: int, total: int, warmup_frac: float = 0.2) -> float:
    """Learning-rate factor of optimiser step ``step`` (0-based) out of ``total``: linear warm-up over
    ``W = warmup_frac * total`` steps, then linear decay to 0 at ``total``::

        f(s) = (s + 1) / W             for s < W     (the first step already moves: 1/W, not 0)
        f(s) = (total - s) / (total - W)   after
    """
    warm = max(1, int(warmup_frac * total))
    if step < warm:
        return (step + 1) / warm
    return max(0.0, (total - step) / max(1, total - warm))


def pec_probability(epoch: int, epochs: int, decay_frac: float = 0.95) -> float:
    """D2S expansion control: ``p = max(0, 1 - e / (decay_frac * epochs))`` for 0-based epoch e (1 -> 0 over 95 %)."""
    return max(0.0, 1.0 - epoch / (decay_frac * epochs))


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------
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


@torch.no_grad()
def split_scores(model: JSDModel, feats, w1: float, w2: float, device="cpu",
                 batch: int = 1024) -> dict[str, torch.Tensor]:
    """The three captions x images score matrices (``sparse``, ``dense``, ``integrated``) of a Features split."""
    return score_matrices(encode(model, feats, batch, device), float(model.tau.detach()), w1, w2)


def efficiency(enc: dict) -> dict[str, float]:
    """Active terms per caption (query) and per image (document), and D2S FLOPs between them.

    One pass per matrix: with ``p_j`` the share of vectors using term j, mean active terms = ``sum_j p_j`` and
    FLOPs = ``sum_j p_j(Q) p_j(D)`` (the same numbers as :func:`jsdlib.jsd.head.active_terms` / ``flops``).
    """
    p_q, p_d = term_shares(enc["Z_t"]), term_shares(enc["Z_i"])
    return {"terms_q": float(p_q.sum()), "terms_d": float(p_d.sum()), "flops": float((p_q * p_d).sum())}


@torch.no_grad()
def evaluate_model(model: JSDModel, feats, w1: float, w2: float, device="cpu", batch: int = 1024,
                   bf16: bool = False) -> dict:
    """t2i metrics of the sparse, dense and integrated scores on a split, plus the efficiency numbers."""
    enc = encode(model, feats, batch, device, bf16)
    S = score_matrices(enc, float(model.tau.detach()), w1, w2)
    out = {k: t2i_metrics(v.numpy(), feats.caption_to_image) for k, v in S.items()}
    out.update(efficiency(enc))
    return out


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def within_budget(val: dict, cfg: JSDConfig) -> bool:
    """Whether validation sparsity meets ``cfg.max_terms_q`` / ``cfg.max_terms_d`` (None = no limit)."""
    return ((cfg.max_terms_q is None or val["terms_q"] <= cfg.max_terms_q)
            and (cfg.max_terms_d is None or val["terms_d"] <= cfg.max_terms_d))


def _data_id(feats) -> str:
    return f"{getattr(feats, 'key', '')}:{tuple(feats.text.shape)}:{tuple(feats.image.shape)}"


def _fit(kind: str, model: JSDModel, step_loss: Callable, feats_train, feats_val, cfg: JSDConfig, *,
         lr: float, w1: float, w2: float, run_dir=None, resume: bool = True, progress: bool = True,
         stop_after_epoch: int | None = None, log=print, epoch_hook: Callable | None = None) -> dict:
    """The loop shared by JSD and D2S: AdamW, warm-up/decay, clip, tau clamp, early stopping on val sparse R@1,
    per-epoch atomic checkpoints in ``run_dir`` (``last.pt``, ``best.pt``), best weights restored at the end.

    ``cfg.cpu_bf16`` asks for bf16 autocast on CPU; :func:`jsdlib.common.hardware.cpu_bf16` grants it only where the CPU
    has native bf16 (elsewhere emulated bf16 is ~2.4x slower than fp32). The result's ``"precision"``
    (``"fp32"``, ``"bf16-autocast"`` or ``"fp16-amp"``) says what ran; a checkpoint refuses to resume in another."""
    from tqdm.auto import tqdm

    device = torch.device(cfg.device)
    use_amp = cfg.amp and device.type == "cuda"                    # fp16 + loss scaling on GPU
    use_bf16 = device.type == "cpu" and cpu_bf16(cfg.cpu_bf16)     # bf16 autocast only where the CPU has it natively
    precision = "fp16-amp" if use_amp else "bf16-autocast" if use_bf16 else "fp32"
    model.to(device)
    params = model.trainable()
    opt = torch.optim.AdamW(params, lr=lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
                            fused=True)  # fused: ~4x faster on CPU for the 11.7M-entry E
    spe = steps_per_epoch(feats_train, cfg)
    total = cfg.epochs * spe
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg.warmup_frac))
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "history": [], "best": None, "bad_epochs": 0, "done": False, "step": 0}
    ident = f"{kind}:{cfg.digest()}:{_data_id(feats_train)}:{_data_id(feats_val)}"

    run_dir, state, extra, best_state = open_run(run_dir, ident, model, opt, sched, gen, state, resume, kind, log)
    if extra.get("precision", precision) != precision:
        raise ValueError(f"{run_dir}/last.pt was trained in {extra['precision']}, this machine runs {precision}: "
                         f"set JSDLIB_CPU_BF16={int(extra['precision'] == 'bf16-autocast')} to resume it, or "
                         "resume=False / a new run folder to start over")
    if "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])

    h_t, h_i = feats_train.text.to(device).float(), feats_train.image.to(device).float()
    t0 = time.time()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        if state["done"]:
            break
        te = time.time()
        if epoch_hook is not None:
            epoch_hook(epoch - 1)
        model.train()
        batches = epoch_batches(feats_train, cfg.batch_size, gen, cfg.sampling, cfg.drop_duplicates)
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"{kind} epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for caps, imgs in bar:
            step = state["step"]
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16 if use_bf16 else torch.float16,
                                enabled=use_amp or use_bf16):
                loss, parts = step_loss(model, h_t[caps.to(device)], h_i[imgs.to(device)], caps, step, total, gen)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            scaler.step(opt)
            scaler.update()
            sched.step()
            model.clamp_tau_(cfg.tau_min, cfg.tau_max)
            state["step"] = step + 1
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        train_s = time.time() - te
        val = evaluate_model(model, feats_val, w1, w2, device, cfg.eval_batch, bf16=use_bf16)
        row = {"epoch": epoch, **{k: v / len(batches) for k, v in sums.items()}, "val": val,
               "tau": float(model.tau.detach()), "train_s": round(train_s, 3), "epoch_s": round(time.time() - te, 3)}
        state["history"].append(row)
        r1 = val["sparse"]["R@1"]
        row["within_budget"] = within_budget(val, cfg)
        if row["within_budget"] and (state["best"] is None or r1 > state["best"]["val"]["sparse"]["R@1"]):
            state["best"], state["bad_epochs"] = row, 0
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if run_dir is not None:
                save_atomic(best_state, run_dir / "best.pt")
        elif state["best"] is not None:  # patience runs from the first selectable epoch
            state["bad_epochs"] += 1
        state["epoch"] = epoch
        if state["bad_epochs"] >= cfg.patience:
            state["done"] = True
        log_fn = log if progress else (lambda *a: None)
        log_fn(f"{kind} epoch {epoch:3d}  loss {row.get('loss', float('nan')):.4f}  val sparse R@1 {r1:.2f}  "
               f"dense R@1 {val['dense']['R@1']:.2f}  terms q/d {val['terms_q']:.0f}/{val['terms_d']:.0f}  "
               f"{row['epoch_s']:.1f}s")
        if run_dir is not None:
            save_state(run_dir / "last.pt", ident, model, opt, sched, gen, state, scaler=scaler.state_dict(),
                       precision=precision)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs and not state["done"]:
            return {"model": model, "stopped_at": epoch, "precision": precision, **state}
    if best_state is not None:
        model.load_state_dict(best_state)
    elif state["history"]:  # no epoch met the sparsity budget: keep the last one and say so
        state["best"] = state["history"][-1]
        log(f"{kind}: no epoch met the sparsity budget (max_terms_q={cfg.max_terms_q}, "
            f"max_terms_d={cfg.max_terms_d}); keeping the last epoch")
    model.eval()
    return {"model": model, "train_time_s": time.time() - t0, "precision": precision, **state}


def train_jsd(feats_train, feats_val, cfg: JSDConfig, run_dir=None, resume: bool = True, progress: bool = True,
              seed: int | None = None, E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
              caption_token_ids: Sequence[torch.Tensor] | None = None, stop_after_epoch: int | None = None,
              log=print) -> dict:
    """Train JSD on cached features; returns ``{"model" (best checkpoint), "history", "best", ...}``.

    ``seed`` overrides ``cfg.seed`` (model init and the batch generator). ``run_dir``: resumable checkpoints
    (``last.pt`` each epoch, ``best.pt``); a killed run resumes bit for bit. ``stop_after_epoch`` ends the
    call early on purpose (tests). ``cfg.pec``: probabilistic expansion control on the captions, as in
    :func:`train_d2s` (needs ``caption_token_ids``); off in the paper presets, on for the bundled model.
    """
    cfg = cfg if seed is None else cfg.replace(seed=seed)
    _set_threads(cfg)
    _check_pec(cfg, caption_token_ids, feats_train)
    torch.manual_seed(cfg.seed)
    model = build_model(feats_train, cfg, E_init, special_ids)
    pec = {"p": 0.0}

    def epoch_hook(e0):
        pec["p"] = pec_probability(e0, cfg.epochs, cfg.pec_decay_frac) if cfg.pec else 0.0

    def step_loss(m, h_t, h_i, caps, step, total, gen):
        d_t, d_i = m.dense_text(h_t), m.dense_image(h_i)
        z, cols = m.head.forward_active(torch.cat([d_t, d_i]))
        z_t, z_i = z[:len(d_t)], z[len(d_t):]
        z_t = _pec_mask(z_t, cols, caps, caption_token_ids, pec["p"], gen, m.head.vocab_size)
        S_d = dense_score(d_i, d_t, m.tau)
        S_s = sparse_score(z_i, z_t)
        return jsd_loss(S_d, S_s, z_t, z_i, w1=cfg.w1, w2=cfg.w2, lam1=cfg.lam1, lam2=cfg.lam2,
                        eta_t=reg_weight(step, total, cfg.eta_t, cfg.reg_warmup_frac),
                        eta_i=reg_weight(step, total, cfg.eta_i, cfg.reg_warmup_frac),
                        use_self_kd=cfg.self_kd, detach_teacher=cfg.detach_teacher,
                        teacher_transpose_quirk=cfg.teacher_transpose_quirk, reg=cfg.regulariser)

    return _fit("jsd", model, step_loss, feats_train, feats_val, cfg, lr=cfg.lr, w1=cfg.w1, w2=cfg.w2,
                run_dir=run_dir, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch, log=log,
                epoch_hook=epoch_hook)


def _check_pec(cfg: JSDConfig, caption_token_ids, feats_train) -> None:
    if cfg.pec and (caption_token_ids is None or len(caption_token_ids) != len(feats_train.caption_to_image)):
        raise ValueError("cfg.pec=True needs caption_token_ids: one id tensor per training caption "
                         "(jsdlib.jsd.head.caption_token_ids(captions, jsdlib.jsd.head.minilm_tokenizer()))")


def _pec_mask(z_t: torch.Tensor, cols: torch.Tensor, caps: torch.Tensor, caption_token_ids, p: float,
              gen: torch.Generator, vocab_size: int) -> torch.Tensor:
    """Probabilistic expansion control (D2S): with probability ``p`` (one draw per batch) every caption's ``z``
    is masked to the vocabulary ids of its own tokens, ``z_t <- z_t * 1[j in tokens(caption)]``.

    ``z_t`` holds only the active columns ``cols``. With ``p = 0`` nothing is drawn (runs without PEC keep
    their random stream).
    """
    if p <= 0 or float(torch.rand((), generator=gen)) >= p:
        return z_t
    mask = bag_mask([caption_token_ids[c] for c in caps.tolist()], vocab_size)[:, cols.cpu()]
    return z_t * mask.to(z_t.device)


def train_d2s(feats_train, feats_val, cfg: JSDConfig, run_dir=None, resume: bool = True, progress: bool = True,
              seed: int | None = None, E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
              caption_token_ids: Sequence[torch.Tensor] | None = None, stop_after_epoch: int | None = None,
              log=print) -> dict:
    """Train the D2S baseline: the sparse head alone on the frozen original dense embeddings.

    Loss :func:`d2s_loss` with ``tau_d = cfg.d2s_tau`` and L1 weights ``cfg.d2s_eta_t/i`` (default: JSD's).
    ``cfg.pec``: probabilistic expansion control -- in each batch, with probability
    ``p = pec_probability(epoch)`` (1 -> 0 over 95 % of the epochs, per batch as in D2S's code) the captions'
    ``z`` are masked to their own token ids (``caption_token_ids``, one tensor per training caption). Validation
    and test use unmasked captions.
    """
    cfg = cfg if seed is None else cfg.replace(seed=seed)
    _set_threads(cfg)
    _check_pec(cfg, caption_token_ids, feats_train)
    torch.manual_seed(cfg.seed)
    model = build_model(feats_train, cfg, E_init, special_ids, freeze_final=True, tau_init=cfg.d2s_tau)
    model.tau.requires_grad_(False)  # no gradient reaches it (teacher under no_grad); keep it out of AdamW
    eta_t = cfg.eta_t if cfg.d2s_eta_t is None else cfg.d2s_eta_t
    eta_i = cfg.eta_i if cfg.d2s_eta_i is None else cfg.d2s_eta_i
    pec = {"p": 0.0}

    def epoch_hook(e0):
        pec["p"] = pec_probability(e0, cfg.epochs, cfg.pec_decay_frac) if cfg.pec else 0.0

    def step_loss(m, h_t, h_i, caps, step, total, gen):
        with torch.no_grad():
            d_t, d_i = m.dense_text(h_t), m.dense_image(h_i)
        z, cols = m.head.forward_active(torch.cat([d_t, d_i]))
        z_t, z_i = z[:len(d_t)], z[len(d_t):]
        z_t = _pec_mask(z_t, cols, caps, caption_token_ids, pec["p"], gen, m.head.vocab_size)
        return d2s_loss(sparse_score(z_i, z_t), d_i @ d_t.T, m.tau, z_t, z_i,
                        eta_t=reg_weight(step, total, eta_t, cfg.reg_warmup_frac),
                        eta_i=reg_weight(step, total, eta_i, cfg.reg_warmup_frac), reg=cfg.regulariser)

    lr = cfg.lr if cfg.d2s_lr is None else cfg.d2s_lr
    return _fit("d2s", model, step_loss, feats_train, feats_val, cfg, lr=lr, w1=cfg.w1, w2=cfg.w2,
                run_dir=run_dir, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch, log=log,
                epoch_hook=epoch_hook)


def _set_threads(cfg: JSDConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)


# ----------------------------------------------------------------------------------------------
# Methods of the comparison table (spec §5)
# ----------------------------------------------------------------------------------------------
METHODS = ("dense_original", "d2s", "jsd_sparse", "jsd_dense", "jsd_integrated", "jsd_no_kd", "jsd_frozen_final")
_JSD_SCORE = {"jsd_sparse": "sparse", "jsd_dense": "dense", "jsd_integrated": "integrated"}


def _result(scores: torch.Tensor, feats, eff: dict, extra: dict | None = None) -> dict:
    s = scores.numpy() if torch.is_tensor(scores) else np.asarray(scores)
    r = ranks(s, feats.caption_to_image)
    return {"t2i": t2i_metrics(s, feats.caption_to_image), "rr": reciprocal_ranks(r, 10), **eff, **(extra or {})}


def _trained_summary(res: dict) -> dict:
    hist = res["history"]
    return {"best_epoch": res["best"]["epoch"], "epochs_run": len(hist), "val": res["best"]["val"],
            "precision": res.get("precision"),
            "epoch_s": float(np.mean([h["epoch_s"] for h in hist])) if hist else None,
            "train_s": float(np.mean([h["train_s"] for h in hist])) if hist else None}


def run_methods(names: Sequence[str], feats_train, feats_val, feats_test, cfg: JSDConfig, seed: int | None = None,
                E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
                caption_token_ids: Sequence[torch.Tensor] | None = None, run_root=None, progress: bool = False,
                log=print) -> dict[str, dict]:
    """Every requested method on the same features; ``{name: result}`` (see :func:`run_method`).

    One JSD model serves ``jsd_sparse``, ``jsd_dense`` and ``jsd_integrated``. ``run_root``: resumable run
    folders ``run_root/<method>-seed<k>``.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    seed = cfg.seed if seed is None else seed
    cfg = cfg.replace(seed=seed)
    rd = (lambda tag: None) if run_root is None else (lambda tag: Path(run_root) / f"{tag}-seed{seed}")
    common = dict(E_init=E_init, special_ids=special_ids, progress=progress, log=log)
    out: dict[str, dict] = {}
    if "dense_original" in names:
        D = feats_test.proj["W_t"].shape[0]
        out["dense_original"] = _result(feats_test.dense_scores(), feats_test,
                                        {"terms_q": float(D), "terms_d": float(D), "flops": float(D)},
                                        {"note": "dense vectors: every dimension is active, FLOPs = dense dim"})
    if "d2s" in names:
        res = train_d2s(feats_train, feats_val, cfg, run_dir=rd("d2s"), caption_token_ids=caption_token_ids, **common)
        enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
        out["d2s"] = _result(sparse_product(enc["Z_t"], enc["Z_i"]), feats_test, efficiency(enc), _trained_summary(res))
    jsd_names = [n for n in _JSD_SCORE if n in names]
    if jsd_names:
        res = train_jsd(feats_train, feats_val, cfg, run_dir=rd("jsd"), caption_token_ids=caption_token_ids, **common)
        enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
        S = score_matrices(enc, float(res["model"].tau.detach()), cfg.w1, cfg.w2)
        eff = efficiency(enc)
        D = enc["D_t"].shape[1]
        for n in jsd_names:
            kind = _JSD_SCORE[n]
            e = (eff if kind == "sparse" else
                 {"terms_q": float(D), "terms_d": float(D), "flops": float(D)} if kind == "dense" else
                 {**eff, "flops": eff["flops"] + D, "note": "sparse terms; FLOPs = sparse FLOPs + dense dim"})
            out[n] = _result(S[kind], feats_test, e, _trained_summary(res))
    for n, change in (("jsd_no_kd", {"self_kd": False}), ("jsd_frozen_final", {"freeze_final": True})):
        if n in names:
            res = train_jsd(feats_train, feats_val, cfg.replace(**change), run_dir=rd(n),
                            caption_token_ids=caption_token_ids, **common)
            enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
            out[n] = _result(sparse_product(enc["Z_t"], enc["Z_i"]), feats_test, efficiency(enc), _trained_summary(res))
    return {n: out[n] for n in names}


def run_method(name: str, feats_train, feats_val, feats_test, cfg: JSDConfig, seed: int | None = None, **kw) -> dict:
    """One method: ``{"t2i": {R@1, R@5, R@10, MRR@10}, "rr": per-query reciprocal ranks@10, "terms_q", "terms_d",
    "flops", ...}`` on the test split (training ones also carry best epoch and validation metrics)."""
    return run_methods([name], feats_train, feats_val, feats_test, cfg, seed, **kw)[name]


__all__ = ["dense_score", "sparse_score", "integrated_score", "info_nce", "kd_loss", "teachers", "self_kd",
           "jsd_loss", "d2s_loss", "JSDModel", "build_model", "epoch_batches", "steps_per_epoch", "lr_factor",
           "pec_probability", "encode", "sparse_product", "score_matrices", "split_scores", "efficiency",
           "within_budget", "evaluate_model",
           "train_jsd", "train_d2s", "METHODS", "run_methods", "run_method"]
