"""CMC at inference: rerank every query's top-``k`` candidates by the head's scores ``s_k = X^(2)_0 . X^(2)_k``."""
from __future__ import annotations

import math

import torch

from jsdlib.cmc.data import RerankData
from jsdlib.cmc.config import SELECT_ON
from jsdlib.cmc.model import CMC
from jsdlib.common.metrics import linking_accuracy, list_ranks


@torch.no_grad()
def cmc_rerank(model: CMC, data: RerankData, k: int | None = None, batch: int = 16, cand_emb=None,
               query_emb=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CMC over the retriever's top-``k`` of every query: (reranked rows (N, k), CMC scores (N, k) sorted).

    ``cand_emb`` / ``query_emb`` replace ``data``'s vectors (the finetuned variant's re-encoded catalogue).
    """
    model.eval()
    dev = next(model.parameters()).device
    k = min(k or data.k, data.k)
    C = data.cand_emb if cand_emb is None else cand_emb
    Q = data.query_emb if query_emb is None else query_emb
    rows = data.topk[:, :k].clone()
    scores = torch.full(rows.shape, -math.inf)
    n_valid = data.valid[:, :k].sum(1)
    full = torch.nonzero(n_valid == k).squeeze(1)
    for s in range(0, len(full), batch):
        qs = full[s:s + batch]
        rows[qs], scores[qs] = _ranked(model, Q[qs], C, data.topk[qs, :k], dev)
    for q in torch.nonzero(n_valid < k).squeeze(1).tolist():  # short lists: only the real entries, padding last
        nv = int(n_valid[q])
        r, sc = _ranked(model, Q[q:q + 1], C, data.topk[q:q + 1, :nv], dev)
        rows[q, :nv], scores[q, :nv] = r[0], sc[0]
    return rows, scores


def _ranked(model: CMC, q: torch.Tensor, C: torch.Tensor, top: torch.Tensor, dev) -> tuple[torch.Tensor, torch.Tensor]:
    """CMC's scores of the catalogue rows ``top`` (B, K) for the query vectors ``q`` (B, d): (rows, scores) sorted
    best first (ties keep the retriever's order)."""
    sc = model(q.float().to(dev), C[top].float().to(dev)).cpu()
    o = torch.argsort(sc, dim=1, descending=True, stable=True)
    return torch.gather(top, 1, o), torch.gather(sc, 1, o)


def top1_accuracy(ranked: torch.Tensor, gold: torch.Tensor) -> float:
    """Percentage of rows whose first entry is the gold."""
    return float(100.0 * (ranked[:, 0] == gold).float().mean())


def catalogue_vectors(model: CMC, data: RerankData, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(query vectors, candidate vectors) CMC sees for ``data``: precomputed (frozen) or re-encoded (finetuned)."""
    if model.encoders == "frozen":
        return data.query_emb, data.cand_emb
    return model.encode_queries(data.query_texts, progress=progress), model.encode_catalogue(data.cand_texts,
                                                                                            progress=progress)


def selection_metrics(ranked: torch.Tensor, gold: torch.Tensor, domains, n_reranked: int,
                      select_on: str = "micro_top1") -> tuple[dict, float]:
    """Model selection on a validation ranking: ``(history fields, key)`` for ``select_on``.

    - ``"micro_top1"`` (jsdlib's default): ``val_acc`` = top-1 accuracy over all queries (%), the key.
    - ``"macro_unnorm"`` (the authors', ``main_reranker.py`` ~992): per domain (world) ``w`` the unnormalised
      accuracy ``acc_w = 100 |{q in w : rank_q = 0}| / |w|``, key = ``(1 / W) sum_w acc_w``; the row holds
      ``val_acc`` (micro) and ``val_macro_unnorm`` (the key).
    """
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, got {select_on!r}")
    micro = top1_accuracy(ranked, gold)
    if select_on == "micro_top1":
        return {"val_acc": micro}, micro
    macro = linking_accuracy(list_ranks(ranked, gold), n_reranked, domains)["macro"]["acc_unnorm"]
    return {"val_acc": micro, "val_macro_unnorm": macro}, macro


@torch.no_grad()
def validate_cmc(model: CMC, data: RerankData, k: int = 512, batch: int = 16,
                 select_on: str = "micro_top1") -> tuple[dict, float]:
    """CMC reranks each validation query's top-``k``: :func:`selection_metrics` of the result."""
    q, c = catalogue_vectors(model, data)
    ranked, _ = cmc_rerank(model, data, k, batch, cand_emb=c, query_emb=q)
    return selection_metrics(ranked, data.gold, data.domain, min(k, data.k), select_on)


@torch.no_grad()
def evaluate_cmc(model: CMC, data: RerankData, k: int = 512, batch: int = 16) -> float:
    """Top-1 accuracy (%) of CMC reranking each query's top-``k`` (all queries in the denominator)."""
    q, c = catalogue_vectors(model, data)
    ranked, _ = cmc_rerank(model, data, k, batch, cand_emb=c, query_emb=q)
    return top1_accuracy(ranked, data.gold)
