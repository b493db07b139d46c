"""Integrity of the files jsdlib writes and reads: content digests, finite weights, derived vs input files.

Every safetensors file jsdlib writes (cached features, the stand-in / JSD / CMC checkpoints) carries
``content_sha256`` in its header: the sha256 of its *content* (the other header entries as sorted JSON, then each
tensor's name, dtype, shape and bytes, in name order). :func:`load_safetensors` recomputes it on load, so a flipped
byte, a zeroed tensor or a truncated file is caught instead of giving silently wrong numbers. The committed assets
(``jsdlib/assets/*.safetensors``) predate the header entry: their digests are recorded in
``jsdlib/assets/digests.json`` and checked the same way (``tests/test_integrity.py`` recomputes them). Loaded
floating-point weights must be finite.

Two kinds of failures, two reactions:

- a **derived** file (a feature cache entry, a ``reproduce`` step result) that cannot be read or fails its check
  is reported with a :class:`DerivedFileWarning` naming its path, deleted and recomputed;
- an **input** (a checkpoint, a data set, an index) that cannot be read is an :class:`IntegrityError` naming it.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from jsdlib.common.io import atomic_path, atomic_write
from jsdlib.common.paths import ASSETS

DIGEST_KEY = "content_sha256"
ASSET_DIGESTS = ASSETS / "digests.json"


class IntegrityError(ValueError):
    """A file cannot be read, does not match its recorded digest, or holds non-finite weights."""


class DerivedFileWarning(UserWarning):
    """A derived file (cache entry, step result) was unreadable: it is discarded and recomputed."""


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict | None = None) -> str:
    """sha256 over the header entries (minus ``content_sha256``) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256()
    meta = {k: v for k, v in (metadata or {}).items() if k != DIGEST_KEY}
    h.update(json.dumps(meta, sort_keys=True).encode())
    for k in sorted(tensors):
        t = tensors[k].detach().cpu().contiguous().reshape(-1)
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def safetensors_digest(path: str | Path) -> str:
    """sha256 of a safetensors file's *content*: tensors (name, dtype, shape, bytes) and metadata, in sorted order.

    The file bytes are not stable: safetensors writes the metadata keys in hash-map order, so saving the same
    weights twice can give two different files. This digest is the same for the same content.
    """
    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as fh:
        h.update(json.dumps(fh.metadata() or {}, sort_keys=True).encode())
        for k in sorted(fh.keys()):
            t = fh.get_tensor(k).contiguous().reshape(-1)
            h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_safetensors(tensors: dict[str, torch.Tensor], path, metadata: dict | None = None) -> Path:
    """Write ``tensors`` atomically (temporary file, then rename) with ``content_sha256`` in the header."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    meta[DIGEST_KEY] = content_digest(tensors, meta)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    if path.resolve().parent == ASSETS and ASSET_DIGESTS.is_file():  # re-exported asset: keep the record current
        recorded = json.loads(ASSET_DIGESTS.read_text())
        recorded[path.name] = meta[DIGEST_KEY]
        atomic_write(ASSET_DIGESTS, json.dumps(recorded, indent=1) + "\n")
    return path


def recorded_asset_digest(path) -> str | None:
    """The digest ``jsdlib/assets/digests.json`` records for ``path`` if it is a committed asset, else None."""
    path = Path(path).resolve()
    if path.parent != ASSETS or not ASSET_DIGESTS.is_file():
        return None
    return json.loads(ASSET_DIGESTS.read_text()).get(path.name)


def check_finite(tensors: dict[str, torch.Tensor], path, what: str = "file") -> None:
    """Raise :class:`IntegrityError` naming the first floating-point tensor with a NaN or infinite value."""
    for k in sorted(tensors):
        t = tensors[k]
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise IntegrityError(f"{what} {path}: tensor {k!r} holds NaN or infinite values (corrupted file?)")


def load_safetensors(path, what: str = "file", fix: str = "", finite: bool = True
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """``(tensors, header metadata)`` of a safetensors file, checked: readable, digest, finite weights.

    ``what`` names the file in messages ("checkpoint", "cached features"); ``fix`` says what to do about it.
    Files without a recorded digest (written before jsdlib recorded them, and not a committed asset) are only
    checked for readability and finite weights.
    """
    path = Path(path)
    hint = f"; {fix}" if fix else ""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}{hint}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = dict(fh.metadata() or {})
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as e:  # SafetensorError, OSError, ...: the file is not a readable safetensors file
        raise IntegrityError(f"{what} {path} is unreadable ({type(e).__name__}: {e}){hint}") from e
    want = meta.get(DIGEST_KEY) or recorded_asset_digest(path)
    if want is not None and content_digest(tensors, meta) != want:
        raise IntegrityError(f"{what} {path} does not match its recorded content digest (corrupted or modified)"
                             f"{hint}")
    if finite:
        check_finite(tensors, path, what)
    return tensors, meta


def discard_derived(path, reason) -> None:
    """Warn that the derived file ``path`` is unreadable (``reason``), then delete it so it is recomputed."""
    warnings.warn(f"jsdlib: discarding unreadable {path} ({reason}); recomputing it", DerivedFileWarning,
                  stacklevel=3)
    try:
        Path(path).unlink()
    except FileNotFoundError:
        pass


def read_derived_json(path) -> dict | None:
    """A derived JSON file (e.g. a step result), or None after :func:`discard_derived` if it cannot be read."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, got {type(doc).__name__}")
        return doc
    except (ValueError, UnicodeDecodeError) as e:
        discard_derived(path, f"{type(e).__name__}: {e}")
        return None


__all__ = ["IntegrityError", "DerivedFileWarning", "content_digest", "save_safetensors", "load_safetensors",
           "check_finite", "recorded_asset_digest", "discard_derived", "read_derived_json", "DIGEST_KEY",
           "file_sha256", "safetensors_digest"]
