"""Search over JSD's vectors (JSD, CIKM 2025; arXiv 2508.16707; notebook 04): an exact inverted index, dense and
hybrid search, and engine back ends, one per module behind one interface (:class:`Backend`): ``exact``, ``brute``,
``faiss`` (:mod:`~jsdlib.index.faiss_backend`), ``seismic``, ``milvus``; :data:`BACKENDS` names them.

Data types in :mod:`~jsdlib.index.types`, the brute-force references in :mod:`~jsdlib.index.reference`, MaxScore in
:mod:`~jsdlib.index.maxscore`, synthetic corpora in :mod:`~jsdlib.index.synthetic`, the benchmark in
:mod:`~jsdlib.index.bench`. The emoji vectors they are shown on come from :mod:`jsdlib.apps.emoji_index`.
"""
from jsdlib.index.base import Backend
from jsdlib.index.bench import BENCH_BACKENDS, benchmark_backends, ratio_table
from jsdlib.index.brute import BruteForceBackend
from jsdlib.index.exact import ExactBackend
from jsdlib.index.faiss_backend import FaissBackend
from jsdlib.index.inverted import InvertedIndex
from jsdlib.index.maxscore import maxscore_search, term_max_weights
from jsdlib.index.milvus import MILVUS_TOPK_LIMIT, MilvusBackend
from jsdlib.index.provenance import check_provenance, record_provenance
from jsdlib.index.reference import brute_force_dense, brute_force_sparse, postings_work, topk_rows
from jsdlib.index.registry import BACKENDS, build_backend, open_backend
from jsdlib.index.seismic import SeismicBackend
from jsdlib.index.synthetic import corpus_of_size, synthetic_dense, synthetic_sparse
from jsdlib.index.types import (TIE_ORDER, HybridWeights, IndexMismatchError, SearchResult, Vectors, hybrid_scores,
                                recall_at_k, to_csr)

__all__ = ["BACKENDS", "BENCH_BACKENDS", "MILVUS_TOPK_LIMIT", "TIE_ORDER", "Backend", "BruteForceBackend",
           "ExactBackend", "FaissBackend", "HybridWeights", "IndexMismatchError", "InvertedIndex", "MilvusBackend",
           "SearchResult", "SeismicBackend", "Vectors", "benchmark_backends", "brute_force_dense", "brute_force_sparse",
           "build_backend", "check_provenance", "corpus_of_size", "hybrid_scores", "maxscore_search", "open_backend",
           "postings_work", "ratio_table", "recall_at_k", "record_provenance", "synthetic_dense", "synthetic_sparse",
           "term_max_weights", "to_csr", "topk_rows"]
