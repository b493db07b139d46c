"""The exact inverted index: postings lists per vocabulary term, searched term-at-a-time (arXiv 2508.16707).

Term j's *postings list* holds every document with ``x_j != 0`` as (doc id, x_j), in ascending doc id. Search is
term-at-a-time: for each active query term j, walk its postings and add ``q_j x_j`` into a per-document
accumulator, then keep the k best. Only documents sharing a term with the query are touched, and the work is
``sum_{j: q_j != 0} df_j`` multiply-adds, ``df_j`` = length of j's list.

**Cost model (D2S FLOPs).** With ``p_j(D) = df_j / N`` the share of documents using term j and ``p_j(Q)`` the
share of queries using it, the expected number of multiply-adds per (query, document) pair is
``FLOPs = sum_j p_j(Q) p_j(D)`` (the JSD paper). The measured work of a query set is exactly that times N::

    mean_q postings_touched(q) / N = mean_q sum_j 1[q_j != 0] df_j / N = sum_j p_j(Q) p_j(D)

so :attr:`SearchResult.work` (postings touched per query) divided by N reproduces
:func:`jsdlib.jsd.efficiency.flops` on the same vectors (tested). Brute force costs ``N`` score slots per query
whatever the sparsity, dense search ``N * dim`` multiply-adds (FLOPs = dim = 256).

**Tie order.** The index accumulates in float64, term by term in ascending term id and postings in ascending
doc id -- the order of scipy's sparse product -- so its scores equal brute force's bit for bit and the two
top-k lists are identical, ties included (score descending, then document id ascending).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jsdlib.common.io import atomic_path
from jsdlib.index.reference import topk_rows
from jsdlib.index.types import SearchResult, Vectors, _check_k, to_csr

try:  # numba is a dependency; the pure-numpy path is the fallback and the "by hand" reference
    import numba
    from numba import njit, prange
except ImportError:  # pragma: no cover - exercised only without numba
    numba = None


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
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file object: np.savez appends no ".npz"
            np.savez(fh, format=np.array(self.FORMAT), indptr=self.indptr, doc_ids=self.doc_ids, weights=self.weights,
                     n_docs=np.array(self.n_docs))
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
        """D2S FLOPs ``sum_j p_j(Q) p_j(D)`` of the queries ``Q`` against this index (the JSD paper)."""
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
        """Checked CSR queries ``Q``, k capped at the corpus size, the queries' int64 ``(indptr, indices)`` for the
        kernels, and the zeroed :class:`SearchResult` they fill (returned as is when ``B == 0`` or ``k == 0``)."""
        Q = self._queries(Q)
        k = min(_check_k(k), self.n_docs) if self.n_docs else 0
        B = Q.shape[0]
        out = SearchResult(np.zeros((B, k), np.int64), np.zeros((B, k), np.float64), np.zeros(B, np.int64),
                           self.n_docs)
        return Q, k, Q.indptr.astype(np.int64), Q.indices.astype(np.int64), out

    def search(self, Q, k: int = 10, threads: int = 1) -> SearchResult:
        """Exact top-k (``TIE_ORDER``) for each query row of ``Q`` ((B, |V|) or one (|V|,) vector).

        ``threads > 1`` splits the batch over numba threads (one accumulator each).
        """
        Q, k, q_ptr, q_idx, out = self._prepare(Q, k)
        B = Q.shape[0]
        if B == 0 or k == 0:
            return out
        ids, scores, work = out.ids, out.scores, out.work
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

