"""Dense text -> image retrieval of a stand-in VLP on the multi-style emoji set, per subset (issue 14).

The multi-style test (val) split holds the Noto split, whose images carry a ``subset`` label, and the OpenMoji
gallery of the same concepts in a style that is never trained on (:mod:`jsdlib.data.emoji_styles`)::

    seen          a Noto variant of the concept is in training
    cross-style   the concept is in training only as renderings in the other styles (Twemoji, Fluent)
    unseen        the concept is in training in no style
    unseen-style  the OpenMoji rendering of a test concept, in a gallery of OpenMoji images only

Each Noto subset's captions are ranked against **all** Noto images of the split (500), so its R@1 reads on the
same scale as the whole split's (the README's "unseen-concept queries" row ranks the same way); the unseen-style
captions are ranked against the 500 OpenMoji images. ``t2i R@1`` = share of captions whose own image ranks first.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jsdlib.common.metrics import t2i_metrics
from jsdlib.common.seeding import num_threads
from jsdlib.vlp.standin import load_standin
from jsdlib.vlp.train_standin import _images, _pooled_text

NOTO_SUBSETS = ("seen", "cross-style", "unseen")
GALLERY = "unseen-style"


@torch.no_grad()
def _embed(model, preprocess, tokenizer, split) -> tuple[torch.Tensor, torch.Tensor]:
    model.eval()
    imgs = _images(split, preprocess)
    v = torch.cat([model.encode_image(imgs[s:s + 256], normalize=True) for s in range(0, len(imgs), 256)])
    t = F.normalize(model.text.proj(_pooled_text(model, tokenizer, split.captions)), dim=-1)
    return v, t


def _t2i(v: torch.Tensor, t: torch.Tensor, split, images: list[int], queries_of: list[int]) -> dict:
    """t2i metrics of the captions of images ``queries_of`` ranked against the images ``images``."""
    pos = {i: n for n, i in enumerate(images)}
    caps = [c for i in queries_of for c in split.image_to_captions[i]]
    c2i = np.asarray([pos[int(split.caption_to_image[c])] for c in caps], dtype=np.int64)
    scores = (t[caps] @ v[images].T).numpy()
    return {**t2i_metrics(scores, c2i), "queries": len(caps), "images": len(images)}


def subset_metrics(model, preprocess, tokenizer, split) -> dict:
    """``{"noto": row, "seen": row, "cross-style": row, "unseen": row, "unseen-style": row}`` of t2i metrics
    (module docstring) on a multi-style split (``jsdlib.data.emoji_styles.load(split)``). Subsets absent from
    the split are left out; a split without ``style`` labels raises ``ValueError``."""
    meta = split.image_meta
    if not meta or any("style" not in m for m in meta):
        raise ValueError("subset_metrics needs the multi-style split (jsdlib.data.emoji_styles.load): "
                         "every image must carry a 'style' label")
    v, t = _embed(model, preprocess, tokenizer, split)
    noto = [i for i, m in enumerate(meta) if m["style"] == "noto"]
    gallery = [i for i, m in enumerate(meta) if m.get("subset") == GALLERY]
    out = {}
    if noto:
        out["noto"] = _t2i(v, t, split, noto, noto)
        for name in NOTO_SUBSETS:
            mine = [i for i in noto if meta[i].get("subset") == name]
            if mine:
                out[name] = _t2i(v, t, split, noto, mine)
    if gallery:
        out[GALLERY] = _t2i(v, t, split, gallery, gallery)
    return out


def standin_subset_metrics(checkpoint: str | Path | None = None, split: str = "test", threads: int = 2) -> dict:
    """:func:`subset_metrics` of a stand-in checkpoint (default: the committed one) on a multi-style split."""
    from jsdlib.data import emoji_styles
    with num_threads(threads):
        vlp = load_standin(checkpoint)
        return subset_metrics(vlp.model, vlp.preprocess, vlp.tokenizer, emoji_styles.load(split))


def standin_pinned_ranks(checkpoint: str | Path | None, names: tuple[str, ...], threads: int = 2) -> dict:
    """``{name: {"split": "val" | "test", "above": n}}``: for each Noto val or test image whose first caption is one
    of ``names`` (e.g. ``"octopus"``), how many Noto images of its split the stand-in scores strictly above it for
    that caption (0: the tower ranks it first). A sparse head trained on this tower can hardly put the name among the
    image's top terms when many images outrank it for the name itself (issue 14's pinned images). Names of training
    images are left out; a name held by two images of one split raises ``ValueError``."""
    from jsdlib.data import emoji_styles
    out = {}
    with num_threads(threads):
        vlp = load_standin(checkpoint)
        for split in ("val", "test"):
            data = emoji_styles.load(split)
            noto = [i for i, m in enumerate(data.image_meta) if m["style"] == "noto"]
            mine = {n: [i for i in noto if data.captions_of(i)[0] == n] for n in names}
            if not any(mine.values()):
                continue
            if any(len(h) > 1 for h in mine.values()):
                raise ValueError(f"standin_pinned_ranks: a name names several Noto {split} images: {mine}")
            v, t = _embed(vlp.model, vlp.preprocess, vlp.tokenizer, data)
            for name, hits in mine.items():
                if hits:
                    scores = t[data.image_to_captions[hits[0]][0]] @ v[noto].T
                    out[name] = {"split": split, "above": int((scores > scores[noto.index(hits[0])]).sum())}
    return out


__all__ = ["NOTO_SUBSETS", "GALLERY", "subset_metrics", "standin_subset_metrics", "standin_pinned_ranks"]
