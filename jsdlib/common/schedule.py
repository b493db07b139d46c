"""One learning-rate schedule: linear warm-up, then linear or cosine decay to 0 (every jsdlib trainer uses it).

With ``W`` warm-up steps out of ``T`` (0-based step ``s``)::

    f(s) = (s + 1) / W                                   s < W   (the first step already moves: 1/W, not 0)
    f(s) = (T - s) / (T - W)                             s >= W, linear
    f(s) = (1 + cos(pi * (s - W) / (T - W))) / 2         s >= W, cosine

``W = warmup_steps(T, frac)``. The trainers of jsdlib 0.1 rounded ``frac * T`` differently (JSD and the stand-in
truncate, the bi-encoder and CMC round to nearest); ``rounding`` keeps each one's choice so that retraining gives
the same numbers as before (docs/decisions.md, "Schedules").
"""
from __future__ import annotations

import math

import torch


def warmup_steps(total: int, frac: float, rounding: str = "floor") -> int:
    """``W``: ``frac`` of ``total`` steps, at least 1; ``rounding`` is ``"floor"`` or ``"nearest"``."""
    if rounding not in ("floor", "nearest"):
        raise ValueError(f"rounding must be 'floor' or 'nearest', got {rounding!r}")
    w = int(frac * total) if rounding == "floor" else int(round(frac * total))
    return max(1, w)


def lr_factor(step: int, total: int, warmup: int, decay: str = "linear") -> float:
    """The factor ``f(s)`` above for step ``step`` of ``total`` with ``warmup`` warm-up steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if decay == "linear":
        return max(0.0, (total - step) / max(1, total - warmup))
    if decay == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    raise ValueError(f"decay must be 'linear' or 'cosine', got {decay!r}")


def warmup_decay(opt: torch.optim.Optimizer, total: int, warmup_frac: float, decay: str = "linear",
                 rounding: str = "floor") -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` that multiplies the optimiser's learning rate by ``f(s)`` after each step."""
    w = warmup_steps(total, warmup_frac, rounding)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, w, decay))
