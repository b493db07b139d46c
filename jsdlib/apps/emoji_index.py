"""The bundled JSD model's emoji vectors as search inputs: images as documents, captions as queries (notebook 04).

An app, not part of :mod:`jsdlib.index`: it runs the bundled model (:class:`jsdlib.apps.bundled.EmojiSearch`) and
hands its vectors to the search back ends, so the index package never depends on the apps above it.
"""
from __future__ import annotations

from jsdlib.apps.bundled import EmojiSearch
from jsdlib.index.types import HybridWeights, Vectors


def emoji_vectors(split: str = "test", model=None, meta: dict | None = None):
    """``(docs, queries, hybrid, search)`` of the bundled JSD model over an emoji split.

    ``docs`` = the images' ``(D_i, Z_i)``, ``queries`` = the captions' ``(D_t, Z_t)`` (:class:`Vectors`),
    ``hybrid`` = :class:`HybridWeights` of the model's preset (w1, w2, tau), ``search`` the
    :class:`jsdlib.apps.bundled.EmojiSearch` they come from (its ``split.caption_to_image`` gives the relevant image).
    """
    es = EmojiSearch(split, model, meta)
    return (Vectors.from_encoded(es.enc, "i"), Vectors.from_encoded(es.enc, "t"), HybridWeights(es.w1, es.w2, es.tau),
            es)
