"""The caption-word loss (issue 14; a jsdlib addition, in neither JSD nor D2S): the sparse head is also trained
to rank a caption's own words first among its terms, so the terms of an image are words of its caption.

With the head's pre-activation logits ``l = E u`` (:meth:`jsdlib.jsd.head.SparseHead.logits`; the term weights
are ``z = log(1 + ReLU(l))``, monotone in ``l``, so the order of ``l`` is the order of the top terms)::

    L_words = mean_b  - sum_{w in W_b}  q_bw  log softmax(l_b)_w                (rows with W_b empty left out)
    q_bw    = idf(w) / sum_{v in W_b} idf(v),      idf(w) = log(1 + N / df(w))     (q="idf", the default)
    q_bw    = 1 / |W_b|                                                               (q="uniform")

``W_b``: the content words of row ``b`` -- for an image, of all its captions; for a caption, its own -- i.e. the
token ids that are words of 3+ letters and not stop words (:func:`jsdlib.jsd.words.is_word`; the ids that
``vocab_mask_ids(vocab, "content")`` keeps), the same test the readability measure (:mod:`jsdlib.apps.readability`)
uses. ``df(w)``: how many of the ``N`` training images have
``w`` among their caption words, so "octopus" weighs more than "skin" or "tone" (in a third of the emoji
captions); ``q="uniform"`` weighs every word of ``W_b`` alike, so the words that tell variants apart
("medium", "dark", "woman") are not pushed down (a lever on the sparse - dense gap of seen concepts). The softmax
runs over the whole vocabulary (masked ids excluded), so punctuation and word pieces are pushed down too. The
trainer adds ``caption_words_weight * L_words`` for the image rows (``caption_words_on="image"``) or for the caption
and image rows (``"both"``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from jsdlib.jsd.words import vocab_mask_ids


Target = tuple[torch.Tensor, torch.Tensor]     # (word ids, their weights q, summing to 1); both empty: no word


class CaptionWordTargets:
    """``W`` and ``q`` (module docstring) of every training caption (:meth:`caption`) and image (:meth:`image`).

    ``caption_token_ids``: one id tensor per caption; ``caption_to_image``: each caption's image index;
    ``q``: the word weights, ``"idf"`` or ``"uniform"``.
    """

    def __init__(self, caption_token_ids: Sequence[torch.Tensor], caption_to_image: Sequence[int], vocab,
                 q: str = "idf"):
        if q not in ("idf", "uniform"):
            raise ValueError(f"CaptionWordTargets: q must be 'idf' or 'uniform', got {q!r}")
        self.q = q
        if len(caption_token_ids) != len(caption_to_image):
            raise ValueError(f"CaptionWordTargets: {len(caption_token_ids)} token-id tensors for "
                             f"{len(caption_to_image)} captions")
        not_content = set(vocab_mask_ids(vocab, "content"))     # special ids and every term is_word rejects
        self.caption_words = [set(torch.as_tensor(ids).tolist()) - not_content for ids in caption_token_ids]
        n_img = max((int(i) for i in caption_to_image), default=-1) + 1
        self.image_words: list[set[int]] = [set() for _ in range(n_img)]
        for c, i in enumerate(caption_to_image):
            self.image_words[int(i)] |= self.caption_words[c]
        df: dict[int, int] = {}
        for ws in self.image_words:
            for w in ws:
                df[w] = df.get(w, 0) + 1
        self.idf = {w: math.log(1 + n_img / d) for w, d in df.items()}
        self._captions = [self._target(ws) for ws in self.caption_words]
        self._images = [self._target(ws) for ws in self.image_words]

    def _target(self, ws: set[int]) -> Target:
        ids = sorted(ws)
        q = torch.tensor([self.idf[w] if self.q == "idf" else 1.0 for w in ids], dtype=torch.float32)
        return torch.tensor(ids, dtype=torch.long), (q / q.sum() if len(ids) else q)

    def caption(self, c: int) -> Target:
        return self._captions[c]

    def image(self, i: int) -> Target:
        return self._images[i]


def caption_word_loss(logits: torch.Tensor, targets: Sequence[Target]) -> torch.Tensor:
    """``L_words`` (module docstring) of ``logits`` (B, |V|) against one ``(ids, q)`` per row; 0 if no row has
    a word."""
    if logits.dim() != 2 or len(targets) != logits.shape[0]:
        raise ValueError(f"caption_word_loss: expects (B, |V|) logits and B targets, got "
                         f"{tuple(logits.shape)} and {len(targets)}")
    rows = [b for b, (ids, _) in enumerate(targets) if len(ids)]
    if not rows:
        return logits.sum() * 0.0
    logp = torch.log_softmax(logits[rows].float(), dim=1)
    width = max(len(targets[b][0]) for b in rows)
    idx = torch.empty(len(rows), width, dtype=torch.long)
    q = torch.zeros(len(rows), width)
    for r, b in enumerate(rows):            # padded with the row's first word at weight 0: masked ids (-inf) are
        ids, w = targets[b]                 # never read, so the value stays finite under a vocabulary mask
        idx[r], q[r, :len(ids)] = ids[0], w
        idx[r, :len(ids)] = ids
    picked = logp.gather(1, idx.to(logp.device))
    return -(q.to(logp.device) * picked).sum(dim=1).mean()


__all__ = ["CaptionWordTargets", "caption_word_loss"]
