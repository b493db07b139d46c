"""``faiss``: dense search with faiss ``IndexFlatIP`` (exact inner product, BLAS). The module is named
``faiss_backend`` so that it never shadows the ``faiss`` package."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from jsdlib.common.io import atomic_path
from jsdlib.index.base import Backend, _check_corpus, _optional, _read_meta
from jsdlib.index.types import SearchResult, Vectors


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
        return cls(index)._saved(path)

    def save(self, path) -> None:
        path = Path(path)
        with atomic_path(path / "dense.faiss") as tmp:
            self._faiss().write_index(self.index, str(tmp))
        self._write_meta(path)

    @classmethod
    def open(cls, path) -> "FaissBackend":
        _read_meta(path, cls.name)
        return cls(cls._faiss().read_index(str(Path(path) / "dense.faiss")))

    def search(self, queries, k=10, mode="dense", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        scores, ids = self.index.search(queries.dense, k)
        return SearchResult(ids.astype(np.int64), scores, np.full(len(queries), self.n_docs * self.dim, np.int64),
                            self.n_docs)

