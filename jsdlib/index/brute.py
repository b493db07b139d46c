"""``brute`` (``brute_sparse`` / ``brute_dense`` in tables): the full score matrix, then exact top-k."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jsdlib.index.base import Backend, _check_corpus, _read_meta, save_array
from jsdlib.index.reference import _topk_chunked, postings_work
from jsdlib.index.types import SearchResult, Vectors, hybrid_scores


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
        return cls(docs)._saved(path)

    def save(self, path) -> None:
        path = Path(path)
        if self.docs.sparse is not None:
            save_array(path / "sparse.npz", self.docs.sparse)
        if self.docs.dense is not None:
            save_array(path / "dense.npy", self.docs.dense)
        self._write_meta(path)

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

