"""Resumable training state: atomic checkpoint files and restoring a run where it stopped.

The training loop :func:`jsdlib.common.fit.fit` saves after every epoch with :func:`save_state`: model, optimiser,
scheduler, the batch generator's RNG state and a JSON blob of the loop's own bookkeeping, tagged with an
identity string (configuration digest + data). :func:`restore_state` loads it back with
``torch.load(..., weights_only=True)`` and refuses a file that belongs to another run, so a killed run
resumes bit for bit and a stale one is never picked up by mistake. A run folder is derived data: an unreadable
``last.pt`` / ``best.pt`` is reported with its path, discarded, and the run starts over (:func:`open_run`).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from jsdlib.common.integrity import IntegrityError, discard_derived
from jsdlib.common.io import save_torch


def save_state(path, ident: str, model, opt, sched, gen: torch.Generator, state: dict, **extra) -> None:
    """Everything needed to continue a training loop after its last finished epoch."""
    save_torch({"ident": ident, "model": model.state_dict(), "optimizer": opt.state_dict(),
                 "scheduler": sched.state_dict(), "generator": gen.get_state(), "state": json.dumps(state),
                 **extra}, path)


def load_checkpoint(path):
    """``torch.load(path, weights_only=True)``, or :class:`jsdlib.common.integrity.IntegrityError` naming an unreadable file."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:  # truncated / foreign file: EOFError, RuntimeError, UnpicklingError, ...
        raise IntegrityError(f"checkpoint {path} is unreadable ({type(e).__name__}: {e})") from e


def restore_state(path, ident: str, model, opt, sched, gen: torch.Generator, strict: bool = True) -> tuple[dict, dict]:
    """Load a :func:`save_state` file into the given objects; returns (loop state, the file's extra entries).

    An unreadable file raises :class:`jsdlib.common.integrity.IntegrityError` before any object is changed.
    """
    ck = load_checkpoint(path)
    if ck.get("ident") != ident:
        raise ValueError(f"{path} belongs to another run ({ck.get('ident')} != {ident}); use a new run folder "
                         "or resume=False")
    model.load_state_dict(ck["model"], strict=strict)
    opt.load_state_dict(ck["optimizer"])
    sched.load_state_dict(ck["scheduler"])
    gen.set_state(ck["generator"])
    extra = {k: v for k, v in ck.items() if k not in ("ident", "model", "optimizer", "scheduler", "generator", "state")}
    return json.loads(ck["state"]), extra


def open_run(run_dir, ident: str, model, opt, sched, gen: torch.Generator, state: dict, resume: bool = True,
             kind: str = "run", log=print) -> tuple[Path | None, dict, dict, dict | None]:
    """Prepare a run folder: resume from ``run_dir/last.pt`` if asked and present, and load ``best.pt``.

    Returns ``(run_dir or None, loop state, the checkpoint's extra entries, best weights or None)``; with
    ``run_dir=None`` nothing is read and ``state`` comes back as given.
    """
    if run_dir is None:
        return None, state, {}, None
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    extra, best = {}, None
    last, best_path = run_dir / "last.pt", run_dir / "best.pt"
    if resume and last.exists():
        try:
            best = load_checkpoint(best_path) if best_path.exists() else None
            state, extra = restore_state(last, ident, model, opt, sched, gen)
            log(f"{kind}: resumed from {last} after epoch {state['epoch']}")
        except IntegrityError as e:  # derived data: say so, drop the run's files, start over
            for p in (last, best_path):
                if p.exists():
                    discard_derived(p, e)
            best = None
    if state["best"] is not None and best is None and best_path.exists():
        best = load_checkpoint(best_path)
    return run_dir, state, extra, best
