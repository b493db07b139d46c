"""Old home of the index (0.1's index.py): every name now lives in its own module; these keep old imports working."""
from jsdlib.index.base import Backend, _check_corpus, _meta_path, _optional, _read_meta  # moved:
from jsdlib.index.bench import BENCH_BACKENDS, benchmark_backends, ratio_table  # moved:
from jsdlib.index.brute import BruteForceBackend  # moved:
from jsdlib.index.exact import ExactBackend  # moved:
from jsdlib.index.faiss_backend import FaissBackend  # moved:
from jsdlib.index.inverted import InvertedIndex, numba  # moved:
from jsdlib.index.maxscore import maxscore_search, term_max_weights  # moved:
from jsdlib.index.milvus import MILVUS_TOPK_LIMIT, MilvusBackend  # moved:
from jsdlib.index.provenance import check_provenance, record_provenance  # moved:
from jsdlib.index.reference import brute_force_dense, brute_force_sparse, postings_work, topk_rows  # moved:
from jsdlib.index.registry import BACKENDS, build_backend, open_backend  # moved:
from jsdlib.index.seismic import SeismicBackend  # moved:
from jsdlib.index.synthetic import corpus_of_size, synthetic_dense, synthetic_sparse  # moved:
from jsdlib.index.types import TIE_ORDER, HybridWeights, IndexMismatchError, SearchResult, Vectors  # moved:
from jsdlib.index.types import _check_k, _check_queries, _to_dense, hybrid_scores, recall_at_k, to_csr  # moved:
