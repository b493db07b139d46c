"""One epoch of in-batch training pairs (arXiv 2508.16707: rows = images, columns = captions, labels = arange(B)).

By default every image appears once per epoch, with one of its captions drawn at random each time
(``sampling="images"``), so an image never appears twice in a batch and there are no duplicate-image false
negatives to drop. ``sampling="captions"`` walks over all captions instead; then ``drop_duplicates=True``
(default) keeps only the first caption of an image within a batch.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from jsdlib.jsd.presets import JSDConfig


def _caption_table(image_to_captions) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    counts = torch.tensor([len(c) for c in image_to_captions])
    if (counts == 0).any():
        raise ValueError(f"image {int((counts == 0).nonzero()[0])} has no caption")
    flat = torch.tensor([c for cs in image_to_captions for c in cs])
    offsets = torch.cumsum(counts, 0) - counts
    return flat, offsets, counts


def epoch_batches(feats, batch_size: int, gen: torch.Generator, sampling: str = "images",
                  drop_duplicates: bool = True) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """One epoch of (caption indices, image indices) batches, drawn with ``gen``.

    ``"images"``: images shuffled, one random caption each (no image twice in a batch). ``"captions"``: all
    captions shuffled; with ``drop_duplicates`` a caption whose image is already in the batch is dropped.
    A trailing batch of one pair is merged into the previous batch.
    """
    n_img = len(feats.image_to_captions)
    if sampling == "images":
        flat, offsets, counts = _caption_table(feats.image_to_captions)
        order = torch.randperm(n_img, generator=gen)
        pick = (torch.rand(n_img, generator=gen) * counts[order]).long()
        caps = flat[offsets[order] + pick]
        pairs = [(caps[s:s + batch_size], order[s:s + batch_size]) for s in range(0, n_img, batch_size)]
    elif sampling == "captions":
        c2i = torch.as_tensor(np.asarray(feats.caption_to_image), dtype=torch.long)
        order = torch.randperm(len(c2i), generator=gen)
        pairs = []
        for s in range(0, len(order), batch_size):
            caps = order[s:s + batch_size]
            imgs = c2i[caps]
            if drop_duplicates:
                seen, keep = set(), []
                for k, i in enumerate(imgs.tolist()):
                    if i not in seen:
                        seen.add(i)
                        keep.append(k)
                caps, imgs = caps[keep], imgs[keep]
            pairs.append((caps, imgs))
    else:
        raise ValueError(f"sampling must be 'images' or 'captions', got {sampling!r}")
    if len(pairs) > 1 and len(pairs[-1][0]) < 2:
        (c1, i1), (c2, i2) = pairs[-2], pairs.pop()
        pairs[-1] = (torch.cat([c1, c2]), torch.cat([i1, i2]))
        if drop_duplicates and len(set(pairs[-1][1].tolist())) < len(pairs[-1][1]):
            pairs[-1] = (c1, i1)
    return pairs


def steps_per_epoch(feats, cfg: JSDConfig) -> int:
    """Number of optimiser steps in one epoch (the batch count of :func:`epoch_batches`)."""
    n = len(feats.image_to_captions) if cfg.sampling == "images" else len(feats.caption_to_image)
    k = math.ceil(n / cfg.batch_size)
    return k - 1 if k > 1 and n % cfg.batch_size == 1 else k


__all__ = ["epoch_batches", "steps_per_epoch"]
