"""Top-K retrieval of the bi-encoder within each mention's own domain, and its recall / MRR (the BE's R@64 is the
candidate recall CMC and the cross-encoder rerank from, notebook 05)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from jsdlib.common.metrics import mrr_at_k, success_at_k
from jsdlib.data.zeshel import ZeshelSet
from jsdlib.retrieval.biencoder import SCALE, BiEncoder, cached_encode

PAD_SCORE = -1e4        # score of the padding entries of a top-K list longer than its domain's catalogue


@dataclass
class Retrieval:
    """The BE's top-K of every mention, within the mention's own domain.

    ``query_emb`` (N, d), ``cand_emb`` (M, d): unit vectors; the catalogue is the loaded domains' entities one
    domain after the other (``zset.domains`` order), ``cand_ids[r]`` / ``cand_domain[r]`` name row r.
    ``topk`` (N, K): rows of ``cand_emb``, best first; ``scores`` (N, K) = ``query_emb[n] . cand_emb[topk[n]]``
    (cosines), descending. When a domain has fewer than K entities the list is padded after all of its entities
    with the best out-of-domain rows, scored ``PAD_SCORE`` (-1e4); ``valid`` (N, K) is False there.
    ``gold`` (N,): the gold's row (whether or not it is in ``topk``). ``scale``: the logit scale the BE was
    trained with (softmax over ``scale * scores``).
    """

    query_emb: torch.Tensor
    cand_emb: torch.Tensor
    cand_ids: list
    cand_domain: list
    topk: torch.Tensor
    scores: torch.Tensor
    gold: torch.Tensor
    valid: torch.Tensor
    scale: float = SCALE
    kind: str = ""
    complete: bool = False      # True when K >= every domain's catalogue: every gold rank is exact

    def gold_ranks(self) -> np.ndarray:
        """0-based rank of the gold in the mention's domain (its position in ``topk``; K if not in it)."""
        hit = (self.topk == self.gold[:, None]) & self.valid
        return torch.where(hit.any(1), hit.float().argmax(1), torch.full_like(self.gold, self.topk.shape[1])).numpy()


def retrieve(be: BiEncoder, zset: ZeshelSet, k: int = 1024, progress: bool = True, window: int | None = None,
             batch_size: int = 128) -> Retrieval:
    """Encode (cached) the mentions and the catalogues of their domains, and take each mention's top-``k``
    within its domain (``K = min(k, largest domain catalogue)``; see :class:`Retrieval` for the padding)."""
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    kw = {} if window is None else {"window": window}
    q = cached_encode(be, "queries", [zset.query_text(i, **kw) for i in range(len(zset))], progress, batch_size)
    cand_ids, cand_domain, blocks, offset = [], [], [], {}
    for world in zset.domains:
        docs = zset.documents[world]
        offset[world] = len(cand_ids)
        cand_ids += [d["document_id"] for d in docs]
        cand_domain += [world] * len(docs)
        blocks.append(cached_encode(be, "candidates", [zset.candidate_text(d) for d in docs], progress, batch_size))
    c = torch.cat(blocks) if blocks else torch.zeros(0, be.dim)
    K = min(k, max(len(d) for d in zset.documents.values()))
    N = len(zset)
    topk = torch.empty(N, K, dtype=torch.long)
    scores = torch.empty(N, K)
    valid = torch.zeros(N, K, dtype=torch.bool)
    gold = torch.empty(N, dtype=torch.long)
    for i, m in enumerate(zset.mentions):
        world, row = zset.gold(i)
        gold[i] = offset[world] + row
    for world in zset.domains:
        lo, n_w = offset[world], len(zset.documents[world])
        all_rows = torch.tensor([i for i, m in enumerate(zset.mentions) if m["corpus"] == world], dtype=torch.long)
        k_in = min(K, n_w)
        for rows in all_rows.split(1024):                                  # bounded (1024, n_w) score blocks
            s_in, r_in = (q[rows] @ c[lo:lo + n_w].T).topk(k_in, dim=1)   # ties: torch.topk order
            topk[rows, :k_in], scores[rows, :k_in], valid[rows, :k_in] = r_in + lo, s_in, True
            if k_in < K:                                                    # pad with the best other rows
                s_out = q[rows] @ c.T
                s_out[:, lo:lo + n_w] = -math.inf
                topk[rows, k_in:] = s_out.topk(K - k_in, dim=1).indices
                scores[rows, k_in:] = PAD_SCORE
    complete = K >= max(len(d) for d in zset.documents.values())
    return Retrieval(q, c, cand_ids, cand_domain, topk, scores, gold, valid, SCALE, be.kind, complete)


def retrieval_metrics(ret: Retrieval, ks: Sequence[int] = (1, 16, 64), mrr_k: int = 10) -> dict:
    """R@k (%) and MRR@k (%) of the BE over the mentions (micro), from :meth:`Retrieval.gold_ranks`.

    R@k with k > K is reported only when the lists are complete (every catalogue ranked whole: R@k = 100).
    """
    r = ret.gold_ranks()
    out = {f"R@{k}": success_at_k(r, k) for k in ks if k <= ret.topk.shape[1] or ret.complete}
    out[f"MRR@{mrr_k}"] = mrr_at_k(r, mrr_k)
    out["n"] = len(r)
    return out


__all__ = ["Retrieval", "retrieve", "retrieval_metrics", "PAD_SCORE"]
