"""The back ends by name (:data:`BACKENDS`), and :func:`build_backend` / :func:`open_backend`, which record and
check what a saved index was built from (:mod:`jsdlib.index.provenance`)."""
from __future__ import annotations

from pathlib import Path

from jsdlib.index.base import Backend, _meta_path
from jsdlib.index.brute import BruteForceBackend
from jsdlib.index.exact import ExactBackend
from jsdlib.index.faiss_backend import FaissBackend
from jsdlib.index.milvus import MilvusBackend, is_remote
from jsdlib.index.provenance import check_provenance, record_provenance
from jsdlib.index.seismic import SeismicBackend
from jsdlib.index.types import Vectors

BACKENDS: dict[str, type] = {"exact": ExactBackend, "brute": BruteForceBackend, "faiss": FaissBackend,
                             "seismic": SeismicBackend, "milvus": MilvusBackend}


def _backend_class(name: str) -> type[Backend]:
    if name not in BACKENDS:
        raise ValueError(f"unknown back end {name!r}; choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


def build_backend(name: str, docs: Vectors, path=None, provenance: dict | None = None, **options) -> Backend:
    """``BACKENDS[name].build(docs, path, **options)`` with a clear error for an unknown name.

    ``provenance`` (with ``path``): what the documents are (e.g. ``{"split": "test", "model": digest}``), recorded
    with the index together with the back end and the document count; :func:`open_backend` checks it.
    """
    b = _backend_class(name).build(docs, path, **options)
    if path is not None and provenance is not None:
        record_provenance(name, path, {**provenance, "backend": name, "n_docs": len(docs)})
    return b


def open_backend(name: str, path, expect: dict | None = None, **options) -> Backend:
    """Reopen a back end saved at ``path`` (a folder; for Milvus the ``.db`` file or server URI).

    ``expect``: what the caller searches (e.g. ``{"split", "model", "n_docs"}``); a saved index built from
    anything else raises :class:`IndexMismatchError` instead of returning ids of other documents.
    """
    cls = _backend_class(name)
    if expect is not None:
        exists = Path(path).exists() if name == "milvus" else _meta_path(path).is_file()
        if not exists and not is_remote(path):
            raise FileNotFoundError(f"{name}: no saved index at {path}; build it with `jsdlib index build`")
        check_provenance(name, path, {**expect, "backend": name})
    return cls.open(path, **options)
