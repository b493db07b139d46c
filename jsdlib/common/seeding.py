"""Seeds and threads without touching global state: library functions use these context managers.

``seeded(seed)`` runs a block with torch's global RNG seeded (model initialisation and dropout draw from it) and
puts the caller's RNG state back afterwards; ``num_threads(n)`` does the same for torch's intra-op thread count.
Batch order and sampling use an explicit ``torch.Generator`` (:func:`generator`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch


def generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (batch order, negative sampling, augmentation)."""
    return torch.Generator().manual_seed(int(seed))


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed torch's global RNG for the block; the caller's RNG state is restored on exit."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


@contextmanager
def num_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` (``None`` or ``<= 0``: leave it); restore it on exit."""
    before = torch.get_num_threads()
    if n is not None and n > 0:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
