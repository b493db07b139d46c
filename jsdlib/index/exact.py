"""``exact`` (the default back end): the inverted index (sparse), the matrix product (dense), their exact sum (hybrid).

Hybrid equals ranking by JSD's integrated score ``S_x`` (arXiv 2508.16707).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jsdlib.index.base import Backend, _check_corpus, _read_meta, save_array
from jsdlib.index.inverted import InvertedIndex
from jsdlib.index.reference import _topk_chunked, postings_work
from jsdlib.index.types import SearchResult, Vectors, hybrid_scores


class ExactBackend(Backend):
    """Exact search: the inverted index (sparse), the dense matrix product, and their exact sum (hybrid).

    Hybrid: the full sparse score rows come from the postings (:meth:`InvertedIndex.scores`), the dense rows from
    ``Q_d D_d^T``; ``S_x = w1 S_d / tau + w2 S_s`` then :func:`topk_rows` -- the ranking by S_x (the JSD paper).
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
        index = None if docs.sparse is None else InvertedIndex.build(docs.sparse, engine)
        return cls(index, docs.dense, threads)._saved(path)

    def save(self, path) -> None:
        path = Path(path)
        if self.index is not None:
            self.index.save(path / "postings.npz")
        if self.dense is not None:
            save_array(path / "dense.npy", self.dense)
        self._write_meta(path)

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

