"""CMC's training loss (arXiv 2405.12801): cross-entropy on the gold plus distillation from the retriever::

    L = alpha * CE(s, gold) + (1 - alpha) * KL( softmax(t / T) || softmax(s / T) ),   alpha = 0.2, T = 1

with ``t`` the retriever's scores of the same candidates (the teacher, :func:`teacher_scores`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from jsdlib.cmc.data import RerankData


def cmc_loss(scores: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, alpha: float = 0.2,
             T: float = 1.0) -> tuple[torch.Tensor, dict]:
    """``alpha CE(s, y) + (1 - alpha) KL(softmax(t/T) || softmax(s/T))``, batch mean (the CMC paper).

    KL(p || q) = sum_k p_k (log p_k - log q_k) with p the teacher's distribution. ``teacher=None`` or
    ``alpha=1`` gives the plain CE.
    """
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"cmc_loss: {scores.shape[0]} score rows but {labels.shape[0]} labels")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"cmc_loss: alpha must lie in [0, 1], got {alpha}")
    ce = F.cross_entropy(scores, labels)
    if teacher is None or alpha == 1.0:
        return ce, {"ce": ce.detach(), "kl": torch.zeros(())}
    if teacher.shape != scores.shape:
        raise ValueError(f"cmc_loss: teacher {tuple(teacher.shape)} and scores {tuple(scores.shape)} differ")
    log_p = F.log_softmax(teacher / T, dim=-1)
    log_q = F.log_softmax(scores / T, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    loss = alpha * ce + (1.0 - alpha) * kl
    return loss, {"ce": ce.detach(), "kl": kl.detach()}


def teacher_scores(data: RerankData, q: int, cands: torch.Tensor) -> torch.Tensor:
    """The retriever's scores of ``cands`` for query ``q`` (from ``data.scores``; ``gold_score`` for an inserted gold)."""
    row = data.topk[q]
    where = {int(r): i for i, r in enumerate(row.tolist())}
    out = torch.empty(len(cands))
    for j, c in enumerate(cands.tolist()):
        if c in where:
            out[j] = data.scores[q, where[c]]
        elif c == int(data.gold[q]):
            out[j] = data.gold_score[q]
        else:
            raise KeyError(f"teacher_scores: candidate {c} of query {q} is neither in its top-K nor its gold")
    return out
