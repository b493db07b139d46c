"""What a saved index was built from (split, model digest, back end, size) and the sha256 of its files.

Recorded in the index's ``meta.json`` (Milvus Lite: ``<file>.jsdlib.json``); a search with other expectations
raises :class:`jsdlib.index.types.IndexMismatchError` instead of returning ids of other documents.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jsdlib.common.io import write_json
from jsdlib.index.base import _meta_path
from jsdlib.index.milvus import is_remote
from jsdlib.index.types import IndexMismatchError


def _provenance_file(name: str, path) -> Path | None:
    """Where an index records what it was built from: its ``meta.json`` (Milvus Lite: ``<file>.jsdlib.json``)."""
    if name == "milvus":
        return None if is_remote(path) else Path(str(path) + ".jsdlib.json")
    return _meta_path(path)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _index_files(path) -> dict[str, str]:
    """sha256 of every file of a saved index folder except its ``meta.json``."""
    return {p.name: _sha256(p) for p in sorted(Path(path).iterdir())
            if p.is_file() and p.name != "meta.json" and not p.name.endswith(".tmp")}


def record_provenance(name: str, path, provenance: dict) -> None:
    """Add ``provenance`` (e.g. split, model digest; plus back end and document count) to a saved index, and the
    sha256 of each of its files (folder back ends; :func:`open_backend` checks them)."""
    f = _provenance_file(name, path)
    if f is None:
        return
    meta = json.loads(f.read_text()) if f.is_file() and name != "milvus" else {}
    meta["provenance"] = dict(provenance)
    if name != "milvus":
        meta["files"] = _index_files(path)
    write_json(meta, f, indent=1)


def check_provenance(name: str, path, expected: dict) -> None:
    """Raise :class:`IndexMismatchError` unless the index at ``path`` was built from ``expected`` (key by key)."""
    f = _provenance_file(name, path)
    if f is None:
        return
    try:
        meta = json.loads(f.read_text()) if f.is_file() else {}
        got = meta.get("provenance")
    except (ValueError, UnicodeDecodeError) as e:
        raise IndexMismatchError(f"{name}: index metadata {f} is unreadable ({e}); rebuild the index") from None
    if not isinstance(got, dict):
        raise IndexMismatchError(f"{name}: the index at {path} does not record what it was built from (split, "
                                 "model); rebuild it with `jsdlib index build`")
    bad = [f"{k}: index {got.get(k)!r}, asked {v!r}" for k, v in expected.items() if got.get(k) != v]
    if bad:
        raise IndexMismatchError(f"{name}: the index at {path} was built from other documents ({'; '.join(bad)}); "
                                 "search with the index's own settings or rebuild it with `jsdlib index build`")
    files = meta.get("files") if name != "milvus" else None
    for fname, digest in (files or {}).items():
        p = Path(path) / fname
        if not p.is_file() or _sha256(p) != digest:
            raise ValueError(f"{name}: index file {p} is {'missing' if not p.is_file() else 'corrupted'} (its "
                             "sha256 differs from the one recorded at build time); rebuild it with `jsdlib index build`")

