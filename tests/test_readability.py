"""jsdlib.apps.readability: the share of images whose top-k terms contain one of their caption words."""
from __future__ import annotations

import math

import pytest
import torch

from jsdlib.apps import readability as rd


def test_is_word():
    assert rd.is_word("dog") and rd.is_word("Octopus") and rd.is_word(" cake ")
    for t in (",", "-fu", "&", "the", "and", "ox1", "a", "to", "12", "café", "##s"):
        assert not rd.is_word(t), t


def test_caption_words_drop_punctuation_short_and_stop_words():
    assert rd.caption_words("dog face, pet") == {"dog", "face", "pet"}
    assert rd.caption_words(["flag: Japan", "the ox & a cow"]) == {"flag", "japan", "cow"}
    assert rd.caption_words("woman cook: medium-light skin tone") == {"woman", "cook", "medium", "light",
                                                                       "skin", "tone"}


def test_specific_words_counted_once_per_image():
    words = [{"dog", "face"}, {"cat", "face"}, {"face", "face2"}]
    assert rd.specific_words(words, max_images=2) == {"dog", "cat", "face2"}
    assert rd.specific_words(words, max_images=3) == {"dog", "cat", "face", "face2"}


def test_readability_hand_built():
    captions = ["dog face", "cat face", "octopus", "birthday cake"]
    terms = [
        [(",", 3.0), ("dog", 2.0), ("bio", 1.0)],   # specific word at rank 2
        ["face", "teacher", "-uting"],               # only the generic "face" (used by 2 images)
        ["meat", ",", "tongue", "mark", "heart", "octopus"],  # "octopus" only at rank 6
        ["-fu", "pop", "cake"],                      # specific at rank 3
    ]
    r = rd.readability(terms, captions, k=5, max_images=1, subsets=["seen", "seen", "unseen", "unseen"])
    both = {"specific": 0.5, "specific_all": 0.5}
    assert r["all"] == {"images": 4, "readable": 0.75, **both, "with_specific_word": 4}
    assert r["seen"] == {"images": 2, "readable": 1.0, **both, "with_specific_word": 2}
    assert r["unseen"] == {"images": 2, "readable": 0.5, **both, "with_specific_word": 2}
    top1 = rd.readability(terms, captions, k=1, max_images=1)["all"]
    assert top1["readable"] == 0.25 and top1["specific"] == 0.0          # only "face" is a top-1 hit
    top6 = rd.readability(terms, captions, k=6, max_images=1)["all"]
    assert top6["readable"] == 1.0 and top6["specific"] == 0.75
    # with a looser threshold "face" (2 images) becomes specific too
    assert rd.readability(terms, captions, k=5, max_images=2)["all"]["specific"] == 0.75


def test_images_without_specific_word_leave_specific_out_and_miss_in_specific_all():
    captions = ["dog face", "cat face", "face", "face"]         # "face" (4 images) is not specific at m=2
    terms = [["dog"], ["face"], ["face"], ["face"]]
    r = rd.readability(terms, captions, k=1, max_images=2)["all"]
    assert r == {"images": 4, "readable": 1.0, "specific": 0.5, "specific_all": 0.25, "with_specific_word": 2}
    none = rd.readability([["face"]], ["face"], k=1, max_images=0)["all"]
    assert math.isnan(none["specific"]) and none["specific_all"] == 0.0


def test_empty_subset_share_is_nan_and_errors_are_one_line():
    assert math.isnan(rd.readability([], [], k=1)["all"]["readable"])
    with pytest.raises(ValueError, match="one entry per image"):
        rd.readability([["dog"]], [], k=1)
    with pytest.raises(ValueError, match="one label per image"):
        rd.readability([["dog"]], ["dog"], k=1, subsets=["a", "b"])
    with pytest.raises(ValueError, match="positive integer"):
        rd.readability([["dog"]], ["dog"], k=0)


def test_readability_of_vectors_reads_top_terms():
    vocab = [",", "dog", "cat", "-fu", "cake"]
    Z = torch.tensor([[5.0, 1.0, 0.0, 0.0, 0.0],     # top-1 ",", top-2 adds "dog"
                      [0.0, 0.0, 0.0, 4.0, 2.0]])    # top-1 "-fu", top-2 adds "cake"
    caps = ["dog face", "birthday cake"]
    assert rd.readability_of_vectors(Z, vocab, caps, k=1)["all"]["readable"] == 0.0
    assert rd.readability_of_vectors(Z, vocab, caps, k=2)["all"]["readable"] == 1.0
