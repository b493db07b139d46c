"""JSD's inputs for one VLP and data set: pre-projection features of three splits and the vocabulary side.

A :class:`FeatureSet` is what every JSD trainer and experiment takes: the train / val / test features (cached, see
:func:`jsdlib.vlp.features.cached_features`), the VLP's word embeddings ``E`` that initialise the sparse head, the
special-token ids the head masks, and each training caption's token ids (D2S's expansion control, PEC).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from jsdlib.data.karpathy import load_emoji
from jsdlib.jsd.vocab import Vocabulary, caption_token_ids
from jsdlib.vlp.features import cached_features
from jsdlib.vlp.minilm import minilm_tokenizer
from jsdlib.vlp.projection import word_embeddings
from jsdlib.vlp.standin import load_standin


@dataclass
class FeatureSet:
    """Everything the JSD methods need from one VLP and data set: three splits and the vocabulary side."""

    train: object
    val: object
    test: object
    E_init: torch.Tensor
    special_ids: list
    caption_token_ids: list  # token ids of each training caption (for D2S's expansion control)
    vocab: object


def emoji_features(checkpoint=None, progress: bool = False, train_set: str = "noto") -> FeatureSet:
    """Cached pre-projection features of the bundled emoji splits under the stand-in VLP (committed checkpoint).

    ``train_set="styles"``: the training split is the multi-style set's (Noto, Twemoji, Fluent flat / modern:
    :mod:`jsdlib.data.emoji_styles`), so JSD sees every training concept's captions, also those drawn only in
    the other styles; validation and test stay the Noto splits.
    """
    if train_set not in ("noto", "styles"):
        raise ValueError(f"emoji_features: train_set must be 'noto' or 'styles', got {train_set!r}")
    vlp = load_standin(checkpoint)
    splits = {s: load_emoji(s) for s in ("train", "val", "test")}
    if train_set == "styles":
        from jsdlib.data import emoji_styles
        splits["train"] = emoji_styles.load("train")
    feats = {s: cached_features(vlp, sp, progress=progress) for s, sp in splits.items()}
    tok = minilm_tokenizer()
    vocab = Vocabulary.from_hf(tok)
    return FeatureSet(feats["train"], feats["val"], feats["test"], word_embeddings(vlp).clone(),
                      vocab.special_ids, caption_token_ids(splits["train"].captions, tok), vocab)
