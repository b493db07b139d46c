"""Which terms are words: the readability measure's definition and the sparse head's vocabulary masks (issue 14).

A sparse vector is read as a bag of terms (:mod:`jsdlib.jsd.vocab`), but a vocabulary holds more than words:
punctuation (","), sub-word pieces ("##fu" -> "-fu"), digits, symbols, special tokens. Left in the head's
output they become free latent codes: "," was active for 43 % of the bundled model's test images. The masks
below zero such dimensions in the head (``JSDConfig.vocab_mask``; :class:`jsdlib.jsd.head.SparseHead`'s
``mask_ids``), so every active term is a word::

    vocab_mask = "none"     nothing masked (the papers' setting)
    vocab_mask = "words"    keep whole-word ASCII alphabetic tokens ("dog", "a", "the"); mask the rest
    vocab_mask = "content"  keep only :func:`is_word` terms: 3+ letters, not a stop word ("dog", not "the")

:func:`is_word` is also the readability measure's notion of a word (:mod:`jsdlib.apps.readability`).
"""
from __future__ import annotations

STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())   # a small English stop-word list (function words; committed so that the measure never changes)

MIN_LETTERS = 3
VOCAB_MASKS = ("none", "words", "content")


def is_alpha_word(term: str) -> bool:
    """True for a whole ASCII alphabetic term ("dog", "a"; not ",", "-fu", "sel-", "a1", "café")."""
    t = term.strip().lower()
    return t.isascii() and t.isalpha()


def is_word(term: str) -> bool:
    """True for an alphabetic term of 3+ letters that is not a stop word ("dog"; not ",", "-fu", "the", "a1")."""
    t = term.strip().lower()
    return len(t) >= MIN_LETTERS and is_alpha_word(t) and t not in STOP_WORDS


def vocab_mask_ids(vocab, level: str) -> list[int]:
    """Vocabulary ids a :data:`VOCAB_MASKS` level masks (module docstring), sorted; special tokens always.

    ``vocab``: a :class:`jsdlib.jsd.vocab.Vocabulary` (its :meth:`~jsdlib.jsd.vocab.Vocabulary.term` marks a
    word piece with a hyphen, so a piece never passes as a word). ``"none"`` masks nothing.
    """
    if level not in VOCAB_MASKS:
        raise ValueError(f"vocab_mask must be one of {list(VOCAB_MASKS)}, got {level!r}")
    if level == "none":
        return []
    keep = is_alpha_word if level == "words" else is_word
    special = set(vocab.special_ids)
    return [i for i in range(len(vocab)) if i in special or not keep(vocab.term(i))]


__all__ = ["STOP_WORDS", "MIN_LETTERS", "VOCAB_MASKS", "is_alpha_word", "is_word", "vocab_mask_ids"]
