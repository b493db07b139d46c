"""One atomic write: every file jsdlib produces goes through :func:`atomic_write`, so a kill never leaves half a file.

The content is written to a temporary file next to the target (``<name>.<unique>.tmp``: two processes writing the
same cache entry never share one) and renamed over it (``os.replace`` is atomic on one file system): readers see
the old file or a new one, never a mixture.
"""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on a clean exit it replaces ``path``, on an error it is removed.

    For writers that want a file name (``torch.save``, ``np.save``, safetensors, Milvus Lite)::

        with atomic_path(out) as tmp:
            torch.save(obj, tmp)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write(path: str | Path, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    return Path(path)


def write_json(obj: Any, path: str | Path, indent: int | None = 1, default=None) -> Path:
    """``json.dumps(obj)`` written atomically (the results files of experiments and reproduce)."""
    return atomic_write(path, json.dumps(obj, indent=indent, default=default))


def save_torch(obj: Any, path: str | Path) -> Path:
    """``torch.save`` atomically: a kill never leaves a half-written checkpoint."""
    import torch  # noqa: PLC0415 (torch is heavy; common.io is also used by torch-free data builders)

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)
