"""The caption-word loss (issue 14): targets, the loss's equation, the head's logits, the config and a training."""
from __future__ import annotations

import math

import pytest
import torch

from jsdlib.jsd.caption_words import CaptionWordTargets, caption_word_loss
from jsdlib.jsd.model import build_model
from jsdlib.jsd.presets import get_preset
from jsdlib.jsd.train import train_jsd
from jsdlib.jsd.vocab import top_terms
from tests.test_jsd import V, tiny_cfg, tiny_E, tiny_features
from tests.test_words import WORDS, tiny_vocab

pytestmark = pytest.mark.usefixtures("one_thread")
ID = {w: i for i, w in enumerate(WORDS)}


def test_targets_keep_content_words_union_per_image_and_weigh_rare_words_up():
    v = tiny_vocab()
    ids = [torch.tensor([ID["dog"], ID[","], ID["the"], ID["##fu"]]),     # image 0: "dog , the -fu"
           torch.tensor([ID["octopus"], ID["dog"], ID["[PAD]"]]),          # image 0 again
           torch.tensor([ID["dog"], ID["42"]]),                             # image 1
           torch.tensor([ID["of"], ID["a"]])]                               # image 2: no content word
    t = CaptionWordTargets(ids, [0, 0, 1, 2], v)
    assert t.caption_words == [{ID["dog"]}, {ID["octopus"], ID["dog"]}, {ID["dog"]}, set()]
    assert t.image_words == [{ID["dog"], ID["octopus"]}, {ID["dog"]}, set()]
    # idf(w) = log(1 + N / df): "dog" is on 2 of 3 images, "octopus" on 1
    assert t.idf[ID["dog"]] == pytest.approx(math.log(1 + 3 / 2)) and t.idf[ID["octopus"]] == pytest.approx(math.log(4))
    ids0, q0 = t.image(0)
    assert ids0.tolist() == sorted([ID["dog"], ID["octopus"]]) and q0.sum() == pytest.approx(1.0)
    assert q0[ids0.tolist().index(ID["octopus"])] > q0[ids0.tolist().index(ID["dog"])]
    assert t.caption(0)[0].tolist() == [ID["dog"]] and len(t.image(2)[0]) == 0
    with pytest.raises(ValueError, match="token-id tensors"):
        CaptionWordTargets(ids, [0, 0, 1], v)
    # q="uniform": the same words, each weighing 1 / |W_b|
    u = CaptionWordTargets(ids, [0, 0, 1, 2], v, q="uniform")
    ids0u, q0u = u.image(0)
    assert ids0u.tolist() == ids0.tolist() and q0u.tolist() == [0.5, 0.5] and u.caption(2)[1].tolist() == [1.0]
    with pytest.raises(ValueError, match="q must be 'idf' or 'uniform'"):
        CaptionWordTargets(ids, [0, 0, 1, 2], v, q="tf")


def test_loss_is_the_weighted_cross_entropy():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [1.0, 2.0, 3.0, 4.0], [5.0, 0.0, 0.0, 0.0]], requires_grad=True)
    targets = [(torch.tensor([1]), torch.tensor([1.0])),
               (torch.tensor([0, 3]), torch.tensor([0.25, 0.75])),
               (torch.tensor([], dtype=torch.long), torch.tensor([]))]          # no word: left out of the mean
    loss = caption_word_loss(logits, targets)
    lp = torch.log_softmax(logits.detach(), dim=1)
    assert float(loss.detach()) == pytest.approx(float(-(lp[0, 1] + 0.25 * lp[1, 0] + 0.75 * lp[1, 3]) / 2), rel=1e-6)
    assert float(loss.detach()) == pytest.approx(float((math.log(4) - 0.25 * lp[1, 0] - 0.75 * lp[1, 3]) / 2), rel=1e-6)
    loss.backward()
    assert logits.grad[0, 1] < 0 and logits.grad[1, 3] < 0 and (logits.grad[2] == 0).all()
    assert float(caption_word_loss(logits, [targets[2]] * 3)) == 0.0
    with pytest.raises(ValueError, match="B targets"):
        caption_word_loss(logits, targets[:2])


def test_head_logits_order_the_terms_and_respect_the_mask():
    feats, v = tiny_features(), tiny_vocab()
    m = build_model(feats, tiny_cfg(vocab_mask="words"), tiny_E(), vocab=v)
    with torch.no_grad():
        d = m.dense_image(feats.image)
        l, z = m.head.logits(d), m.head(d)
    masked = m.head.keep == 0
    assert torch.isinf(l[:, masked]).all() and (l[:, ~masked].isfinite()).all()
    assert torch.allclose(torch.log1p(torch.relu(l[:, ~masked])), z[:, ~masked], atol=1e-6)
    # the loss reads only the target words: finite under the mask, and its gradient too
    l = m.head.logits(m.dense_image(feats.image[:3]))
    word = [i for i in range(V) if m.head.keep[i]][:2]
    loss = caption_word_loss(l, [(torch.tensor(word), torch.tensor([0.5, 0.5]))] * 3)
    loss.backward()
    assert loss.isfinite() and all(p.grad is None or p.grad.isfinite().all() for p in m.parameters())


def test_config_identity_and_validation():
    base = get_preset("cpu-emoji")
    assert "caption_words_weight" not in base.identity() and "caption_words_on" not in base.identity()
    assert base.digest() != base.replace(caption_words_weight=1.0).digest()
    assert (base.replace(caption_words_weight=1.0).digest()
            != base.replace(caption_words_weight=1.0, caption_words_on="both").digest())
    with pytest.raises(ValueError, match="caption_words_weight"):
        base.replace(caption_words_weight=-1.0)
    with pytest.raises(ValueError, match="caption_words_on"):
        base.replace(caption_words_on="text")
    # caption_words_q: left out of the identity at "idf" (earlier runs keep their digests), in it otherwise
    assert "caption_words_q" not in base.identity()
    cw = base.replace(caption_words_weight=1.0)
    assert cw.digest() != cw.replace(caption_words_q="uniform").digest()
    with pytest.raises(ValueError, match="caption_words_q"):
        base.replace(caption_words_q="tf")


def _word_ids(feats):
    """Caption token ids: each image's word (one of 6, the largest of its first 6 feature coordinates: learnable)
    plus a stop word and punctuation; returns them and each image's word id."""
    words = [ID["dog"], ID["cat"], ID["octopus"]] + list(range(len(WORDS), len(WORDS) + 6, 2))
    word = [words[int(k)] for k in feats.image[:, :len(words)].argmax(dim=1)]
    return [torch.tensor([word[int(i)], ID["the"], ID[","]]) for i in feats.caption_to_image], word


def test_training_with_the_loss_puts_the_caption_word_first(tmp_path):
    tr, v = tiny_features(seed=0), tiny_vocab()
    ids, word = _word_ids(tr)
    with pytest.raises(ValueError, match="needs caption_token_ids and vocab"):
        train_jsd(tr, tr, tiny_cfg(caption_words_weight=1.0), progress=False, E_init=tiny_E(), caption_token_ids=ids)
    hits = {}
    for w in (0.0, 1.0):
        res = train_jsd(tr, tr, tiny_cfg(epochs=30, patience=30, caption_words_weight=w, caption_words_on="both"),
                        run_dir=tmp_path / f"w{w}", progress=False, E_init=tiny_E(), vocab=v, caption_token_ids=ids)
        with torch.no_grad():
            _, _, _, z_i = res["model"](tr.text, tr.image)
        top1 = [row[0][0] if row else None for row in top_terms(z_i, 1, v)]
        hits[w] = sum(t == v.term(word[i]) for i, t in enumerate(top1)) / len(top1)
    assert hits[1.0] >= 0.8 and hits[0.0] <= 0.2, hits
