"""Exact search with dynamic pruning: MaxScore (Turtle & Flood 1995) over the inverted index's postings.

Term-at-a-time touches every posting of every query term and then scans all N accumulators, so its cost
grows with N. MaxScore walks the postings document-at-a-time in id order and keeps, per query term i, the
upper bound ub_i = q_i max_d w_{i,d} of what the term can add. Terms sorted by ub ascending; once the top-k
heap is full with threshold theta (its k-th score), the longest prefix of terms whose bounds sum to <= theta
is "non-essential": a document found only in their lists cannot enter the top-k, so only the remaining
(essential) lists generate candidates, and the non-essential ones are probed (binary search) for a candidate
only while  partial score + sum of the bounds still to probe > theta. The kept documents' scores are then
summed in the query's own term order, exactly as term-at-a-time sums them, so ids *and* scores equal
InvertedIndex.search's (TIE_ORDER included). Needs positive query values and postings weights (JSD's are);
other queries fall back to term-at-a-time.
"""
from __future__ import annotations

import numpy as np

from jsdlib.index.inverted import InvertedIndex, numba
from jsdlib.index.types import SearchResult

if numba is not None:  # the heap is the one term-at-a-time uses; both exist only with numba
    from numba import njit

    from jsdlib.index.inverted import _heap_drain, _heap_offer

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
    Q, k, q_ptr, q_idx, out = index._prepare(Q, k)
    B = Q.shape[0]
    if B == 0 or k == 0:
        return out
    ids, scores, work = out.ids, out.scores, out.work
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
    return out
