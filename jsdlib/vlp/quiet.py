"""Quiet model loading: transformers' load report and progress bars, and open_clip's root-logger records, hidden
for one block and put back exactly as they were afterwards."""
from __future__ import annotations

import contextlib
import logging
from typing import Iterator


@contextlib.contextmanager
def quiet_loading(level: int | None = None) -> Iterator[None]:
    """Silence transformers' load report / progress bar and open_clip's log records below ``level`` for the block
    (default ERROR: hides 'initialized partially'; the offline tag path uses CRITICAL since it re-raises).

    On exit everything is as before: transformers' verbosity and progress-bar switch, the root logger's level,
    and its handlers (``logging.info`` adds one to a root logger that has none: it is removed again).
    """
    import transformers  # noqa: PLC0415 (heavy: only loaded when a model is)

    tlog = transformers.utils.logging
    old_verbosity, old_bar = tlog.get_verbosity(), tlog.is_progress_bar_enabled()
    root = logging.getLogger()
    old_level, old_handlers = root.level, list(root.handlers)
    tlog.set_verbosity_error()
    tlog.disable_progress_bar()
    root.setLevel(logging.ERROR if level is None else level)
    try:
        yield
    finally:
        tlog.set_verbosity(old_verbosity)
        (tlog.enable_progress_bar if old_bar else tlog.disable_progress_bar)()
        root.setLevel(old_level)
        for h in [h for h in root.handlers if h not in old_handlers]:
            root.removeHandler(h)


__all__ = ["quiet_loading"]
