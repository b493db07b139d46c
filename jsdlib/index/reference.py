"""Exact top-k of a score matrix, and the brute-force references every index is tested against (arXiv 2508.16707).

Both references materialise all N scores of every query, then rank them under
:data:`jsdlib.index.types.TIE_ORDER`; the exact index and the back ends must return their top-k.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jsdlib.index.types import SearchResult, _check_k, _to_dense, to_csr


def topk_rows(S, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k of every row of a dense score matrix, ordered by score descending then column ascending.

    Vectorised: the k-th largest value per row (``np.partition``) is a threshold; every entry at or above it is
    a candidate (ties can give more than k), candidates are sorted by (row, -score, column) and the first k per
    row are kept.
    """
    S = np.asarray(S)
    if S.ndim != 2:
        raise ValueError(f"topk_rows: need a 2-D score matrix, got shape {S.shape}")
    k = min(_check_k(k), S.shape[1])
    B = S.shape[0]
    if B == 0 or k == 0:
        return np.zeros((B, k), np.int64), np.zeros((B, k), S.dtype)
    kth = -np.partition(-S, k - 1, axis=1)[:, k - 1]
    rows, cols = np.nonzero(S >= kth[:, None])  # row-major: columns ascending within a row
    vals = S[rows, cols]
    order = np.lexsort((cols, -vals, rows))
    rows, cols, vals = rows[order], cols[order], vals[order]
    start = np.searchsorted(rows, np.arange(B))
    rank = np.arange(len(rows)) - start[rows]
    keep = rank < k
    ids = cols[keep].reshape(B, k).astype(np.int64)
    return ids, vals[keep].reshape(B, k)


def postings_work(Q: sp.csr_matrix, df: np.ndarray) -> np.ndarray:
    """Multiply-adds of a sparse product per query row: ``sum_{j: q_j != 0} df_j`` (postings of its terms)."""
    rows = np.repeat(np.arange(Q.shape[0]), np.diff(Q.indptr))
    return np.bincount(rows, weights=df[Q.indices], minlength=Q.shape[0]).astype(np.int64)


def _topk_chunked(score_fn, B: int, N: int, k: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`topk_rows` of ``score_fn(s, e)`` (the score rows s..e-1) over query chunks: never all B x N at once."""
    k = min(_check_k(k), N)
    parts = [topk_rows(score_fn(s, min(s + batch, B)), k) for s in range(0, B, batch)]
    if not parts:
        return np.zeros((0, k), np.int64), np.zeros((0, k))
    return np.vstack([p[0] for p in parts]), np.vstack([p[1] for p in parts])


def brute_force_sparse(Q, D, k: int, batch: int = 256) -> SearchResult:
    """Reference: the full sparse product ``S_s = Q D^T`` (scipy, float64), then :func:`topk_rows` (``batch``
    queries at a time).

    scipy's sparse product does the same multiply-adds as the inverted index (``work`` = postings of the query's
    terms); what makes it brute force is that it materialises and ranks all N scores of every query.
    """
    Q, D = to_csr(Q, "sparse queries", np.float64), to_csr(D, "sparse documents", np.float64)
    if Q.shape[1] != D.shape[1]:
        raise ValueError(f"brute_force_sparse: dimension mismatch: queries span {Q.shape[1]} terms, "
                         f"documents {D.shape[1]}")
    DT = D.T.tocsr()
    ids, scores = _topk_chunked(lambda s, e: (Q[s:e] @ DT).toarray(), Q.shape[0], D.shape[0], k, batch)
    return SearchResult(ids, scores, work=postings_work(Q, np.diff(DT.indptr)), n_docs=D.shape[0])


def brute_force_dense(Q, D, k: int, scale: float = 1.0, batch: int = 256) -> SearchResult:
    """Reference: ``scale * Q D^T`` (float32 matrix product; ``scale = 1/tau`` gives S_d), then :func:`topk_rows`."""
    Q, D = _to_dense(Q, "dense queries"), _to_dense(D, "dense documents")
    if Q.shape[1] != D.shape[1]:
        raise ValueError(f"brute_force_dense: dimension mismatch: queries are {Q.shape[1]}-d, "
                         f"documents {D.shape[1]}-d")
    ids, scores = _topk_chunked(lambda s, e: (Q[s:e] @ D.T) * np.float32(scale), len(Q), len(D), k, batch)
    return SearchResult(ids, scores, work=np.full(len(Q), D.size, np.int64), n_docs=len(D))
