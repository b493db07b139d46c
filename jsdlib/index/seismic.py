"""``seismic``: Seismic (``pyseismic-lsr``), an *approximate* learned-sparse index (pruned, clustered postings
with summaries); report its recall@10 against ``exact``."""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from jsdlib.common.io import atomic_path
from jsdlib.index.base import Backend, _check_corpus, _optional, _read_meta
from jsdlib.index.types import SearchResult, Vectors


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
        return b._saved(path)

    def save(self, path) -> None:
        path = Path(path)
        with atomic_path(path / "sparse.index.seismic") as tmp, _quiet_stdout():
            self.index.save(str(tmp))  # Seismic appends ".index.seismic" to the name it is given
            Path(f"{tmp}.index.seismic").replace(tmp)
        self._write_meta(path, query_cut=self.query_cut, heap_factor=self.heap_factor)

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

