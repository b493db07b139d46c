"""``milvus``: Milvus through ``pymilvus`` -- embedded Milvus Lite on a local ``*.db`` file by default, or a server
URI (``http://host:19530``) with the same code.

Dense (FLAT, IP), sparse (SPARSE_INVERTED_INDEX, IP) and hybrid search; hybrid uses
``WeightedRanker(w1 / tau, w2, norm_score=False)`` so that the fused score is the raw ``w1 u.v / tau + w2 q.x``
(JSD's ``S_x``, not min-max / arctan-normalised scores). Each sub-search returns at most ``candidates`` documents
(default ``min(N, 16384)``, Milvus's top-k limit); the fusion is exact when ``candidates >= N`` and an
approximation (union of the two candidate lists) beyond that.
"""
from __future__ import annotations

import json
import logging
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jsdlib.index.base import Backend, _check_corpus, _optional
from jsdlib.index.types import SearchResult, Vectors

MILVUS_TOPK_LIMIT = 16384  # Milvus refuses a larger limit per (sub-)search
REMOTE_SCHEMES = ("http://", "https://", "tcp://", "unix:")
FORMAT = "jsdlib-milvus-v1"


def is_remote(uri) -> bool:
    """True for a Milvus server URI (``http://host:19530``), False for a local Milvus Lite ``*.db`` file."""
    return str(uri).startswith(REMOTE_SCHEMES)


def _pymilvus():
    return _optional("pymilvus", "milvus", "pymilvus milvus-lite")


class _NotImplementedFilter(logging.Filter):
    """Drops grpc's log record for RPCs the embedded server does not implement (pymilvus probes AllocTimestamp)."""

    def filter(self, record) -> bool:
        return "Method not implemented" not in record.getMessage()


@contextmanager
def quiet_unimplemented_rpcs(enabled: bool = True):
    """Silence Milvus Lite's "Method not implemented" grpc errors for the duration of the block, and only then.

    The embedded server logs one to the ``grpc._server`` logger each time pymilvus probes an RPC it lacks; the
    filter is added on entry and removed on exit (also after an error), so the caller's logging is left as it was.
    """
    if not enabled:
        yield
        return
    log = logging.getLogger("grpc._server")
    f = _NotImplementedFilter()
    log.addFilter(f)
    try:
        yield
    finally:
        log.removeFilter(f)




class MilvusBackend(Backend):
    """Milvus via ``pymilvus``: Milvus Lite on a local ``*.db`` file (default) or a server URI, same code.

    One collection with fields ``id`` (INT64, primary = row number), ``dense`` (FLOAT_VECTOR, FLAT index, IP) and
    ``sparse`` (SPARSE_FLOAT_VECTOR, SPARSE_INVERTED_INDEX, IP); the collection property ``jsdlib`` stores
    ``{"dim", "vocab_size", "n_docs"}`` so that a reopened index checks query dimensions. Hybrid search runs
    one dense and one sparse sub-search (``candidates`` results each) and fuses them with
    ``WeightedRanker(w1 / tau, w2, norm_score=False)``: fused score = ``w1 u.v / tau + w2 q.x`` = S_x, exact for
    every document in both candidate lists (all of them when ``candidates >= N``).
    """

    name = "milvus"
    modes = ("sparse", "dense", "hybrid")

    def __init__(self, client, uri: str, collection: str, meta: dict, candidates: int | None = None):
        self.client, self.uri, self.collection = client, uri, collection
        self.n_docs, self.dim, self.vocab_size = int(meta["n_docs"]), meta.get("dim"), meta.get("vocab_size")
        self.candidates = int(candidates or min(self.n_docs, MILVUS_TOPK_LIMIT))

    def _quiet(self):
        return quiet_unimplemented_rpcs(not is_remote(self.uri))

    @staticmethod
    def connect(uri: str, timeout: float = 10.0):
        """A ``MilvusClient`` for ``uri``, or a clear error (bad scheme, missing folder, server unreachable)."""
        pymilvus = _pymilvus()
        uri = str(uri)
        if not is_remote(uri):
            if not uri.endswith(".db"):
                raise ValueError(f"milvus: bad URI {uri!r}: give a local Milvus Lite file ending in '.db' "
                                 "(e.g. 'index/jsd.db') or a server URI such as 'http://localhost:19530'")
            if not Path(uri).parent.is_dir():
                raise ValueError(f"milvus: bad URI {uri!r}: folder {str(Path(uri).parent)!r} does not exist")
        try:
            with quiet_unimplemented_rpcs(not is_remote(uri)):
                return pymilvus.MilvusClient(uri, timeout=timeout)
        except Exception as e:  # pymilvus raises its own exception types
            raise ConnectionError(f"milvus: cannot connect to {uri!r}: {e}") from e

    @classmethod
    def build(cls, docs: Vectors, path=None, collection: str = "jsd", batch: int = 5000, overwrite: bool = True,
              candidates: int | None = None) -> "MilvusBackend":
        """Create ``collection`` at ``path`` (a ``.db`` file or a server URI; default ``milvus.db`` here) and insert."""
        _check_corpus(docs, cls.name)
        uri = str(path or "milvus.db")
        client = cls.connect(uri)
        with quiet_unimplemented_rpcs(not is_remote(uri)):
            if client.has_collection(collection):
                if not overwrite:
                    raise ValueError(f"milvus: collection {collection!r} already exists at {uri!r} (overwrite=False)")
                client.drop_collection(collection)
            meta = {"n_docs": len(docs), "dim": docs.dim, "vocab_size": docs.vocab_size, "format": FORMAT}
            _create_collection(client, collection, docs, meta)
            for s in range(0, len(docs), batch):
                client.insert(collection, _rows(docs, s, min(s + batch, len(docs))))
            client.flush(collection)
            client.load_collection(collection)
        return cls(client, uri, collection, meta, candidates)

    @classmethod
    def open(cls, path, collection: str = "jsd", candidates: int | None = None) -> "MilvusBackend":
        """Reopen a collection written by :meth:`build` (a restart: new client, same file)."""
        uri = str(path)
        if not is_remote(uri) and not Path(uri).exists():  # a file, or (milvus-lite 3) a folder
            raise FileNotFoundError(f"milvus: no Milvus Lite file at {uri!r}")
        client = cls.connect(uri)
        with quiet_unimplemented_rpcs(not is_remote(uri)):
            if not client.has_collection(collection):
                raise ValueError(f"milvus: no collection {collection!r} at {uri!r}")
            props = client.describe_collection(collection).get("properties") or {}
            try:
                meta = json.loads(props.get("jsdlib", ""))
                assert meta.get("format") == FORMAT
            except (ValueError, AssertionError):
                raise ValueError(f"milvus: collection {collection!r} at {uri!r} was not written by jsdlib "
                                 "(no dimension metadata)") from None
            client.load_collection(collection)
            b = cls(client, uri, collection, meta, candidates)
            rows = int(client.get_collection_stats(collection).get("row_count", -1))
        if rows != b.n_docs:  # e.g. a damaged manifest: Milvus Lite opens it and silently finds nothing
            b.close()
            raise ValueError(f"milvus: collection {collection!r} at {uri!r} holds {rows} rows but was built with "
                             f"{b.n_docs} documents (damaged store?); rebuild it with `jsdlib index build`")
        return b

    def save(self, path=None) -> None:
        """Milvus persists on insert; ``flush`` makes sure everything is on disk (``path`` must be this URI)."""
        if path is not None and str(path) != self.uri:
            raise ValueError(f"milvus: the collection lives at {self.uri!r}; it cannot be saved elsewhere")
        with self._quiet():
            self.client.flush(self.collection)

    def close(self) -> None:
        """Close the client; for Milvus Lite also stop its embedded server so the ``.db`` can be reopened elsewhere."""
        with self._quiet():
            self.client.close()
        if not is_remote(self.uri):
            try:
                from milvus_lite.server_manager import server_manager_instance
            except ImportError:  # pragma: no cover - older milvus-lite: the server stops at exit
                return
            server_manager_instance.release_server(self.uri)

    def search(self, queries, k=10, mode="sparse", hybrid=None) -> SearchResult:
        queries, k = self._check(queries, k, mode, hybrid)
        with self._quiet():
            if mode == "hybrid":
                res = [self._hybrid_one(dq, sq, k, hybrid)  # hybrid_search takes one query per call
                       for dq, sq in zip(list(queries.dense), _sparse_rows(queries.sparse))]
            else:
                data = list(queries.dense) if mode == "dense" else _sparse_rows(queries.sparse)
                res = self.client.search(self.collection, data=data, anns_field=mode, limit=k,
                                         search_params={"metric_type": "IP"})
        ids = np.full((len(queries), k), -1, np.int64)
        scores = np.full((len(queries), k), -np.inf, np.float32)
        for qi, hits in enumerate(res):
            for r, h in enumerate(list(hits)[:k]):
                ids[qi, r], scores[qi, r] = int(h["id"]), h["distance"]
        return SearchResult(ids, scores, None, self.n_docs)

    def _hybrid_one(self, dq, sq, k: int, hybrid):
        """One query's fused hits: ``WeightedRanker(w1 / tau, w2)`` over a dense and a sparse sub-search = S_x."""
        pymilvus = _pymilvus()
        ranker = pymilvus.WeightedRanker(hybrid.w1 / hybrid.tau, hybrid.w2, norm_score=False)
        reqs = [pymilvus.AnnSearchRequest(data=[q], anns_field=field, param={"metric_type": "IP"},
                                          limit=self.candidates) for q, field in ((dq, "dense"), (sq, "sparse"))]
        return self.client.hybrid_search(self.collection, reqs, ranker, limit=k)[0]


def _sparse_rows(Q: sp.csr_matrix) -> list[dict]:
    """Milvus's sparse vector format: one ``{term: weight}`` dict per row."""
    return [dict(zip(Q.indices[Q.indptr[i]:Q.indptr[i + 1]].tolist(), Q.data[Q.indptr[i]:Q.indptr[i + 1]].tolist()))
            for i in range(Q.shape[0])]


def _rows(docs: Vectors, s: int, e: int) -> list[dict]:
    """Documents s..e-1 as Milvus rows: ``id`` (row number), ``dense`` and / or ``sparse``."""
    rows = [{"id": i} for i in range(s, e)]
    if docs.dense is not None:
        for r, v in zip(rows, docs.dense[s:e]):
            r["dense"] = v
    if docs.sparse is not None:
        for r, z in zip(rows, _sparse_rows(docs.sparse[s:e])):
            r["sparse"] = z
    return rows


def _create_collection(client, collection: str, docs: Vectors, meta: dict) -> None:
    """The schema (``id``; ``dense`` FLAT / IP; ``sparse`` SPARSE_INVERTED_INDEX / IP) with ``meta`` as a property."""
    DataType = _pymilvus().DataType
    schema = client.create_schema(auto_id=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    ip = client.prepare_index_params()
    if docs.dense is not None:
        schema.add_field("dense", DataType.FLOAT_VECTOR, dim=docs.dim)
        ip.add_index("dense", index_type="FLAT", metric_type="IP")
    if docs.sparse is not None:
        schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
        ip.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="IP")
    client.create_collection(collection, schema=schema, index_params=ip, properties={"jsdlib": json.dumps(meta)})
