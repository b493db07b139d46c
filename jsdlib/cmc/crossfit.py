"""Cross-fitted training lists for CMC on emoji (issue 15, point 4): rankings from retrievers that never saw
the captions they rank.

The bundled JSD model was trained on the emoji training captions, so it ranks them almost perfectly (top-1
about 77 % on train against about 52 % on test); CMC trained on those lists never sees the mistakes it must fix
at test time. Cross-fitting (as in double machine learning) splits the training images into ``folds`` seeded
folds ``F_1..F_K`` and, for each fold ``f``, trains JSD with the bundled recipe on the other folds' images and
captions only; that model ``m_f`` then ranks the captions of ``F_f``, which it has never seen, against **all**
training images::

    for f in 1..K:   m_f = JSD trained on  train \\ F_f
                     lists(F_f) = top-k of  S^{m_f}(captions of F_f, every training image)

CMC's inputs in a list are ``m_f``'s own dense vectors (query and candidates in one space, as at test time,
where every list is the bundled model's). The K catalogues (the training images under each ``m_f``) are
stacked in one :class:`~jsdlib.cmc.data.RerankData` (rows ``f * M + j``), so CMC trains on them unchanged.
Validation and test lists stay the bundled model's (it never saw those captions either).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from jsdlib.cmc.data import RerankData
from jsdlib.data.karpathy import load_emoji
from jsdlib.jsd.evaluate import encode, score_matrices
from jsdlib.jsd.features import FeatureSet, emoji_features
from jsdlib.jsd.presets import JSDConfig, get_preset
from jsdlib.jsd.train import train_jsd
from jsdlib.vlp.features import Features

DEFAULT_FOLDS = 3


def image_folds(n_images: int, folds: int, seed: int = 0) -> list[np.ndarray]:
    """``folds`` disjoint, seeded, near-equal sets of image indices covering ``range(n_images)`` (sorted each)."""
    if not 2 <= int(folds) <= n_images:
        raise ValueError(f"cross-fitting needs 2 <= folds <= {n_images} images, got {folds!r}")
    perm = np.random.default_rng(seed).permutation(n_images)
    return [np.sort(part) for part in np.array_split(perm, int(folds))]


def feature_subset(feats: Features, images: np.ndarray, key: str) -> tuple[Features, list[int]]:
    """The features of some images and their captions (renumbered), and the original caption rows kept."""
    caps, c2i, i2c = [], [], []
    for new_i, old_i in enumerate(images.tolist()):
        mine = list(feats.image_to_captions[old_i])
        i2c.append(list(range(len(caps), len(caps) + len(mine))))
        caps += mine
        c2i += [new_i] * len(mine)
    sub = Features(feats.text[caps], feats.image[torch.as_tensor(images)], feats.proj, np.asarray(c2i, np.int64),
                   i2c, key=f"{feats.key}:{key}", meta=dict(feats.meta))
    return sub, caps


def crossfit_emoji_train(k: int = 1024, folds: int = DEFAULT_FOLDS, seed: int = 0, score: str = "integrated",
                         cfg: JSDConfig | None = None, fs: FeatureSet | None = None, run_root=None,
                         progress: bool = False, log=print) -> RerankData:
    """The emoji training split's CMC lists, cross-fitted (module docstring).

    ``cfg``: the JSD recipe (default: the bundled model's, ``cpu-emoji`` + PEC, seed 0); ``seed`` draws the
    folds; ``run_root``: resumable run folders ``<run_root>/fold<f>``. Queries keep the split's caption order.
    """
    cfg = cfg or get_preset("cpu-emoji", seed=0, pec=True)
    fs = fs or emoji_features(progress=progress)
    train, split = fs.train, load_emoji("train")
    n_img, n_cap = train.image.shape[0], train.text.shape[0]
    parts = image_folds(n_img, folds, seed)
    q_emb = torch.zeros(n_cap, 0)
    cand, feats_i, topk, scores, gold_score = [], [], torch.zeros(n_cap, 0, dtype=torch.long), None, None
    gold = torch.as_tensor(np.asarray(train.caption_to_image), dtype=torch.long)
    for f, held in enumerate(parts):
        rest = np.setdiff1d(np.arange(n_img), held)
        sub, kept_caps = feature_subset(train, rest, f"crossfit{folds}s{seed}f{f}")
        ids = [fs.caption_token_ids[c] for c in kept_caps]
        log(f"crossfit fold {f + 1}/{folds}: JSD on {len(rest)} images, ranks the captions of {len(held)}")
        res = train_jsd(sub, fs.val, cfg, run_dir=None if run_root is None else Path(run_root) / f"fold{f}",
                        E_init=fs.E_init, special_ids=fs.special_ids, caption_token_ids=ids, progress=progress,
                        log=log, vocab=fs.vocab)
        model = res["model"]
        enc = encode(model, train)
        S = score_matrices(enc, float(model.tau.detach()), cfg.w1, cfg.w2)[score]
        held_caps = torch.as_tensor([c for i in held.tolist() for c in train.image_to_captions[i]], dtype=torch.long)
        if q_emb.shape[1] == 0:
            q_emb = torch.zeros(n_cap, enc["D_t"].shape[1])
            kk = min(k, n_img)
            topk, scores = torch.zeros(n_cap, kk, dtype=torch.long), torch.zeros(n_cap, kk)
            gold_score = torch.zeros(n_cap)
        q_emb[held_caps] = enc["D_t"][held_caps]
        sc, top = torch.sort(S[held_caps], dim=1, descending=True, stable=True)
        topk[held_caps] = top[:, :topk.shape[1]] + f * n_img          # this fold's catalogue block
        scores[held_caps] = sc[:, :topk.shape[1]]
        gold_score[held_caps] = S[held_caps, gold[held_caps]]
        cand.append(enc["D_i"])
        feats_i.append(train.image.float())
    fold_of = torch.zeros(n_img, dtype=torch.long)
    for f, held in enumerate(parts):
        fold_of[torch.as_tensor(held)] = f
    gold_rows = gold + fold_of[gold] * n_img                        # the gold image in its own fold's block
    return RerankData(q_emb, torch.cat(cand), topk.contiguous(), scores.contiguous(), gold_rows, gold_score,
                      ["emoji"] * n_cap, list(split.captions), None, torch.cat(feats_i),
                      name=f"emoji-train-{score}-crossfit{folds}")


__all__ = ["DEFAULT_FOLDS", "image_folds", "feature_subset", "crossfit_emoji_train"]
