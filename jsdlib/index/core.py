"""Search over JSD's vectors: an exact inverted index, dense and hybrid search, engine back ends (spec jsd.md §6-7).

Queries are captions, documents are images. With ``q`` / ``x`` a query's and a document's sparse vectors
(non-negative weights over the vocabulary V) and ``u`` / ``v`` their L2-normalised dense vectors::

    s_s(q, x) = sum_{j in V} q_j x_j                 sparse score  (S_s = Z_t Z_i^T)
    s_d(q, x) = u . v / tau                          dense score   (S_d = D_t D_i^T / tau)
    s_x(q, x) = w1 s_d(q, x) + w2 s_s(q, x)          JSD's integrated score (S_x)

**Inverted index.** Term j's *postings list* holds every document with ``x_j != 0`` as (doc id, x_j), in
ascending doc id. Search is term-at-a-time: for each active query term j, walk its postings and add
``q_j x_j`` into a per-document accumulator, then keep the k best. Only documents sharing a term with the
query are touched, and the work is ``sum_{j: q_j != 0} df_j`` multiply-adds, ``df_j`` = length of j's list.

**Cost model (D2S FLOPs).** With ``p_j(D) = df_j / N`` the share of documents using term j and ``p_j(Q)`` the
share of queries using it, the expected number of multiply-adds per (query, document) pair is
``FLOPs = sum_j p_j(Q) p_j(D)`` (spec §6). The measured work of a query set is exactly that times N::

    mean_q postings_touched(q) / N = mean_q sum_j 1[q_j != 0] df_j / N = sum_j p_j(Q) p_j(D)

so :attr:`SearchResult.work` (postings touched per query) divided by N reproduces
:func:`jsdlib.jsd.head.flops` on the same vectors (tested). Brute force costs ``N`` score slots per query
whatever the sparsity, dense search ``N * dim`` multiply-adds (FLOPs = dim = 256).

**Tie order.** Every exact search here ranks by score descending, then document id ascending, and returns
``min(k, N)`` results (documents that share no term with the query score 0 and can fill the list). The
exact index accumulates in float64, term by term in ascending term id and postings in ascending doc id --
the order of scipy's sparse product -- so its scores equal brute force's bit for bit and the two top-k lists
are identical, ties included.

**Back ends** share one small interface (:class:`Backend`): ``build(docs, path=None)``, ``open(path)``,
``search(queries, k, mode)`` -> :class:`SearchResult`, ``save(path)``; :data:`BACKENDS` names them:

* ``exact`` (default): this module's inverted index (sparse), matrix product (dense), and their exact sum
  (hybrid) -- equal to ranking by ``S_x`` (spec §7).
* ``brute_sparse`` / ``brute_dense``: the full score matrix, then top-k (the references).
* ``faiss``: ``IndexFlatIP`` (exact dense inner product, BLAS).
* ``seismic``: Seismic (``pyseismic-lsr``), an *approximate* learned-sparse index (pruned, clustered
  postings with summaries); report its recall@10 against ``exact``.
* ``milvus``: Milvus through ``pymilvus`` -- embedded Milvus Lite on a local ``*.db`` file by default, or a
  server URI (``http://host:19530``) with the same code. Dense (FLAT, IP), sparse (SPARSE_INVERTED_INDEX, IP)
  and hybrid search; hybrid uses ``WeightedRanker(w1 / tau, w2, norm_score=False)`` so that the fused score is
  the raw ``w1 u.v / tau + w2 q.x`` (JSD's ``S_x``, not min-max / arctan-normalised scores). Each sub-search
  returns at most ``candidates`` documents (default ``min(N, 16384)``, Milvus's top-k limit); the fusion is
  exact when ``candidates >= N`` and an approximation (union of the two candidate lists) beyond that.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp

try:  # numba is a dependency; the pure-numpy path is the fallback and the "by hand" reference
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None

TIE_ORDER = "score descending, then document id ascending"
MILVUS_TOPK_LIMIT = 16384  # Milvus refuses a larger limit per (sub-)search


# ----------------------------------------------------------------------------------------------
# Inputs and outputs
# ----------------------------------------------------------------------------------------------
def to_csr(Z, what: str = "sparse vectors", dtype=np.float32) -> sp.csr_matrix:
    """A torch tensor (dense or sparse), numpy array or scipy matrix -> CSR with sorted indices, no explicit zeros."""
    if hasattr(Z, "detach"):  # torch
        Z = Z.detach().cpu()
        if str(Z.layout) != "torch.strided":  # torch sparse COO / CSR
            Z = Z.to_dense()
        Z = Z.numpy()
    if sp.issparse(Z):
        M = sp.csr_matrix(Z, dtype=dtype, copy=True)  # never sort the caller's arrays in place
    else:
        A = np.asarray(Z)
        if A.ndim != 2:
            raise ValueError(f"{what}: need a 2-D (n, |V|) matrix, got shape {A.shape}")
        M = sp.csr_matrix(A.astype(dtype, copy=False))
    if M.ndim != 2:
        raise ValueError(f"{what}: need a 2-D (n, |V|) matrix, got shape {M.shape}")
    if M.nnz and not np.isfinite(M.data).all():
        raise ValueError(f"{what}: weights must be finite")
    M.eliminate_zeros()
    M.sort_indices()
    return M


def _to_dense(X, what: str) -> np.ndarray:
    if hasattr(X, "detach"):
        X = X.detach().cpu().numpy()
    A = np.ascontiguousarray(np.asarray(X, dtype=np.float32))
    if A.ndim != 2:
        raise ValueError(f"{what}: need a 2-D (n, dim) matrix, got shape {A.shape}")
    if not np.isfinite(A).all():
        raise ValueError(f"{what}: values must be finite")
    return A


@dataclass
class Vectors:
    """n vectors on the dense side (``dense``, (n, dim) float32), the sparse side (``sparse``, (n, |V|) CSR), or both.

    Row i of both sides belongs to the same item (image or caption); its id in every back end is i.
    """

    dense: np.ndarray | None = None
    sparse: sp.csr_matrix | None = None

    def __post_init__(self):
        if self.dense is None and self.sparse is None:
            raise ValueError("Vectors: give dense and/or sparse vectors")
        if self.dense is not None:
            self.dense = _to_dense(self.dense, "dense vectors")
        if self.sparse is not None:
            self.sparse = to_csr(self.sparse)
        if self.dense is not None and self.sparse is not None and len(self.dense) != self.sparse.shape[0]:
            raise ValueError(f"Vectors: {len(self.dense)} dense rows but {self.sparse.shape[0]} sparse rows")

    def __len__(self) -> int:
        return len(self.dense) if self.dense is not None else self.sparse.shape[0]

    @property
    def dim(self) -> int | None:
        return None if self.dense is None else self.dense.shape[1]

    @property
    def vocab_size(self) -> int | None:
        return None if self.sparse is None else self.sparse.shape[1]

    def rows(self, idx) -> "Vectors":
        """The vectors of the rows ``idx`` (ids renumbered from 0)."""
        return Vectors(None if self.dense is None else self.dense[idx],
                       None if self.sparse is None else self.sparse[idx])

    @classmethod
    def from_encoded(cls, enc: dict, side: str) -> "Vectors":
        """``side="t"`` (captions, queries) or ``"i"`` (images, documents) of :func:`jsdlib.jsd.core.encode`'s output."""
        if side not in ("t", "i"):
            raise ValueError(f"Vectors.from_encoded: side must be 't' (captions) or 'i' (images), got {side!r}")
        keys = {k.lower(): k for k in enc}
        if f"d_{side}" not in keys and f"z_{side}" not in keys:
            raise KeyError(f"Vectors.from_encoded: no D_{side} / Z_{side} in {sorted(enc)}")
        get = (lambda name: enc[keys[name]] if name in keys else None)
        return cls(get(f"d_{side}"), get(f"z_{side}"))


def _check_queries(q: Vectors, mode: str, dim: int | None, vocab_size: int | None, where: str) -> None:
    if mode in ("dense", "hybrid"):
        if q.dense is None:
            raise ValueError(f"{where}: mode {mode!r} needs dense query vectors")
        if dim is None:
            raise ValueError(f"{where}: this index holds no dense vectors (mode {mode!r})")
        if q.dense.shape[1] != dim:
            raise ValueError(f"{where}: dimension mismatch: dense queries have {q.dense.shape[1]} dimensions, "
                             f"the index holds {dim}-d vectors")
    if mode in ("sparse", "hybrid"):
        if q.sparse is None:
            raise ValueError(f"{where}: mode {mode!r} needs sparse query vectors")
        if vocab_size is None:
            raise ValueError(f"{where}: this index holds no sparse vectors (mode {mode!r})")
        if q.sparse.shape[1] != vocab_size:
            raise ValueError(f"{where}: dimension mismatch: sparse queries span {q.sparse.shape[1]} terms, "
                             f"the index's vocabulary has {vocab_size}")
    if mode not in ("dense", "sparse", "hybrid"):
        raise ValueError(f"{where}: mode must be 'sparse', 'dense' or 'hybrid', got {mode!r}")


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


@dataclass
class SearchResult:
    """Top-k of a batch of queries: ``ids`` (B, k) int64 and ``scores`` (B, k), best first (see ``TIE_ORDER``).

    ``work``: multiply-adds per query where the back end can count them (postings touched for the inverted
    index, ``N * dim`` for dense products); None for engines that do not expose it.
    """

    ids: np.ndarray
    scores: np.ndarray
    work: np.ndarray | None = None
    n_docs: int | None = None

    @property
    def flops(self) -> float | None:
        """Measured multiply-adds per (query, document) pair: ``mean(work) / N`` (D2S FLOPs for sparse search)."""
        if self.work is None or not self.n_docs:
            return None
        return float(np.mean(self.work) / self.n_docs)


def recall_at_k(result_ids: np.ndarray, exact_ids: np.ndarray, k: int = 10) -> float:
    """Mean over queries of ``|top-k(result) & top-k(exact)| / k`` -- an approximate engine against exact search."""
    a, b = np.asarray(result_ids)[:, :k], np.asarray(exact_ids)[:, :k]
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"recall_at_k: {a.shape[0]} result rows against {b.shape[0]} exact rows")
    kk = b.shape[1]
    return float(np.mean([len(set(x.tolist()) & set(y.tolist())) / kk for x, y in zip(a, b)]))


# ----------------------------------------------------------------------------------------------
# Exact top-k of a score matrix, and the brute-force references
# ----------------------------------------------------------------------------------------------
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


# ----------------------------------------------------------------------------------------------
# The inverted index: kernels (numba), then the class
# ----------------------------------------------------------------------------------------------
if numba is not None:
    @njit(cache=True, inline="always")
    def _worse(s1, d1, s2, d2):
        """(s1, d1) ranks below (s2, d2) under TIE_ORDER."""
        return s1 < s2 or (s1 == s2 and d1 > d2)

    @njit(cache=True)
    def _heap_offer(hs, hd, size, k, s, d):
        """Offer (s, d) to a size-k min-heap whose root is the *worst* kept item; returns the new size."""
        if size < k:
            i = size
            hs[i] = s
            hd[i] = d
            size += 1
            while i > 0:  # sift up
                p = (i - 1) // 2
                if _worse(hs[i], hd[i], hs[p], hd[p]):
                    hs[i], hs[p] = hs[p], hs[i]
                    hd[i], hd[p] = hd[p], hd[i]
                    i = p
                else:
                    break
            return size
        if not _worse(hs[0], hd[0], s, d):
            return size
        hs[0] = s
        hd[0] = d
        _sift_down(hs, hd, size)
        return size

    @njit(cache=True)
    def _sift_down(hs, hd, size):
        """Restore the heap of ``size`` items after its root was replaced (the worst item climbs to the root)."""
        i = 0
        while True:
            l, r, m = 2 * i + 1, 2 * i + 2, i
            if l < size and _worse(hs[l], hd[l], hs[m], hd[m]):
                m = l
            if r < size and _worse(hs[r], hd[r], hs[m], hd[m]):
                m = r
            if m == i:
                break
            hs[i], hs[m] = hs[m], hs[i]
            hd[i], hd[m] = hd[m], hd[i]
            i = m

    @njit(cache=True)
    def _heap_drain(hs, hd, size, qi, out_s, out_ids):
        """Empty the heap of ``size`` items into row ``qi`` of the outputs, best first (worst popped first, from the back)."""
        for pos in range(size - 1, -1, -1):
            out_s[qi, pos] = hs[0]
            out_ids[qi, pos] = hd[0]
            last = size - 1
            hs[0], hd[0] = hs[last], hd[last]
            size -= 1
            _sift_down(hs, hd, size)

    @njit(cache=True)
    def _search_range(q0, q1, q_ptr, q_idx, q_val, ptr, docs, w, n_docs, k, acc, out_ids, out_s, out_work):
        """Term-at-a-time search of queries q0..q1-1 with one dense accumulator (zeroed after each query).

        Selection scans all N accumulator slots with a size-k heap: an untouched document holds exactly 0.0,
        the score it has, so the scan ranks every document under TIE_ORDER without tracking which were touched.
        """
        hs = np.empty(k, np.float64)
        hd = np.empty(k, np.int64)
        for qi in range(q0, q1):
            work = 0
            for t in range(q_ptr[qi], q_ptr[qi + 1]):
                j = q_idx[t]
                v = np.float64(q_val[t])
                for p in range(ptr[j], ptr[j + 1]):
                    acc[docs[p]] += v * np.float64(w[p])
                work += ptr[j + 1] - ptr[j]
            size = 0
            for d in range(n_docs):
                if size < k:
                    size = _heap_offer(hs, hd, size, k, acc[d], d)
                elif acc[d] > hs[0]:  # ids ascend: an equal score never beats the root here
                    size = _heap_offer(hs, hd, size, k, acc[d], d)
                acc[d] = 0.0
            _heap_drain(hs, hd, size, qi, out_s, out_ids)
            out_work[qi] = work

    @njit(cache=True, parallel=True)
    def _search_parallel(bounds, q_ptr, q_idx, q_val, ptr, docs, w, n_docs, k, out_ids, out_s, out_work):
        for c in prange(len(bounds) - 1):
            acc = np.zeros(n_docs, np.float64)
            _search_range(bounds[c], bounds[c + 1], q_ptr, q_idx, q_val, ptr, docs, w, n_docs, k, acc,
                          out_ids, out_s, out_work)

    @njit(cache=True)
    def _scores_into(q_ptr, q_idx, q_val, ptr, docs, w, out):
        """Full sparse score rows ``out[q, d] = sum_j q_j x_j`` by walking postings (for the exact hybrid)."""
        for qi in range(len(q_ptr) - 1):
            for t in range(q_ptr[qi], q_ptr[qi + 1]):
                j = q_idx[t]
                v = np.float64(q_val[t])
                for p in range(ptr[j], ptr[j + 1]):
                    out[qi, docs[p]] += v * np.float64(w[p])


class InvertedIndex:
    """Exact sparse search over postings lists (term-major CSC of the documents' sparse matrix).

    ``indptr[j]:indptr[j+1]`` slices term j's postings in ``doc_ids`` (ascending) and ``weights`` (x_j).
    ``engine="numba"`` (default when numba is installed) runs the compiled term-at-a-time kernel (dense float64
    accumulator, then one pass over it with a size-k heap); ``engine="numpy"`` gathers all postings of a query
    at once and ``np.bincount``s them (the same
    numbers, O(N) per query for the accumulator, no compiler).
    """

    FORMAT = "jsdlib-inverted-index-v1"

    def __init__(self, indptr: np.ndarray, doc_ids: np.ndarray, weights: np.ndarray, n_docs: int,
                 engine: str | None = None):
        self.indptr = np.ascontiguousarray(indptr, dtype=np.int64)
        self.doc_ids = np.ascontiguousarray(doc_ids, dtype=np.int64)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.n_docs = int(n_docs)
        ok = (self.indptr.ndim == 1 and len(self.indptr) >= 1 and self.indptr[0] == 0
              and self.indptr[-1] == len(self.doc_ids) == len(self.weights) and not np.any(np.diff(self.indptr) < 0))
        if not ok:
            raise ValueError("InvertedIndex: inconsistent postings arrays (indptr / doc_ids / weights)")
        if len(self.doc_ids) and (self.doc_ids.min() < 0 or self.doc_ids.max() >= self.n_docs):
            raise ValueError(f"InvertedIndex: doc ids outside [0, {self.n_docs})")
        self.engine = engine or ("numba" if numba is not None else "numpy")
        if self.engine not in ("numba", "numpy"):
            raise ValueError(f"InvertedIndex: engine must be 'numba' or 'numpy', got {self.engine!r}")
        if self.engine == "numba" and numba is None:
            raise ImportError("InvertedIndex: engine='numba' needs the numba package (pip install numba)")
        self._ws = None  # reusable accumulator workspace for serial searches

    # -- construction and persistence --------------------------------------------------------
    @classmethod
    def build(cls, Z, engine: str | None = None) -> "InvertedIndex":
        """Postings lists of the documents' sparse vectors ``Z`` ((N, |V|): torch, numpy or scipy)."""
        C = to_csr(Z, "sparse documents").tocsc()
        C.sort_indices()
        return cls(C.indptr, C.indices, C.data, C.shape[0], engine)

    def save(self, path) -> Path:
        """Write the postings to ``path`` (one ``.npz``, atomically: written aside, then renamed)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, format=np.array(self.FORMAT), indptr=self.indptr, doc_ids=self.doc_ids, weights=self.weights,
                 n_docs=np.array(self.n_docs))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path, engine: str | None = None) -> "InvertedIndex":
        """Read an index written by :meth:`save` (no pickle)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"InvertedIndex.load: no index file at {path}")
        with np.load(path, allow_pickle=False) as f:
            if "format" not in f or str(f["format"]) != cls.FORMAT:
                raise ValueError(f"InvertedIndex.load: {path} is not a {cls.FORMAT} file")
            return cls(f["indptr"], f["doc_ids"], f["weights"], int(f["n_docs"]), engine)

    # -- introspection -----------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.doc_ids)

    @property
    def df(self) -> np.ndarray:
        """Postings-list length (document frequency) of every term."""
        return np.diff(self.indptr)

    def term_shares(self) -> np.ndarray:
        """``p_j(D) = df_j / N``."""
        return self.df / max(self.n_docs, 1)

    def postings(self, term: int) -> tuple[np.ndarray, np.ndarray]:
        """(doc ids, weights) of term ``term``'s postings list."""
        if not 0 <= term < self.vocab_size:
            raise IndexError(f"term {term} outside the vocabulary [0, {self.vocab_size})")
        s, e = self.indptr[term], self.indptr[term + 1]
        return self.doc_ids[s:e], self.weights[s:e]

    def expected_flops(self, Q) -> float:
        """D2S FLOPs ``sum_j p_j(Q) p_j(D)`` of the queries ``Q`` against this index (spec §6)."""
        Q = self._queries(Q)
        p_q = np.bincount(Q.indices, minlength=self.vocab_size) / max(Q.shape[0], 1)
        return float(p_q @ self.term_shares())

    # -- search -------------------------------------------------------------------------------
    def _queries(self, Q) -> sp.csr_matrix:
        Q = Q.sparse if isinstance(Q, Vectors) else Q
        if Q is None:
            raise ValueError("InvertedIndex: need sparse query vectors")
        if hasattr(Q, "ndim") and Q.ndim == 1:
            Q = Q[None] if not hasattr(Q, "unsqueeze") else Q.unsqueeze(0)
        Q = to_csr(Q, "sparse queries")
        if Q.shape[1] != self.vocab_size:
            raise ValueError(f"InvertedIndex: dimension mismatch: queries span {Q.shape[1]} terms, the index's "
                             f"vocabulary has {self.vocab_size}")
        return Q

    def _prepare(self, Q, k: int):
        """Checked CSR queries, k capped at the corpus size, and zeroed (ids, scores, work) outputs for them."""
        Q = self._queries(Q)
        k = min(_check_k(k), self.n_docs) if self.n_docs else 0
        B = Q.shape[0]
        return Q, k, np.zeros((B, k), np.int64), np.zeros((B, k), np.float64), np.zeros(B, np.int64)

    def search(self, Q, k: int = 10, threads: int = 1) -> SearchResult:
        """Exact top-k (``TIE_ORDER``) for each query row of ``Q`` ((B, |V|) or one (|V|,) vector).

        ``threads > 1`` splits the batch over numba threads (one accumulator each).
        """
        Q, k, ids, scores, work = self._prepare(Q, k)
        B = Q.shape[0]
        if B == 0 or k == 0:
            return SearchResult(ids, scores, work, self.n_docs)
        q_ptr = Q.indptr.astype(np.int64)
        q_idx = Q.indices.astype(np.int64)
        if self.engine == "numpy":
            return self._search_numpy(Q, k)
        if threads <= 1 or B == 1:
            if self._ws is None:
                self._ws = np.zeros(self.n_docs, np.float64)
            _search_range(0, B, q_ptr, q_idx, Q.data, self.indptr, self.doc_ids, self.weights, self.n_docs, k,
                          self._ws, ids, scores, work)
        else:
            n_chunks = min(int(threads), B)
            bounds = np.linspace(0, B, n_chunks + 1).astype(np.int64)
            _search_parallel(bounds, q_ptr, q_idx, Q.data, self.indptr, self.doc_ids, self.weights, self.n_docs, k,
                             ids, scores, work)
        return SearchResult(ids, scores, work, self.n_docs)

    def _search_numpy(self, Q: sp.csr_matrix, k: int) -> SearchResult:
        """Pure numpy: per query, gather every posting of its terms at once and ``bincount`` them by doc id."""
        B = Q.shape[0]
        ids = np.zeros((B, k), np.int64)
        scores = np.zeros((B, k), np.float64)
        work = np.zeros(B, np.int64)
        for qi in range(B):  # a loop over queries, never over postings
            terms = Q.indices[Q.indptr[qi]:Q.indptr[qi + 1]]
            vals = Q.data[Q.indptr[qi]:Q.indptr[qi + 1]].astype(np.float64)
            starts, lens = self.indptr[terms], self.df[terms]
            total = int(lens.sum())
            # positions of all postings of the query's terms, without a Python loop: ranges starts[t]..+lens[t]
            pos = np.repeat(starts - np.cumsum(lens) + lens, lens) + np.arange(total)
            contrib = np.repeat(vals, lens) * self.weights[pos].astype(np.float64)
            acc = np.bincount(self.doc_ids[pos], weights=contrib, minlength=self.n_docs)
            i, s = topk_rows(acc[None], k)
            ids[qi], scores[qi], work[qi] = i[0], s[0], total
        return SearchResult(ids, scores, work, self.n_docs)

    def scores(self, Q) -> np.ndarray:
        """The full (B, N) float64 sparse score matrix, computed by walking postings (no dense product)."""
        Q = self._queries(Q)
        out = np.zeros((Q.shape[0], self.n_docs), np.float64)
        if self.engine == "numba":
            _scores_into(Q.indptr.astype(np.int64), Q.indices.astype(np.int64), Q.data, self.indptr, self.doc_ids,
                         self.weights, out)
        else:
            D = sp.csc_matrix((self.weights.astype(np.float64), self.doc_ids, self.indptr),
                              shape=(self.n_docs, self.vocab_size))
            out = (Q.astype(np.float64) @ D.T.tocsr()).toarray()
        return out


# ----------------------------------------------------------------------------------------------
# Hybrid scores (JSD's integrated score)
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class HybridWeights:
    """``s_x = w1 * (u . v) / tau + w2 * (q . x)`` -- the integrated score S_x at test time (model's tau)."""

    w1: float
    w2: float
    tau: float = 1.0

    def __post_init__(self):
        for name in ("w1", "w2", "tau"):
            v = getattr(self, name)
            try:
                ok = not isinstance(v, (str, bytes)) and math.isfinite(float(v))
            except (TypeError, ValueError):
                ok = False
            if not ok:
                raise ValueError(f"HybridWeights: {name} must be a finite number, got {v!r}")
        if not (self.tau > 0):
            raise ValueError(f"HybridWeights: tau must be > 0, got {self.tau}")

    @classmethod
    def from_model(cls, model, w1: float, w2: float) -> "HybridWeights":
        """The weights of a trained :class:`jsdlib.jsd.core.JSDModel` (its learned temperature)."""
        return cls(float(w1), float(w2), float(model.tau.detach()))


def hybrid_scores(S_d_raw: np.ndarray, S_s: np.ndarray, hw: HybridWeights) -> np.ndarray:
    """``S_x = w1 S_d + w2 S_s`` with ``S_d = S_d_raw / tau`` (same arithmetic as :func:`jsdlib.jsd.core.score_matrices`)."""
    return hw.w1 * (S_d_raw / hw.tau) + hw.w2 * S_s


# ----------------------------------------------------------------------------------------------
# Back ends
# ----------------------------------------------------------------------------------------------
def _optional(module: str, backend: str, pip_name: str):
    """Import an engine's module, or say which package the back end needs."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - the engines are dependencies
        raise ImportError(f"the {backend} back end needs {pip_name} (pip install {pip_name})") from e


class Backend:
    """One small interface over every search back end.

    ``Backend.build(docs, path=None, **options)`` indexes :class:`Vectors` (and writes them under ``path`` when
    given), ``Backend.open(path)`` reopens a saved index (after a restart), ``search(queries, k, mode, hybrid)``
    returns a :class:`SearchResult` with ids = row numbers of ``docs``; ``mode`` is one of ``self.modes``
    (``"sparse"``, ``"dense"``, ``"hybrid"``), ``hybrid`` a :class:`HybridWeights` for ``mode="hybrid"``.
    """

    name = "base"
    modes: tuple = ()
    approximate = False

    n_docs: int = 0
    dim: int | None = None
    vocab_size: int | None = None

    @classmethod
    def build(cls, docs: Vectors, path=None, **options) -> "Backend":
        raise NotImplementedError

    @classmethod
    def open(cls, path, **options) -> "Backend":
        raise NotImplementedError

    def save(self, path) -> None:
        raise NotImplementedError

    def search(self, queries: Vectors, k: int = 10, mode: str = "sparse",
               hybrid: HybridWeights | None = None) -> SearchResult:
        raise NotImplementedError

    def _check(self, queries, k, mode, hybrid) -> tuple[Vectors, int]:
        if not isinstance(queries, Vectors):
            raise TypeError(f"{self.name}: queries must be a jsdlib.index.core.Vectors, got {type(queries).__name__}")
        if mode not in self.modes:
            raise ValueError(f"{self.name}: mode {mode!r} not supported (supported: {', '.join(self.modes)})")
        _check_queries(queries, mode, self.dim, self.vocab_size, self.name)
        if mode == "hybrid" and not isinstance(hybrid, HybridWeights):
            raise ValueError(f"{self.name}: mode 'hybrid' needs hybrid=HybridWeights(w1, w2, tau)")
        return queries, min(_check_k(k), self.n_docs)


def _check_corpus(docs, backend: str) -> None:
    """Refuse an empty corpus before an engine sees it (faiss asserts, Seismic panics in Rust)."""
    if not isinstance(docs, Vectors):
        raise TypeError(f"{backend}: documents must be a jsdlib.index.core.Vectors, got {type(docs).__name__}")
    if len(docs) == 0:
        raise ValueError(f"{backend}: the corpus is empty (0 documents); index at least one document")


def _meta_path(path) -> Path:
    return Path(path) / "meta.json"


def _write_meta(path, meta: dict) -> None:
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tmp = _meta_path(path).with_suffix(".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, _meta_path(path))


def _read_meta(path, backend: str) -> dict:
    m = _meta_path(path)
    if not m.is_file():
        raise FileNotFoundError(f"{backend}: no saved index at {path} (missing {m.name})")
    try:
        meta = json.loads(m.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{backend}: index metadata {m} is unreadable ({e}); rebuild the index") from None
    if not isinstance(meta, dict) or meta.get("backend") != backend:
        raise ValueError(f"{backend}: {path} holds a {meta.get('backend') if isinstance(meta, dict) else None!r} "
                         "index")
    return meta


class ExactBackend(Backend):
    """Exact search: the inverted index (sparse), the dense matrix product, and their exact sum (hybrid).

    Hybrid: the full sparse score rows come from the postings (:meth:`InvertedIndex.scores`), the dense rows from
    ``Q_d D_d^T``; ``S_x = w1 S_d / tau + w2 S_s`` then :func:`topk_rows` -- the ranking by S_x (spec §7).
    """

    name = "exact"
    modes = ("sparse", "dense", "hybrid")

    def __init__(self, index: InvertedIndex | None, dense: np.ndarray | None, threads: int = 1):
        if index is None and dense is None:
            raise ValueError("ExactBackend: nothing to search")
        self.index, self.dense = index, dense
        self.n_docs = index.n_docs if index is not None else len(dense)
        if index is not None and dense is not None and len(dense) != index.n_docs:
            raise ValueError("ExactBackend: dense and sparse sides differ in length")
        self.dim = None if dense is None else dense.shape[1]
        self.vocab_size = None if index is None else index.vocab_size
        self.threads = threads

    @classmethod
    def build(cls, docs: Vectors, path=None, threads: int = 1, engine: str | None = None) -> "ExactBackend":
        _check_corpus(docs, cls.name)
        b = cls(None if docs.sparse is None else InvertedIndex.build(docs.sparse, engine), docs.dense, threads)
        if path is not None:
            b.save(path)
        return b

    def save(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.index is not None:
            self.index.save(path / "postings.npz")
        if self.dense is not None:
            np.save(path / "dense.npy", self.dense)
        _write_meta(path, {"backend": self.name, "n_docs": self.n_docs, "dim": self.dim,
                           "vocab_size": self.vocab_size})

    @classmethod
    def open(cls, path, threads: int = 1, engine: str | None = None) -> "ExactBackend":
        meta = _read_meta(path, cls.name)
        path = Path(path)
        index = InvertedIndex.load(path / "postings.npz", engine) if meta["vocab_size"] is not None else None
        dense = np.load(path / "dense.npy", allow_pickle=False) if meta["dim"] is not None else None
        return cls(index, dense, threads)

    def search(self, queries, k=10, mode="sparse", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        if mode == "sparse":
            return self.index.search(queries.sparse, k, threads=self.threads)
        dense_work = np.full(len(queries), self.dense.size, np.int64)
        if mode == "dense":
            ids, scores = _topk_chunked(lambda s, e: queries.dense[s:e] @ self.dense.T, len(queries), self.n_docs, k,
                                        256)
            return SearchResult(ids, scores, dense_work, self.n_docs)
        def s_x(s, e):
            return hybrid_scores((queries.dense[s:e] @ self.dense.T).astype(np.float64),
                                 self.index.scores(queries.sparse[s:e]), hybrid)

        ids, scores = _topk_chunked(s_x, len(queries), self.n_docs, k, 256)
        return SearchResult(ids, scores, dense_work + postings_work(queries.sparse, self.index.df), self.n_docs)


class BruteForceBackend(Backend):
    """The references: the full score matrix, then exact top-k (``brute_sparse`` / ``brute_dense`` in tables)."""

    name = "brute"
    modes = ("sparse", "dense", "hybrid")

    batch = 256  # queries scored at once (bounds memory at batch x N)

    def __init__(self, docs: Vectors):
        self.docs = docs
        self.n_docs, self.dim, self.vocab_size = len(docs), docs.dim, docs.vocab_size
        self._DT = None if docs.sparse is None else docs.sparse.astype(np.float64).T.tocsr()

    @classmethod
    def build(cls, docs: Vectors, path=None) -> "BruteForceBackend":
        _check_corpus(docs, cls.name)
        b = cls(docs)
        if path is not None:
            b.save(path)
        return b

    def save(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        if self.docs.sparse is not None:
            sp.save_npz(path / "sparse.npz", self.docs.sparse)
        if self.docs.dense is not None:
            np.save(path / "dense.npy", self.docs.dense)
        _write_meta(path, {"backend": self.name, "n_docs": self.n_docs, "dim": self.dim,
                           "vocab_size": self.vocab_size})

    @classmethod
    def open(cls, path) -> "BruteForceBackend":
        meta = _read_meta(path, cls.name)
        path = Path(path)
        return cls(Vectors(np.load(path / "dense.npy", allow_pickle=False) if meta["dim"] is not None else None,
                           sp.load_npz(path / "sparse.npz") if meta["vocab_size"] is not None else None))

    def search(self, queries, k=10, mode="sparse", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        full = np.full(len(queries), self.n_docs, np.int64)  # N pairs per query

        def scores(s, e):
            if mode == "sparse":
                return (queries.sparse[s:e].astype(np.float64) @ self._DT).toarray()
            if mode == "dense":
                return queries.dense[s:e] @ self.docs.dense.T
            return hybrid_scores((queries.dense[s:e] @ self.docs.dense.T).astype(np.float64),
                                 (queries.sparse[s:e].astype(np.float64) @ self._DT).toarray(), hybrid)

        ids, top = _topk_chunked(scores, len(queries), self.n_docs, k, self.batch)
        work = 0 if mode == "sparse" else full * self.dim
        if mode != "dense":
            work = work + postings_work(queries.sparse, np.diff(self._DT.indptr))
        return SearchResult(ids, top, work, self.n_docs)


class FaissBackend(Backend):
    """Dense search with faiss ``IndexFlatIP`` (exact inner product; its tie order is faiss's own)."""

    name = "faiss"
    modes = ("dense",)

    def __init__(self, index):
        self.index = index
        self.n_docs, self.dim = int(index.ntotal), int(index.d)

    @staticmethod
    def _faiss():
        return _optional("faiss", "faiss", "faiss-cpu")

    @classmethod
    def build(cls, docs: Vectors, path=None) -> "FaissBackend":
        _check_corpus(docs, cls.name)
        if docs.dense is None:
            raise ValueError("faiss: needs dense document vectors")
        faiss = cls._faiss()
        index = faiss.IndexFlatIP(docs.dim)
        index.add(docs.dense)
        b = cls(index)
        if path is not None:
            b.save(path)
        return b

    def save(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self._faiss().write_index(self.index, str(path / "dense.faiss"))
        _write_meta(path, {"backend": self.name, "n_docs": self.n_docs, "dim": self.dim, "vocab_size": None})

    @classmethod
    def open(cls, path) -> "FaissBackend":
        _read_meta(path, cls.name)
        return cls(cls._faiss().read_index(str(Path(path) / "dense.faiss")))

    def search(self, queries, k=10, mode="dense", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        scores, ids = self.index.search(queries.dense, k)
        return SearchResult(ids.astype(np.int64), scores, np.full(len(queries), self.n_docs * self.dim, np.int64),
                            self.n_docs)


@contextmanager
def _quiet_stdout(enabled: bool = True):
    """Silence file descriptor 1 (Seismic's Rust code prints progress there, bypassing ``sys.stdout``)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved, devnull = os.dup(1), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class SeismicBackend(Backend):
    """Seismic (``pyseismic-lsr``): approximate sparse search over pruned, clustered postings with summaries.

    Documents enter by integer component id (``SeismicDataset.add_documents_by_id``), queries address
    component j as the string ``"j"``. Build options: ``n_postings`` (postings kept per term after pruning;
    default ``max(500, 2 * mean df)``), ``centroid_fraction``, ``summary_energy``; search options ``query_cut``
    (the query's heaviest terms used) and ``heap_factor`` (cluster skipping; 1.0 = most conservative).
    Documents without any active term are not indexed (Seismic skips them) and never returned.
    """

    name = "seismic"
    modes = ("sparse",)
    approximate = True

    def __init__(self, index, n_docs: int, vocab_size: int, query_cut: int = 50, heap_factor: float = 0.9):
        self.index, self.n_docs, self.vocab_size = index, int(n_docs), int(vocab_size)
        self.query_cut, self.heap_factor = int(query_cut), float(heap_factor)

    @staticmethod
    def _seismic():
        return _optional("seismic", "seismic", "pyseismic-lsr")

    @classmethod
    def build(cls, docs: Vectors, path=None, n_postings: int | None = None, centroid_fraction: float = 0.1,
              summary_energy: float = 0.4, query_cut: int = 50, heap_factor: float = 0.9,
              threads: int = 1, verbose: bool = False) -> "SeismicBackend":
        """Index ``docs.sparse``; ``n_postings`` default ``max(500, 2 * mean df)`` (keeps most of a small corpus).

        ``verbose=False`` silences Seismic's own progress lines (printed by its Rust code to file descriptor 1).
        """
        _check_corpus(docs, cls.name)
        if docs.sparse is None:
            raise ValueError("seismic: needs sparse document vectors")
        seismic = cls._seismic()
        Z = docs.sparse
        ds = seismic.SeismicDataset()
        ds.add_documents_by_id([str(i) for i in range(Z.shape[0])], Z.indices.astype(np.int64),
                               Z.data.astype(np.float32), Z.indptr.astype(np.int64))
        if n_postings is None:
            df = np.bincount(Z.indices, minlength=Z.shape[1])
            n_postings = int(max(500, 2 * df[df > 0].mean())) if Z.nnz else 500
        with _quiet_stdout(not verbose):
            index = seismic.SeismicIndex.build_from_dataset(ds, n_postings=int(n_postings),
                                                            centroid_fraction=float(centroid_fraction),
                                                            summary_energy=float(summary_energy),
                                                            num_threads=int(threads))
        b = cls(index, Z.shape[0], Z.shape[1], query_cut, heap_factor)
        b.options = {"n_postings": int(n_postings), "centroid_fraction": centroid_fraction,
                     "summary_energy": summary_energy}
        if path is not None:
            b.save(path)
        return b

    def save(self, path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with _quiet_stdout():
            self.index.save(str(path / "sparse"))  # writes sparse.index.seismic
        _write_meta(path, {"backend": self.name, "n_docs": self.n_docs, "dim": None, "vocab_size": self.vocab_size,
                           "query_cut": self.query_cut, "heap_factor": self.heap_factor})

    @classmethod
    def open(cls, path, **search_options) -> "SeismicBackend":
        meta = _read_meta(path, cls.name)
        with _quiet_stdout():
            index = cls._seismic().SeismicIndex.load(str(Path(path) / "sparse.index.seismic"))
        opts = {"query_cut": meta["query_cut"], "heap_factor": meta["heap_factor"], **search_options}
        return cls(index, meta["n_docs"], meta["vocab_size"], **opts)

    def search(self, queries, k=10, mode="sparse", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        seismic = self._seismic()
        st = seismic.get_seismic_string()
        Q = queries.sparse
        ids = np.full((Q.shape[0], k), -1, np.int64)
        scores = np.full((Q.shape[0], k), -np.inf, np.float32)
        for qi in range(Q.shape[0]):  # one engine call per query (its own latency is what we measure)
            s, e = Q.indptr[qi], Q.indptr[qi + 1]
            if s == e:
                continue
            comps = np.asarray(Q.indices[s:e].astype(str), dtype=st)
            res = self.index.search(query_id=str(qi), query_components=comps,
                                    query_values=Q.data[s:e].astype(np.float32), k=k,
                                    query_cut=self.query_cut, heap_factor=self.heap_factor)
            for r, (_, score, doc) in enumerate(res[:k]):
                ids[qi, r], scores[qi, r] = int(doc), score
        return SearchResult(ids, scores, None, self.n_docs)


class _NotImplementedFilter:
    """Drops grpc's log record for RPCs the embedded server does not implement (pymilvus probes AllocTimestamp)."""

    @staticmethod
    def filter(record) -> bool:
        return "Method not implemented" not in record.getMessage()


def _hush_milvus_lite() -> None:
    import logging

    log = logging.getLogger("grpc._server")
    if not any(isinstance(f, _NotImplementedFilter) for f in log.filters):
        log.addFilter(_NotImplementedFilter())


class MilvusBackend(Backend):
    """Milvus via ``pymilvus``: Milvus Lite on a local ``*.db`` file (default) or a server URI, same code.

    One collection with fields ``id`` (INT64, primary = row number), ``dense`` (FLOAT_VECTOR, FLAT index, IP) and
    ``sparse`` (SPARSE_FLOAT_VECTOR, SPARSE_INVERTED_INDEX, IP); the collection property ``jsdlib`` stores
    ``{"dim", "vocab_size", "n_docs"}`` so that a reopened index checks query dimensions. Hybrid search runs
    one dense and one sparse sub-search (``candidates`` results each) and fuses them with
    ``WeightedRanker(w1 / tau, w2, norm_score=False)``: fused score = ``w1 u.v / tau + w2 q.x`` = S_x, exact for
    every document in both candidate lists (all of them when ``candidates >= N``).
    """

    name = "milvus"
    modes = ("sparse", "dense", "hybrid")

    def __init__(self, client, uri: str, collection: str, meta: dict, candidates: int | None = None):
        self.client, self.uri, self.collection = client, uri, collection
        self.n_docs, self.dim, self.vocab_size = int(meta["n_docs"]), meta.get("dim"), meta.get("vocab_size")
        self.candidates = int(candidates or min(self.n_docs, MILVUS_TOPK_LIMIT))

    @staticmethod
    def connect(uri: str, timeout: float = 10.0):
        """A ``MilvusClient`` for ``uri``, or a clear error (bad scheme, missing folder, server unreachable)."""
        try:
            from pymilvus import MilvusClient
        except ImportError as e:  # pragma: no cover
            raise ImportError("the milvus back end needs pymilvus and milvus-lite (pip install pymilvus milvus-lite)") \
                from e
        uri = str(uri)
        remote = uri.startswith(("http://", "https://", "tcp://", "unix:"))
        if not remote:
            if not uri.endswith(".db"):
                raise ValueError(f"milvus: bad URI {uri!r}: give a local Milvus Lite file ending in '.db' "
                                 "(e.g. 'index/jsd.db') or a server URI such as 'http://localhost:19530'")
            if not Path(uri).parent.is_dir():
                raise ValueError(f"milvus: bad URI {uri!r}: folder {str(Path(uri).parent)!r} does not exist")
        if not remote:
            _hush_milvus_lite()
        try:
            return MilvusClient(uri, timeout=timeout)
        except Exception as e:  # pymilvus raises its own exception types
            raise ConnectionError(f"milvus: cannot connect to {uri!r}: {e}") from e

    @classmethod
    def build(cls, docs: Vectors, path=None, collection: str = "jsd", batch: int = 5000, overwrite: bool = True,
              candidates: int | None = None) -> "MilvusBackend":
        """Create ``collection`` at ``path`` (a ``.db`` file or a server URI; default ``milvus.db`` here) and insert."""
        from pymilvus import DataType

        _check_corpus(docs, cls.name)
        uri = str(path or "milvus.db")
        client = cls.connect(uri)
        if client.has_collection(collection):
            if not overwrite:
                raise ValueError(f"milvus: collection {collection!r} already exists at {uri!r} (overwrite=False)")
            client.drop_collection(collection)
        meta = {"n_docs": len(docs), "dim": docs.dim, "vocab_size": docs.vocab_size, "format": "jsdlib-milvus-v1"}
        schema = client.create_schema(auto_id=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        ip = client.prepare_index_params()
        if docs.dense is not None:
            schema.add_field("dense", DataType.FLOAT_VECTOR, dim=docs.dim)
            ip.add_index("dense", index_type="FLAT", metric_type="IP")
        if docs.sparse is not None:
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
        client.create_collection(collection, schema=schema, index_params=ip, properties={"jsdlib": json.dumps(meta)})
        for s in range(0, len(docs), batch):
            e = min(s + batch, len(docs))
            rows = [{"id": i} for i in range(s, e)]
            if docs.dense is not None:
                for r, v in zip(rows, docs.dense[s:e]):
                    r["dense"] = v
            if docs.sparse is not None:
                Z = docs.sparse[s:e]
                for r, i in zip(rows, range(e - s)):
                    a, b = Z.indptr[i], Z.indptr[i + 1]
                    r["sparse"] = dict(zip(Z.indices[a:b].tolist(), Z.data[a:b].tolist()))
            client.insert(collection, rows)
        client.flush(collection)
        client.load_collection(collection)
        return cls(client, uri, collection, meta, candidates)

    @classmethod
    def open(cls, path, collection: str = "jsd", candidates: int | None = None) -> "MilvusBackend":
        """Reopen a collection written by :meth:`build` (a restart: new client, same file)."""
        uri = str(path)
        remote = uri.startswith(("http://", "https://", "tcp://", "unix:"))
        if not remote and not Path(uri).exists():  # a file, or (milvus-lite 3) a folder
            raise FileNotFoundError(f"milvus: no Milvus Lite file at {uri!r}")
        client = cls.connect(uri)
        if not client.has_collection(collection):
            raise ValueError(f"milvus: no collection {collection!r} at {uri!r}")
        props = client.describe_collection(collection).get("properties") or {}
        try:
            meta = json.loads(props.get("jsdlib", ""))
            assert meta.get("format") == "jsdlib-milvus-v1"
        except (ValueError, AssertionError):
            raise ValueError(f"milvus: collection {collection!r} at {uri!r} was not written by jsdlib "
                             "(no dimension metadata)") from None
        client.load_collection(collection)
        b = cls(client, uri, collection, meta, candidates)
        rows = int(client.get_collection_stats(collection).get("row_count", -1))
        if rows != b.n_docs:  # e.g. a damaged manifest: Milvus Lite opens it and silently finds nothing
            b.close()
            raise ValueError(f"milvus: collection {collection!r} at {uri!r} holds {rows} rows but was built with "
                             f"{b.n_docs} documents (damaged store?); rebuild it with `jsdlib index build`")
        return b

    def save(self, path=None) -> None:
        """Milvus persists on insert; ``flush`` makes sure everything is on disk (``path`` must be this URI)."""
        if path is not None and str(path) != self.uri:
            raise ValueError(f"milvus: the collection lives at {self.uri!r}; it cannot be saved elsewhere")
        self.client.flush(self.collection)

    def close(self) -> None:
        """Close the client; for Milvus Lite also stop its embedded server so the ``.db`` can be reopened elsewhere."""
        self.client.close()
        if not self.uri.startswith(("http://", "https://", "tcp://", "unix:")):
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:  # pragma: no cover - older milvus-lite: the server stops at exit
                return
            server_manager_instance.release_server(self.uri)

    @staticmethod
    def _sparse_rows(Q: sp.csr_matrix) -> list[dict]:
        return [dict(zip(Q.indices[Q.indptr[i]:Q.indptr[i + 1]].tolist(), Q.data[Q.indptr[i]:Q.indptr[i + 1]].tolist()))
                for i in range(Q.shape[0])]

    def search(self, queries, k=10, mode="sparse", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        from pymilvus import AnnSearchRequest, WeightedRanker

        if mode == "dense":
            res = self.client.search(self.collection, data=list(queries.dense), anns_field="dense", limit=k,
                                     search_params={"metric_type": "IP"})
        elif mode == "sparse":
            res = self.client.search(self.collection, data=self._sparse_rows(queries.sparse), anns_field="sparse",
                                     limit=k, search_params={"metric_type": "IP"})
        else:
            res = []
            dense_rows, sparse_rows = list(queries.dense), self._sparse_rows(queries.sparse)
            ranker = WeightedRanker(hybrid.w1 / hybrid.tau, hybrid.w2, norm_score=False)
            for dq, sq in zip(dense_rows, sparse_rows):  # hybrid_search takes one query per call
                reqs = [AnnSearchRequest(data=[dq], anns_field="dense", param={"metric_type": "IP"},
                                         limit=self.candidates),
                        AnnSearchRequest(data=[sq], anns_field="sparse", param={"metric_type": "IP"},
                                         limit=self.candidates)]
                res.append(self.client.hybrid_search(self.collection, reqs, ranker, limit=k)[0])
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        for qi, hits in enumerate(res):
            for r, h in enumerate(list(hits)[:k]):
                ids[qi, r], scores[qi, r] = int(h["id"]), h["distance"]
        return SearchResult(ids, scores, None, self.n_docs)


BACKENDS: dict[str, type] = {"exact": ExactBackend, "brute": BruteForceBackend, "faiss": FaissBackend,
                             "seismic": SeismicBackend, "milvus": MilvusBackend}


class IndexMismatchError(ValueError):
    """A saved index was built from other documents (split, model, back end, size) than a search asks for."""


_REMOTE = ("http://", "https://", "tcp://", "unix:")


def _provenance_file(name: str, path) -> Path | None:
    """Where an index records what it was built from: its ``meta.json`` (Milvus Lite: ``<file>.jsdlib.json``)."""
    if name == "milvus":
        return None if str(path).startswith(_REMOTE) else Path(str(path) + ".jsdlib.json")
    return _meta_path(path)


def _sha256(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _index_files(path) -> dict[str, str]:
    """sha256 of every file of a saved index folder except its ``meta.json``."""
    return {p.name: _sha256(p) for p in sorted(Path(path).iterdir())
            if p.is_file() and p.name != "meta.json" and not p.name.endswith(".tmp")}


def record_provenance(name: str, path, provenance: dict) -> None:
    """Add ``provenance`` (e.g. split, model digest; plus back end and document count) to a saved index, and the
    sha256 of each of its files (folder back ends; :func:`open_backend` checks them)."""
    f = _provenance_file(name, path)
    if f is None:
        return
    meta = json.loads(f.read_text()) if f.is_file() and name != "milvus" else {}
    meta["provenance"] = dict(provenance)
    if name != "milvus":
        meta["files"] = _index_files(path)
    tmp = f.with_name(f.name + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, f)


def check_provenance(name: str, path, expected: dict) -> None:
    """Raise :class:`IndexMismatchError` unless the index at ``path`` was built from ``expected`` (key by key)."""
    f = _provenance_file(name, path)
    if f is None:
        return
    try:
        got = json.loads(f.read_text()).get("provenance") if f.is_file() else None
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexMismatchError(f"{name}: index metadata {f} is unreadable ({e}); rebuild the index") from None
    if not isinstance(got, dict):
        raise IndexMismatchError(f"{name}: the index at {path} does not record what it was built from (split, "
                                 "model); rebuild it with `jsdlib index build`")
    bad = [f"{k}: index {got.get(k)!r}, asked {v!r}" for k, v in expected.items() if got.get(k) != v]
    if bad:
        raise IndexMismatchError(f"{name}: the index at {path} was built from other documents ({'; '.join(bad)}); "
                                 "search with the index's own settings or rebuild it with `jsdlib index build`")
    files = json.loads(f.read_text()).get("files") if name != "milvus" else None
    for fname, digest in (files or {}).items():
        p = Path(path) / fname
        if not p.is_file() or _sha256(p) != digest:
            raise ValueError(f"{name}: index file {p} is {'missing' if not p.is_file() else 'corrupted'} (its "
                             "sha256 differs from the one recorded at build time); rebuild it with `jsdlib index build`")


def build_backend(name: str, docs: Vectors, path=None, provenance: dict | None = None, **options) -> Backend:
    """``BACKENDS[name].build(docs, path, **options)`` with a clear error for an unknown name.

    ``provenance`` (with ``path``): what the documents are (e.g. ``{"split": "test", "model": digest}``), recorded
    with the index together with the back end and the document count; :func:`open_backend` checks it.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown back end {name!r}; choose from {', '.join(BACKENDS)}")
    b = BACKENDS[name].build(docs, path, **options)
    if path is not None and provenance is not None:
        record_provenance(name, path, {**provenance, "backend": name, "n_docs": len(docs)})
    return b


def open_backend(name: str, path, expect: dict | None = None, **options) -> Backend:
    """Reopen a back end saved at ``path`` (a folder; for Milvus the ``.db`` file or server URI).

    ``expect``: what the caller searches (e.g. ``{"split", "model", "n_docs"}``); a saved index built from
    anything else raises :class:`IndexMismatchError` instead of returning ids of other documents.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown back end {name!r}; choose from {', '.join(BACKENDS)}")
    if expect is not None:
        exists = Path(path).exists() if name == "milvus" else _meta_path(path).is_file()
        if not exists and not str(path).startswith(_REMOTE):
            raise FileNotFoundError(f"{name}: no saved index at {path}; build it with `jsdlib index build`")
        check_provenance(name, path, {**expect, "backend": name})
    return BACKENDS[name].open(path, **options)


# ----------------------------------------------------------------------------------------------
# Corpora: the emoji vectors and synthetic vectors with the same statistics
# ----------------------------------------------------------------------------------------------
def emoji_vectors(split: str = "test", model=None, meta: dict | None = None):
    """``(docs, queries, hybrid, search)`` of the bundled JSD model over an emoji split.

    ``docs`` = the images' ``(D_i, Z_i)``, ``queries`` = the captions' ``(D_t, Z_t)`` (:class:`Vectors`),
    ``hybrid`` = :class:`HybridWeights` of the model's preset (w1, w2, tau), ``search`` the
    :class:`jsdlib.apps.bundled.EmojiSearch` they come from (its ``split.caption_to_image`` gives the relevant image).
    """
    from jsdlib.apps.bundled import EmojiSearch

    es = EmojiSearch(split, model, meta)
    return (Vectors.from_encoded(es.enc, "i"), Vectors.from_encoded(es.enc, "t"), HybridWeights(es.w1, es.w2, es.tau),
            es)


def synthetic_sparse(real: sp.csr_matrix, n: int, seed: int = 0, chunk: int = 4096) -> sp.csr_matrix:
    """``n`` synthetic sparse vectors drawn to match the statistics of the rows of ``real`` (deterministic in seed).

    For each synthetic vector: (1) its number of active terms m is drawn from the empirical distribution of
    the real rows' active counts; (2) m distinct terms are drawn without replacement with probabilities
    proportional to the real term shares ``p_j = df_j / N`` (Efraimidis-Spirakis: keep the m largest
    ``log u / p_j``, u ~ U(0, 1), over the terms that occur in ``real``), so frequent terms stay frequent and
    expected FLOPs stay close to the real ones; (3) the weight of term j is copied from a uniformly drawn
    real posting of term j, so every term keeps its own weight distribution. Without-replacement draws make
    the rarest terms slightly more frequent than ``p_j`` when m is a sizeable share of the used vocabulary.
    """
    real = to_csr(real, "real sparse vectors")
    if real.nnz == 0:
        raise ValueError("synthetic_sparse: the real vectors have no active terms")
    rng = np.random.default_rng(seed)
    C = real.tocsc()
    C.sort_indices()
    df = np.diff(C.indptr)
    terms = np.flatnonzero(df)
    p = (df[terms] / df[terms].sum()).astype(np.float32)
    counts = np.diff(real.indptr)
    m_all = np.minimum(rng.choice(counts, size=n), len(terms))
    m_max = max(int(m_all.max()), 1) if n else 1
    indptr = np.zeros(n + 1, np.int64)
    indptr[1:] = np.cumsum(m_all)
    indices = np.empty(indptr[-1], np.int64)
    data = np.empty(indptr[-1], np.float32)
    for s in range(0, n, chunk):
        e = min(s + chunk, n)
        keys = -rng.standard_exponential((e - s, len(terms)), dtype=np.float32) / p  # log u / p_j (larger = chosen)
        mm = m_max
        top = np.argpartition(-keys, mm - 1, axis=1)[:, :mm] if mm < len(terms) else np.tile(np.arange(len(terms)),
                                                                                            (e - s, 1))
        topk = np.take_along_axis(keys, top, axis=1)
        order = np.argsort(-topk, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        m = m_all[s:e]
        keep = np.arange(mm)[None, :] < m[:, None]
        rows = np.repeat(np.arange(s, e), m)
        chosen = terms[top[keep]]
        # weights: a random real posting of the same term
        pick = C.indptr[chosen] + (rng.random(len(chosen)) * df[chosen]).astype(np.int64)
        vals = C.data[pick]
        # sort terms within each row (CSR wants ascending indices)
        o = np.lexsort((chosen, rows))
        a, b = indptr[s], indptr[s] + len(chosen)
        indices[a:b], data[a:b] = chosen[o], vals[o]
    return sp.csr_matrix((data, indices, indptr), shape=(n, real.shape[1]))


def synthetic_dense(real: np.ndarray, n: int, seed: int = 0, noise: float = 0.3) -> np.ndarray:
    """``n`` unit vectors: a random real vector plus Gaussian noise (std ``noise / sqrt(dim)``), renormalised."""
    real = _to_dense(real, "real dense vectors")
    rng = np.random.default_rng(seed)
    X = real[rng.integers(0, len(real), n)] + rng.standard_normal((n, real.shape[1])).astype(np.float32) * (
        noise / np.sqrt(real.shape[1]))
    return (X / np.linalg.norm(X, axis=1, keepdims=True)).astype(np.float32)


def corpus_of_size(real: Vectors, n: int, seed: int = 0) -> Vectors:
    """The first ``min(n, len(real))`` real documents, then synthetic ones (seeded) up to ``n``."""
    if n <= len(real):
        return real.rows(np.arange(n))
    extra = n - len(real)
    dense = None if real.dense is None else np.vstack([real.dense, synthetic_dense(real.dense, extra, seed)])
    sparse = None if real.sparse is None else sp.vstack([real.sparse, synthetic_sparse(real.sparse, extra, seed + 1)],
                                                       format="csr")
    return Vectors(dense, sparse)


# ----------------------------------------------------------------------------------------------
# Benchmark
# ----------------------------------------------------------------------------------------------
BENCH_BACKENDS = ("exact", "brute_dense", "brute_sparse", "faiss", "seismic", "milvus")


def _time_queries(fn, queries: Vectors, repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per query, queries issued one at a time."""
    per = []
    singles = [queries.rows([i]) for i in range(len(queries))]
    for _ in range(repeats):
        t = time.perf_counter()
        for q in singles:
            fn(q)
        per.append((time.perf_counter() - t) / len(singles))
    return float(np.median(per))


def benchmark_backends(docs: Vectors, queries: Vectors, backends: Sequence[str] = BENCH_BACKENDS, k: int = 10,
                       repeats: int = 3, n_timed: int = 200, workdir=None, seismic_options: dict | None = None,
                       caps: dict | None = None, log=print) -> list[dict]:
    """Build each back end on ``docs`` and measure it on ``queries``: one row per back end.

    Row: ``backend, n, build_s, ms_per_query`` (median over ``repeats`` of the mean over ``n_timed`` single-query
    calls), ``qps = 1000 / ms_per_query``, ``recall_at_10`` (top-k overlap with the exact reference of the same
    side over *all* queries: brute-force sparse for sparse back ends, brute-force dense for dense ones),
    ``flops`` (measured multiply-adds per (query, doc) pair; None where the engine does not expose them).
    Sparse back ends search the sparse vectors, dense ones the dense vectors; Milvus is timed on sparse search.
    ``caps`` = ``{backend: (recall queries, timed queries)}`` limits slow engines (default: Milvus Lite, whose
    3.x engine is pure Python, gets ``(50, 10)``); a row's ``queries`` / ``timed`` say what it used.
    """
    import tempfile

    unknown = set(backends) - set(BENCH_BACKENDS)
    if unknown:
        raise ValueError(f"benchmark_backends: unknown back ends {sorted(unknown)}; choose from {BENCH_BACKENDS}")
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    workdir = Path(tmp.name if tmp else workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(docs)
    timed = queries.rows(np.arange(min(n_timed, len(queries))))
    ref_sparse = ref_dense = None
    rows = []
    try:
        for name in backends:
            mode = "dense" if name in ("brute_dense", "faiss") else "sparse"
            t = time.perf_counter()
            if name == "exact":
                b = ExactBackend.build(Vectors(sparse=docs.sparse))
            elif name in ("brute_dense", "brute_sparse"):
                b = BruteForceBackend.build(Vectors(dense=docs.dense) if mode == "dense"
                                            else Vectors(sparse=docs.sparse))
            elif name == "faiss":
                b = FaissBackend.build(Vectors(dense=docs.dense))
            elif name == "seismic":
                b = SeismicBackend.build(Vectors(sparse=docs.sparse), **(seismic_options or {}))
            else:
                db = workdir / f"milvus_{n}.db"
                b = MilvusBackend.build(Vectors(sparse=docs.sparse), db)
            build_s = time.perf_counter() - t
            n_q, n_t = (caps or {"milvus": (50, 10)}).get(name, (len(queries), len(timed)))
            n_q, n_t = min(n_q, len(queries)), min(n_t, len(timed))
            qv = Vectors(dense=queries.dense[:n_q]) if mode == "dense" else Vectors(sparse=queries.sparse[:n_q])
            tv = Vectors(dense=timed.dense[:n_t]) if mode == "dense" else Vectors(sparse=timed.sparse[:n_t])
            res = b.search(qv, k, mode)
            if mode == "sparse" and ref_sparse is None:
                ref_sparse = brute_force_sparse(queries.sparse, docs.sparse, k)
            if mode == "dense" and ref_dense is None:
                ref_dense = brute_force_dense(queries.dense, docs.dense, k)
            ref = ref_sparse if mode == "sparse" else ref_dense
            sec = _time_queries(lambda q: b.search(q, k, mode), tv, repeats)
            rows.append({"backend": name, "n": n, "build_s": build_s, "ms_per_query": 1000 * sec, "qps": 1.0 / sec,
                         "recall_at_10": recall_at_k(res.ids, ref.ids[:n_q], 10), "flops": res.flops,
                         "queries": n_q, "timed": n_t})
            log(f"  {name:12s} n={n:>7,d} build {build_s:7.2f} s  {1000 * sec:8.3f} ms/query  "
                f"R@10 {rows[-1]['recall_at_10']:.4f}")
            if name == "milvus":
                b.close()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows


def ratio_table(rows: Sequence[dict]) -> str:
    """Markdown table of benchmark rows with each back end's latency as a multiple of ``exact`` and ``brute_dense``
    (same n, same run)."""
    head = ("| n | backend | build s | ms/query | queries/s | recall@10 | FLOPs | x exact | x brute dense |\n"
            "|---|---|---|---|---|---|---|---|---|")
    by = {(r["n"], r["backend"]): r for r in rows}
    out = [head]
    for r in rows:
        ex, bd = by.get((r["n"], "exact")), by.get((r["n"], "brute_dense"))
        fx = f"{r['ms_per_query'] / ex['ms_per_query']:.2f}" if ex else "—"
        fd = f"{r['ms_per_query'] / bd['ms_per_query']:.2f}" if bd else "—"
        fl = "—" if r["flops"] is None else f"{r['flops']:.1f}"
        qps = f"{r['qps']:,.0f}" if r["qps"] >= 10 else f"{r['qps']:.2f}"
        out.append(f"| {r['n']:,} | {r['backend']} | {r['build_s']:.2f} | {r['ms_per_query']:.3f} | {qps} | "
                   f"{r['recall_at_10']:.3f} | {fl} | {fx} | {fd} |")
    return "\n".join(out)


# ----------------------------------------------------------------------------------------------
# Exact search with dynamic pruning: MaxScore (Turtle & Flood 1995) over the same postings
# ----------------------------------------------------------------------------------------------
# Term-at-a-time touches every posting of every query term and then scans all N accumulators, so its cost
# grows with N. MaxScore walks the postings document-at-a-time in id order and keeps, per query term i, the
# upper bound ub_i = q_i max_d w_{i,d} of what the term can add. Terms sorted by ub ascending; once the top-k
# heap is full with threshold theta (its k-th score), the longest prefix of terms whose bounds sum to <= theta
# is "non-essential": a document found only in their lists cannot enter the top-k, so only the remaining
# (essential) lists generate candidates, and the non-essential ones are probed (binary search) for a candidate
# only while  partial score + sum of the bounds still to probe > theta. The kept documents' scores are then
# summed in the query's own term order, exactly as term-at-a-time sums them, so ids *and* scores equal
# InvertedIndex.search's (TIE_ORDER included). Needs positive query values and postings weights (JSD's are);
# other queries fall back to term-at-a-time.
_UB_SLACK = 1e-9   # bounds are inflated by this relative amount: float rounding can never prune a true top-k doc

if numba is not None:
    @njit(cache=True)
    def _maxscore_range(q0, q1, q_ptr, q_idx, q_val, ptr, docs, w, maxw, n_docs, k, out_ids, out_s, out_work):
        hs = np.empty(k, np.float64)
        hd = np.empty(k, np.int64)
        for qi in range(q0, q1):
            a, b = q_ptr[qi], q_ptr[qi + 1]
            nq = b - a
            # the query's terms with postings, sorted by upper bound ascending
            ub = np.empty(nq, np.float64)
            for t in range(nq):
                j = q_idx[a + t]
                ub[t] = np.float64(q_val[a + t]) * np.float64(maxw[j]) if ptr[j + 1] > ptr[j] else -1.0
            order = np.argsort(ub, kind="mergesort")
            n = 0
            for t in range(nq):
                if ub[order[t]] >= 0.0:
                    n += 1
            ts = np.empty(n, np.int64)        # position of the term in the query (summation order)
            pos = np.empty(n, np.int64)
            end = np.empty(n, np.int64)
            cum = np.empty(n, np.float64)     # cum[i] = inflated bound of terms 0..i
            i = 0
            c = 0.0
            for t in range(nq):
                o = order[t]
                if ub[o] < 0.0:
                    continue
                j = q_idx[a + o]
                ts[i] = o
                pos[i] = ptr[j]
                end[i] = ptr[j + 1]
                c += ub[o]
                cum[i] = c * (1.0 + _UB_SLACK)
                i += 1
            contrib = np.zeros(nq, np.float64)
            size = 0
            theta = -np.inf
            m = 0            # terms 0..m-1 are non-essential
            work = 0
            while True:
                d = n_docs
                for i in range(m, n):
                    if pos[i] < end[i] and docs[pos[i]] < d:
                        d = docs[pos[i]]
                if d == n_docs:
                    break
                partial = 0.0
                for i in range(m, n):
                    if pos[i] < end[i] and docs[pos[i]] == d:
                        o = ts[i]
                        v = np.float64(q_val[a + o]) * np.float64(w[pos[i]])
                        contrib[o] = v
                        partial += v
                        pos[i] += 1
                        work += 1
                alive = size < k or (partial * (1.0 + _UB_SLACK) + (cum[m - 1] if m > 0 else 0.0)) > theta
                i = m - 1
                while alive and i >= 0:
                    # advance list i to the first doc >= d (binary search on the rest of the list)
                    lo, hi = pos[i], end[i]
                    while lo < hi:
                        mid = (lo + hi) // 2
                        if docs[mid] < d:
                            lo = mid + 1
                        else:
                            hi = mid
                    pos[i] = lo
                    if lo < end[i] and docs[lo] == d:
                        o = ts[i]
                        v = np.float64(q_val[a + o]) * np.float64(w[lo])
                        contrib[o] = v
                        partial += v
                        work += 1
                    i -= 1
                    if size >= k and (partial * (1.0 + _UB_SLACK) + (cum[i] if i >= 0 else 0.0)) <= theta:
                        alive = False
                if alive:
                    s = 0.0
                    for t in range(nq):   # the query's own term order: the same sum term-at-a-time makes
                        s += contrib[t]
                    if size < k or s > hs[0]:
                        size = _heap_offer(hs, hd, size, k, s, d)
                        if size == k:
                            theta = hs[0]
                            while m < n and cum[m] <= theta:
                                m += 1
                for t in range(nq):
                    contrib[t] = 0.0
            # fewer than k documents scored > 0: the rest of the top-k are the lowest ids scoring exactly 0
            d = 0
            while size < k and d < n_docs:
                seen = False
                for h in range(size):
                    if hd[h] == d:
                        seen = True
                        break
                if not seen:
                    size = _heap_offer(hs, hd, size, k, 0.0, d)
                d += 1
            _heap_drain(hs, hd, size, qi, out_s, out_ids)
            out_work[qi] = work


def term_max_weights(index: "InvertedIndex") -> np.ndarray:
    """``max_d w_{j,d}`` of every term's postings (0 for an empty list): MaxScore's per-term bounds (cached)."""
    mw = getattr(index, "_maxscore_maxw", None)
    if mw is None:
        df = np.diff(index.indptr)
        mw = np.zeros(len(df), np.float32)
        nz = df > 0
        if nz.any():
            mw[nz] = np.maximum.reduceat(index.weights, index.indptr[:-1][nz])
        index._maxscore_maxw = mw
    return mw


def maxscore_search(index: "InvertedIndex", Q, k: int = 10) -> SearchResult:
    """Exact top-k of ``index`` by MaxScore dynamic pruning: the same ids and scores as ``index.search``.

    ``work`` counts the postings actually scored (essential-list postings plus successful probes), the
    pruned counterpart of term-at-a-time's every-posting count. Queries with a value <= 0, or an index with a
    weight <= 0, go through term-at-a-time (the bounds assume positive contributions). Needs numba.
    """
    if numba is None:
        raise ImportError("maxscore_search needs the numba package (pip install numba)")
    Q, k, ids, scores, work = index._prepare(Q, k)
    B = Q.shape[0]
    if B == 0 or k == 0:
        return SearchResult(ids, scores, work, index.n_docs)
    q_ptr = Q.indptr.astype(np.int64)
    q_idx = Q.indices.astype(np.int64)
    q_val = np.ascontiguousarray(Q.data, dtype=np.float32)
    maxw = term_max_weights(index)
    positive_index = getattr(index, "_maxscore_positive", None)
    if positive_index is None:   # cached: a scan of every weight would cost as much as a query
        positive_index = index._maxscore_positive = len(index.weights) == 0 or float(index.weights.min()) > 0
    for qi in range(B):
        vals = q_val[q_ptr[qi]:q_ptr[qi + 1]]
        if positive_index and (len(vals) == 0 or float(vals.min()) > 0):
            _maxscore_range(qi, qi + 1, q_ptr, q_idx, q_val, index.indptr, index.doc_ids, index.weights, maxw,
                            index.n_docs, k, ids, scores, work)
        else:
            r = index.search(Q[qi], k)
            ids[qi], scores[qi], work[qi] = r.ids[0], r.scores[0], r.work[0]
    return SearchResult(ids, scores, work, index.n_docs)
