"""What every data builder writes, and how: hashes, the data-set JSON, gzip JSON lines, image sampling, clean-up.

Every write goes through :mod:`jsdlib.common.io` (atomic), and every output is byte-deterministic: sorted
records, no timestamps (gzip ``mtime=0``), fixed separators.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from jsdlib.common.io import atomic_write


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def progress(items, enabled: bool, desc: str):
    """``items`` with a tqdm bar when ``enabled``."""
    return tqdm(items, desc=desc, leave=False) if enabled else items


def sample_evenly(items: list, sample: int | None) -> list:
    """``sample`` evenly spaced items (first and last included), or all of them when ``sample`` is None."""
    if sample is None:
        return items
    picks = np.unique(np.linspace(0, len(items) - 1, min(sample, len(items))).round().astype(int))
    return [items[i] for i in picks]


def remove_stale(folder: Path, keep: set[Path]) -> None:
    """Delete every PNG below ``folder`` that is not in ``keep``, so the folder holds exactly the set."""
    for stale in Path(folder).rglob("*.png"):
        if stale not in keep:
            stale.unlink()


def write_dataset_json(path: Path, dataset: dict) -> None:
    """Write the Karpathy JSON with one image per line (valid JSON, readable diffs, UTF-8)."""
    def dump(obj):
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

    lines = ['{"dataset":' + dump(dataset["dataset"]) + ',"images":[']
    lines += [dump(r) + ("," if i < len(dataset["images"]) - 1 else "") for i, r in enumerate(dataset["images"])]
    lines += ['],"build":' + json.dumps(dataset["build"], ensure_ascii=False, indent=1) + "}"]
    atomic_write(path, "\n".join(lines) + "\n")


def jsonl_bytes(records: list[dict]) -> bytes:
    """JSON lines (UTF-8, non-ASCII kept), one record a line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_gz(path: Path, raw: bytes) -> None:
    """gzip with no file name and mtime 0 in the header, level 9: the same bytes give the same file."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as gz:
        gz.write(raw)
    atomic_write(path, buf.getvalue())


__all__ = ["sha256_file", "progress", "sample_evenly", "remove_stale", "write_dataset_json", "jsonl_bytes",
           "write_gz"]
