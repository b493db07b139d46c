"""Synthetic corpora with the statistics of real JSD vectors, to time the back ends beyond the real corpus size."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from jsdlib.index.types import Vectors, _to_dense, to_csr


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


