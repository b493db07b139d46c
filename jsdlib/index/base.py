"""The one interface every search back end implements (:class:`Backend`), and the folder metadata they share.

``build(docs, path=None)``, ``open(path)``, ``search(queries, k, mode)`` -> :class:`SearchResult`, ``save(path)``;
:data:`jsdlib.index.registry.BACKENDS` names them (one module each: ``exact``, ``brute``, ``faiss_backend``,
``seismic``, ``milvus``).
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from jsdlib.common.io import atomic_path, write_json
from jsdlib.index.types import HybridWeights, SearchResult, Vectors, _check_k, _check_queries


def _optional(module: str, backend: str, pip_name: str):
    """Import an optional engine's module (faiss, seismic, pymilvus), or say which package the back end needs.

    The one place an engine is imported: jsdlib imports without them, and a back end fails with one clear line.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:  # pragma: no cover - the engines are dependencies
        raise ImportError(f"the {backend} back end needs {pip_name} (pip install {pip_name})") from e


class Backend:
    """One small interface over every search back end.

    ``Backend.build(docs, path=None, **options)`` indexes :class:`Vectors` (and writes them under ``path`` when
    given), ``Backend.open(path)`` reopens a saved index (after a restart), ``search(queries, k, mode, hybrid)``
    returns a :class:`SearchResult` with ids = row numbers of ``docs``; ``mode`` is one of ``self.modes``
    (``"sparse"``, ``"dense"``, ``"hybrid"``), ``hybrid`` a :class:`HybridWeights` for ``mode="hybrid"``.
    """

    name = "base"
    modes: tuple = ()
    approximate = False

    n_docs: int = 0
    dim: int | None = None
    vocab_size: int | None = None

    @classmethod
    def build(cls, docs: Vectors, path=None, **options) -> "Backend":
        raise NotImplementedError

    @classmethod
    def open(cls, path, **options) -> "Backend":
        raise NotImplementedError

    def save(self, path) -> None:
        raise NotImplementedError

    def search(self, queries: Vectors, k: int = 10, mode: str = "sparse",
               hybrid: HybridWeights | None = None) -> SearchResult:
        raise NotImplementedError

    def _check(self, queries, k, mode, hybrid) -> tuple[Vectors, int]:
        if not isinstance(queries, Vectors):
            raise TypeError(f"{self.name}: queries must be a jsdlib.index.Vectors, got {type(queries).__name__}")
        if mode not in self.modes:
            raise ValueError(f"{self.name}: mode {mode!r} not supported (supported: {', '.join(self.modes)})")
        _check_queries(queries, mode, self.dim, self.vocab_size, self.name)
        if mode == "hybrid" and not isinstance(hybrid, HybridWeights):
            raise ValueError(f"{self.name}: mode 'hybrid' needs hybrid=HybridWeights(w1, w2, tau)")
        return queries, min(_check_k(k), self.n_docs)

    def _saved(self, path) -> "Backend":
        """``self``, saved under ``path`` first when one is given (how every ``build`` ends)."""
        if path is not None:
            self.save(path)
        return self

    def _write_meta(self, path, **extra) -> None:
        """The folder's ``meta.json``: back end, sizes and ``extra`` (what :meth:`open` needs), atomically."""
        write_json({"backend": self.name, "n_docs": self.n_docs, "dim": self.dim, "vocab_size": self.vocab_size,
                    **extra}, _meta_path(path), indent=1)


def _check_corpus(docs, backend: str) -> None:
    """Refuse an empty corpus before an engine sees it (faiss asserts, Seismic panics in Rust)."""
    if not isinstance(docs, Vectors):
        raise TypeError(f"{backend}: documents must be a jsdlib.index.Vectors, got {type(docs).__name__}")
    if len(docs) == 0:
        raise ValueError(f"{backend}: the corpus is empty (0 documents); index at least one document")


def _meta_path(path) -> Path:
    """A saved index folder's metadata file (back end, sizes; provenance when recorded)."""
    return Path(path) / "meta.json"


def save_array(path, array) -> None:
    """``np.save`` (dense) or ``sp.save_npz`` (sparse) to exactly ``path``, atomically (no suffix appended)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        if sp.issparse(array):
            sp.save_npz(fh, array)
        else:
            np.save(fh, array)


def _read_meta(path, backend: str) -> dict:
    m = _meta_path(path)
    if not m.is_file():
        raise FileNotFoundError(f"{backend}: no saved index at {path} (missing {m.name})")
    try:
        meta = json.loads(m.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{backend}: index metadata {m} is unreadable ({e}); rebuild the index") from None
    if not isinstance(meta, dict) or meta.get("backend") != backend:
        raise ValueError(f"{backend}: {path} holds a {meta.get('backend') if isinstance(meta, dict) else None!r} "
                         "index")
    return meta

