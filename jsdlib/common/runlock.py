"""One process at a time in a run folder: an advisory lock, and a marker that says a training has finished.

Two processes that train the same run (``fit(run_dir=...)``: the same configuration, data and folder) would both
write its ``last.pt``. ``reproduce --workers 2`` can ask for the same training from two steps (the L1 sweep's x1
JSD point *is* the JSD comparison's seed-0 run), so :func:`jsdlib.common.fit.fit` holds :func:`run_lock` while it
trains: the second caller waits, then finds the run finished and only loads it. :func:`finished` tells whether a
folder holds a finished run without loading it (the marker ``fit`` writes when the loop ends).

The lock is ``fcntl.flock`` on ``run_dir/.lock`` (released by the kernel if the process dies); where ``fcntl``
does not exist (Windows) it is a no-op, which is safe for one process at a time.
"""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

DONE = "finished"


@contextmanager
def run_lock(run_dir, blocking: bool = True) -> Iterator[bool]:
    """Hold the lock of ``run_dir`` (created if missing) for the block; yields whether it was acquired
    (always ``True`` when ``blocking``)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        yield True
        return
    with open(run_dir / ".lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def mark_finished(run_dir, ident: str) -> None:
    """Record that the run ``ident`` in ``run_dir`` has finished (its ``last.pt`` holds the final state)."""
    (Path(run_dir) / DONE).write_text(ident + "\n")


def finished(run_dir, ident: str | None = None) -> bool:
    """Whether ``run_dir`` holds a finished run (of ``ident``, when given), without loading its checkpoints."""
    p = Path(run_dir) / DONE
    if not p.is_file():
        return False
    return ident is None or p.read_text().strip() == ident


__all__ = ["run_lock", "mark_finished", "finished"]
