"""Vocabulary hygiene (issue 14, point 3): which terms are words, the head's masks, and the config identity."""
from __future__ import annotations

import pytest
import torch

from jsdlib.jsd.model import build_model
from jsdlib.jsd.presets import JSDConfig, get_preset
from jsdlib.jsd.train import train_d2s, train_jsd
from jsdlib.jsd.vocab import Vocabulary, top_terms
from jsdlib.jsd.words import VOCAB_MASKS, is_alpha_word, is_word, vocab_mask_ids
from tests.test_jsd import V, tiny_cfg, tiny_E, tiny_features

WORDS = ["[PAD]", "dog", ",", "##fu", "the", "a1", "cat", "42", "café", "a", "&", "octopus", "[unused3]", "of"]


def tiny_vocab(n=V) -> Vocabulary:
    """A WordPiece vocabulary of ``n`` tokens: WORDS first (id 0 special), then filler pieces and words."""
    tokens = WORDS + [("##x" if i % 2 else "zz") + "q" * i for i in range(n - len(WORDS))]
    return Vocabulary(tokens, "wordpiece", special_ids=[0])


def test_word_predicates():
    assert is_alpha_word("dog") and is_alpha_word("a") and is_alpha_word("The")
    for t in (",", "-fu", "sel-", "a1", "42", "café", "&", "[unused3]"):
        assert not is_alpha_word(t), t
    assert is_word("octopus") and not is_word("the") and not is_word("a") and not is_word("of")


def test_vocab_mask_levels_on_a_hand_built_vocabulary():
    v = tiny_vocab(len(WORDS))
    assert vocab_mask_ids(v, "none") == []
    # words: special, punctuation, piece, digits, mixed, non-ASCII, symbol and [unused] go; dog/the/cat/a/octopus/of stay
    assert vocab_mask_ids(v, "words") == [0, 2, 3, 5, 7, 8, 10, 12]
    # content: the stop words "the", "a", "of" go too
    assert vocab_mask_ids(v, "content") == [0, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13]
    with pytest.raises(ValueError, match="vocab_mask must be one of"):
        vocab_mask_ids(v, "nouns")


def test_config_identity_leaves_the_neutral_mask_out():
    base = get_preset("cpu-emoji")
    assert "vocab_mask" not in base.identity() and "vocab_mask" in base.replace(vocab_mask="words").identity()
    assert base.digest() != base.replace(vocab_mask="words").digest()
    assert base.replace(vocab_mask="content").digest() != base.replace(vocab_mask="words").digest()
    with pytest.raises(ValueError, match="vocab_mask"):
        JSDConfig(vocab_mask="nouns")
    assert set(VOCAB_MASKS) == {"none", "words", "content"}


def test_masked_head_never_activates_a_non_word():
    feats, v = tiny_features(), tiny_vocab()
    with pytest.raises(ValueError, match="needs the vocabulary"):
        build_model(feats, tiny_cfg(vocab_mask="words"), tiny_E())
    for level in ("words", "content"):
        m = build_model(feats, tiny_cfg(vocab_mask=level), tiny_E(), vocab=v)
        masked = vocab_mask_ids(v, level)
        assert m.head.masked and (m.head.keep[masked] == 0).all() and int(m.head.keep.sum()) == V - len(masked)
        with torch.no_grad():
            _, _, z_t, z_i = m(feats.text, feats.image)
        assert (z_t[:, masked] == 0).all() and (z_i[:, masked] == 0).all()
        assert (z_t > 0).any()      # the kept words still fire
    plain = build_model(feats, tiny_cfg(), tiny_E(), vocab=v)
    assert not plain.head.masked    # "none": the papers' head, vocab given or not


@pytest.mark.parametrize("train", [train_jsd, train_d2s])
def test_trained_models_keep_only_words_active(tmp_path, train):
    tr, va, v = tiny_features(seed=0), tiny_features(n_img=12, seed=0), tiny_vocab()
    res = train(tr, va, tiny_cfg(epochs=2, vocab_mask="words"), run_dir=tmp_path / "run", progress=False,
                E_init=tiny_E(), vocab=v)
    with torch.no_grad():
        _, _, z_t, z_i = res["model"](va.text, va.image)
    terms = [t for row in top_terms(torch.cat([z_t, z_i]), 20, v) for t, _ in row]
    assert terms and all(is_alpha_word(t) for t in terms)
