"""Readability of sparse vectors: do an image's top-k terms contain a word of its own captions?

For image i with captions C_i and top-k terms T_k(i) (the k heaviest non-zero terms of its sparse vector,
:func:`jsdlib.jsd.vocab.top_terms`), with W(C) the caption *words* (lower-cased regex ``[a-z]+`` tokens, at
least 3 letters, not in :data:`STOP_WORDS`)::

    hit_k(i)          = [ T_k(i) ∩ W(C_i) != {} ]
    readable@k        = mean_i hit_k(i)                                  (over every image)
    S                 = { w : w in W(C_j) for at most m images j of the split }   (m = 10: "specific" words)
    I_S               = { i : W(C_i) ∩ S != {} }                         (images with a specific caption word)
    specific@k        = mean_{i in I_S} [ T_k(i) ∩ W(C_i) ∩ S != {} ]
    specific_all@k    = the same hits, averaged over every image (images outside I_S count as misses)

A term matches only as a whole word: punctuation (","), sub-word pieces ("-fu") and symbols never do.
``specific@k`` is the share issue 14's acceptance numbers use (its "today 60.1 %" on the seen subset). The
shares are reported for all images and per subset (e.g. the emoji set's seen / cross-style / unseen).
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from jsdlib.jsd.vocab import top_terms
from jsdlib.jsd.words import MIN_LETTERS, STOP_WORDS, is_word  # noqa: F401  (the measure's words)

WORD_RE = re.compile(r"[a-z]+")
SPECIFIC_MAX_IMAGES = 10


def caption_words(captions: str | Sequence[str]) -> set[str]:
    """The words of one caption or of several: lower-cased ``[a-z]+`` tokens that pass :func:`is_word`."""
    if isinstance(captions, str):
        captions = [captions]
    return {w for c in captions for w in WORD_RE.findall(c.lower()) if is_word(w)}


def specific_words(words_per_image: Sequence[set[str]], max_images: int = SPECIFIC_MAX_IMAGES) -> set[str]:
    """Words that at most ``max_images`` images' captions use (counted once per image)."""
    df = Counter(w for words in words_per_image for w in words)
    return {w for w, n in df.items() if n <= max_images}


def _share(hits: Sequence[bool]) -> float:
    return float(sum(hits)) / len(hits) if hits else float("nan")


def readability(terms_per_image: Sequence[Sequence], captions_per_image: Sequence[str | Sequence[str]], k: int = 5,
                subsets: Sequence[str] | None = None, max_images: int = SPECIFIC_MAX_IMAGES) -> dict:
    """``readable@k`` and ``specific@k`` (module docstring), overall and per subset.

    ``terms_per_image``: per image, its terms heaviest first, as strings or ``(term, weight)`` pairs (what
    :func:`jsdlib.jsd.vocab.top_terms` returns); only the first ``k`` count. ``captions_per_image``: per image,
    its caption(s). ``subsets``: an optional label per image. Specific words are counted over all the
    images given (pass a whole split). Returns ``{"all": row, <subset>: row, ...}`` with rows
    ``{"images", "readable", "specific", "specific_all", "with_specific_word"}`` (shares in [0, 1]; a share
    over no image is NaN).
    """
    if int(k) != k or k < 1:
        raise ValueError(f"readability: k must be a positive integer, got {k!r}")
    n = len(terms_per_image)
    if len(captions_per_image) != n:
        raise ValueError(f"readability: {n} images' terms but {len(captions_per_image)} images' captions; "
                         "pass one entry per image in both")
    if subsets is not None and len(subsets) != n:
        raise ValueError(f"readability: {len(subsets)} subset labels for {n} images; pass one label per image")
    words = [caption_words(c) for c in captions_per_image]
    specific = specific_words(words, max_images)
    any_hit, spec_hit, has_spec = [], [], []
    for terms, ws in zip(terms_per_image, words):
        top = {(t[0] if isinstance(t, (tuple, list)) else t).strip().lower() for t in list(terms)[:int(k)]}
        any_hit.append(bool(top & ws))
        spec_hit.append(bool(top & ws & specific))
        has_spec.append(bool(ws & specific))
    groups = {"all": list(range(n))}
    if subsets is not None:
        for label in sorted(set(subsets)):
            groups[label] = [i for i, s in enumerate(subsets) if s == label]
    return {g: {"images": len(idx), "readable": _share([any_hit[i] for i in idx]),
                "specific": _share([spec_hit[i] for i in idx if has_spec[i]]),
                "specific_all": _share([spec_hit[i] for i in idx]),
                "with_specific_word": sum(has_spec[i] for i in idx)} for g, idx in groups.items()}


def readability_of_vectors(Z, vocab, captions_per_image, k: int = 5, subsets=None,
                           max_images: int = SPECIFIC_MAX_IMAGES) -> dict:
    """:func:`readability` of sparse vectors ``Z`` (N, |V|) read with ``vocab`` (:func:`jsdlib.jsd.vocab.top_terms`)."""
    return readability(top_terms(Z, k, vocab), captions_per_image, k=k, subsets=subsets, max_images=max_images)


__all__ = ["STOP_WORDS", "is_word", "caption_words", "specific_words", "readability", "readability_of_vectors"]
