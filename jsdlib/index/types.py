"""The data every back end shares: :class:`Vectors` in, :class:`SearchResult` out, :class:`HybridWeights` for S_x.

With ``q`` / ``x`` a query's and a document's sparse vectors (non-negative weights over the vocabulary V) and
``u`` / ``v`` their L2-normalised dense vectors::

    s_s(q, x) = sum_{j in V} q_j x_j                 sparse score  (S_s = Z_t Z_i^T)
    s_d(q, x) = u . v / tau                          dense score   (S_d = D_t D_i^T / tau)
    s_x(q, x) = w1 s_d(q, x) + w2 s_s(q, x)          JSD's integrated score (S_x, :func:`hybrid_scores`)

**Tie order.** Every exact search ranks by score descending, then document id ascending (:data:`TIE_ORDER`),
and returns ``min(k, N)`` results.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

TIE_ORDER = "score descending, then document id ascending"


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
        """``side="t"`` (captions, queries) or ``"i"`` (images, documents) of :func:`jsdlib.jsd.evaluate.encode`'s output."""
        if side not in ("t", "i"):
            raise ValueError(f"Vectors.from_encoded: side must be 't' (captions) or 'i' (images), got {side!r}")
        keys = {k.lower(): k for k in enc}
        if f"d_{side}" not in keys and f"z_{side}" not in keys:
            raise KeyError(f"Vectors.from_encoded: no D_{side} / Z_{side} in {sorted(enc)}")
        get = (lambda name: enc[keys[name]] if name in keys else None)
        return cls(get(f"d_{side}"), get(f"z_{side}"))


_WIDTH = {"dense": ("dense queries have {} dimensions", "the index holds {}-d vectors"),
          "sparse": ("sparse queries span {} terms", "the index's vocabulary has {}")}


def _check_queries(q: Vectors, mode: str, dim: int | None, vocab_size: int | None, where: str) -> None:
    """Check that queries ``q`` fit an index of ``dim``-d dense / ``vocab_size``-term sparse vectors in ``mode``."""
    if mode not in ("dense", "sparse", "hybrid"):
        raise ValueError(f"{where}: mode must be 'sparse', 'dense' or 'hybrid', got {mode!r}")
    for side, width in (("dense", dim), ("sparse", vocab_size)):
        if mode not in (side, "hybrid"):
            continue
        X = getattr(q, side)
        if X is None:
            raise ValueError(f"{where}: mode {mode!r} needs {side} query vectors")
        if width is None:
            raise ValueError(f"{where}: this index holds no {side} vectors (mode {mode!r})")
        if X.shape[1] != width:
            got, has = _WIDTH[side]
            raise ValueError(f"{where}: dimension mismatch: {got.format(X.shape[1])}, {has.format(width)}")


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
        """The weights of a trained :class:`jsdlib.jsd.model.JSDModel` (its learned temperature)."""
        return cls(float(w1), float(w2), float(model.tau.detach()))


def hybrid_scores(S_d_raw: np.ndarray, S_s: np.ndarray, hw: HybridWeights) -> np.ndarray:
    """``S_x = w1 S_d + w2 S_s`` with ``S_d = S_d_raw / tau`` (same arithmetic as :func:`jsdlib.jsd.evaluate.score_matrices`)."""
    return hw.w1 * (S_d_raw / hw.tau) + hw.w2 * S_s


class IndexMismatchError(ValueError):
    """A saved index was built from other documents (split, model, back end, size) than a search asks for."""
