"""Issue 15 point 4: cross-fitted emoji training lists for CMC (folds, subsets, the stacked catalogue)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from jsdlib.cmc import crossfit as cf
from jsdlib.jsd.evaluate import encode, score_matrices
from jsdlib.jsd.features import FeatureSet
from jsdlib.jsd.vocab import Vocabulary
from tests.test_jsd import V, tiny_cfg, tiny_E, tiny_features


def test_image_folds_partition_and_seed():
    parts = cf.image_folds(10, 3, seed=1)
    assert sorted(np.concatenate(parts).tolist()) == list(range(10)) and [len(p) for p in parts] == [4, 3, 3]
    assert all((a == b).all() for a, b in zip(parts, cf.image_folds(10, 3, seed=1)))
    assert any((a != b).any() for a, b in zip(parts, cf.image_folds(10, 3, seed=2)) if len(a) == len(b))
    with pytest.raises(ValueError, match="folds"):
        cf.image_folds(10, 1)


def test_feature_subset_renumbers_captions():
    f = tiny_features(n_img=5, caps=2)
    sub, caps = cf.feature_subset(f, np.array([1, 3]), "x")
    assert caps == [2, 3, 6, 7] and sub.caption_to_image.tolist() == [0, 0, 1, 1]
    assert sub.image_to_captions == [[0, 1], [2, 3]] and torch.equal(sub.text, f.text[caps])
    assert torch.equal(sub.image, f.image[[1, 3]]) and sub.key == f"{f.key}:x"


class _Split:
    def __init__(self, n):
        self.captions = [f"caption {i}" for i in range(n)]


def test_crossfit_lists_come_from_models_that_never_saw_them(monkeypatch, tmp_path):
    tr, va = tiny_features(n_img=12, caps=2, seed=0), tiny_features(n_img=6, seed=3)
    vocab = Vocabulary([f"w{i}" for i in range(V)])
    fs = FeatureSet(tr, va, va, tiny_E(), [], [torch.tensor([i % V]) for i in range(24)], vocab)
    monkeypatch.setattr(cf, "load_emoji", lambda split: _Split(24))
    seen = []
    real_train = cf.train_jsd

    def spy(sub, *a, **kw):
        seen.append(sub.image.clone())
        return real_train(sub, *a, **kw)

    monkeypatch.setattr(cf, "train_jsd", spy)
    cfg = tiny_cfg(epochs=2, pec=True)
    rd = cf.crossfit_emoji_train(k=8, folds=3, seed=0, cfg=cfg, fs=fs, run_root=tmp_path)
    parts = cf.image_folds(12, 3, 0)
    assert rd.cand_emb.shape[0] == 36 and rd.topk.shape == (24, 8) and rd.query_emb.shape[0] == 24
    for f, held in enumerate(parts):
        # fold f's model was trained on the other images only
        assert not any(torch.equal(tr.image[i], row) for i in held.tolist() for row in seen[f])
        caps = [c for i in held.tolist() for c in tr.image_to_captions[i]]
        # its captions rank rows of block f only, and the gold row is the gold image in that block
        assert ((rd.topk[caps] >= f * 12) & (rd.topk[caps] < (f + 1) * 12)).all()
        assert (rd.gold[caps] == torch.as_tensor(tr.caption_to_image[caps]) + f * 12).all()
    # a list is exactly the fold model's ranking (re-run fold 0 from its resumable run folder)
    res = real_train(cf.feature_subset(tr, np.setdiff1d(np.arange(12), parts[0]), "crossfit3s0f0")[0], va, cfg,
                     run_dir=tmp_path / "fold0", E_init=fs.E_init, progress=False, log=lambda *a: None,
                     caption_token_ids=[fs.caption_token_ids[c] for c in
                                        cf.feature_subset(tr, np.setdiff1d(np.arange(12), parts[0]), "")[1]])
    S = score_matrices(encode(res["model"], tr), float(res["model"].tau.detach()), cfg.w1, cfg.w2)["integrated"]
    q = tr.image_to_captions[int(parts[0][0])][0]
    assert torch.equal(rd.topk[q], torch.sort(S[q], descending=True, stable=True)[1][:8])
    assert torch.allclose(rd.gold_score[q], S[q, tr.caption_to_image[q]])


def test_compare_refuses_crossfit_outside_emoji():
    from jsdlib.experiments.cmc_compare import compare
    with pytest.raises(ValueError, match="emoji task only"):
        compare("wordnet", [0], train_folds=3)
