"""Every row of the JSD comparison table (arXiv 2508.16707) on the same features and split.

    dense_original     the VLP's own projection, untrained
    d2s                sparse head distilled from the frozen dense embeddings (:func:`jsdlib.jsd.train.train_d2s`)
    jsd_sparse / jsd_dense / jsd_integrated     one JSD model, three scores (:func:`jsdlib.jsd.train.train_jsd`)
    jsd_no_kd          ablation: self-KD L' removed
    jsd_frozen_final   ablation: W_t, W_v fixed

Extra named rows (:data:`EXTRA_METHODS`; never in the default set :data:`METHODS`, so the default table is as
it was):

    d2s_own                 D2S in its own recipe (:func:`jsdlib.jsd.train.train_d2s_own`, L1 1e-3)
    d2s_matched             D2S (JSD's recipe), L1 weight searched on validation to JSD's FLOPs +-15 %
    d2s_own_matched         D2S (own recipe), the same search (:func:`jsdlib.jsd.matching.match_d2s_l1`)
    jsd_integrated_authors  the authors' test-time score w1 cos + w2 S_s (no tau; ``dense_single``)
    jsd_integrated_sx       the training-time S_x = w1 cos / tau + w2 S_s (today's ``jsd_integrated``, named)
    jsd_authors_teacher     JSD sparse trained with the authors' untransposed t->i teacher
    jsd_corrected_teacher   JSD sparse trained with the corrected (transposed) t->i teacher
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from jsdlib.common.metrics import ranks, reciprocal_ranks, t2i_metrics
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.evaluate import authors_integrated_score, encode, score_matrices, sparse_product
from jsdlib.jsd.matching import match_d2s_l1
from jsdlib.jsd.presets import D2SRecipe, JSDConfig
from jsdlib.jsd.train import train_d2s, train_d2s_own, train_jsd


METHODS = ("dense_original", "d2s", "jsd_sparse", "jsd_dense", "jsd_integrated", "jsd_no_kd", "jsd_frozen_final")
EXTRA_METHODS = ("d2s_own", "d2s_matched", "d2s_own_matched", "jsd_integrated_authors", "jsd_integrated_sx",
                 "jsd_authors_teacher", "jsd_corrected_teacher")
ALL_METHODS = METHODS + EXTRA_METHODS
_JSD_SCORE = {"jsd_sparse": "sparse", "jsd_dense": "dense", "jsd_integrated": "integrated",
              "jsd_integrated_sx": "integrated", "jsd_integrated_authors": "integrated_authors"}
_TEACHER = {"jsd_authors_teacher": True, "jsd_corrected_teacher": False}
_MATCHED = ("d2s_matched", "d2s_own_matched")


def _result(scores: torch.Tensor, feats, eff: dict, extra: dict | None = None) -> dict:
    s = scores.numpy() if torch.is_tensor(scores) else np.asarray(scores)
    r = ranks(s, feats.caption_to_image)
    return {"t2i": t2i_metrics(s, feats.caption_to_image), "rr": reciprocal_ranks(r, 10), **eff, **(extra or {})}


def _dense_cost(D: int) -> dict:
    """Efficiency of a dense retriever of dimension ``D``: every dimension is active, FLOPs = D."""
    return {"terms_q": float(D), "terms_d": float(D), "flops": float(D)}


def _sparse_result(res: dict, feats_test, cfg: JSDConfig, extra: dict | None = None) -> dict:
    """Test metrics of a trained model's sparse score (D2S, JSD sparse, the ablations)."""
    enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
    return _result(sparse_product(enc["Z_t"], enc["Z_i"]), feats_test, efficiency(enc),
                   {**_trained_summary(res), **(extra or {})})


def _trained_summary(res: dict) -> dict:
    hist = res["history"]
    return {"best_epoch": res["best"]["epoch"], "epochs_run": len(hist), "val": res["best"]["val"],
            "precision": res.get("precision"),
            "epoch_s": float(np.mean([h["epoch_s"] for h in hist])) if hist else None,
            "train_s": float(np.mean([h["train_s"] for h in hist])) if hist else None}


def run_methods(names: Sequence[str], feats_train, feats_val, feats_test, cfg: JSDConfig, seed: int | None = None,
                E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
                caption_token_ids: Sequence[torch.Tensor] | None = None, run_root=None, progress: bool = False,
                log=print, recipe: D2SRecipe | None = None, match: dict | None = None,
                vocab=None) -> dict[str, dict]:
    """Every requested method on the same features; ``{name: result}`` (see :func:`run_method`).

    One JSD model serves ``jsd_sparse``, ``jsd_dense``, the integrated rows, and the teacher row whose teacher is
    ``cfg``'s. ``run_root``: resumable run folders ``run_root/<method>-seed<k>``. ``recipe``: D2S's own recipe for
    ``d2s_own*`` (default :class:`~jsdlib.jsd.presets.D2SRecipe`). ``match``: keyword arguments of
    :func:`~jsdlib.jsd.matching.match_d2s_l1` (``tol``, ``probe_epochs``, ``max_probes``) for ``*_matched``, whose
    target is the JSD run's validation FLOPs at its selected epoch.
    """
    unknown = [n for n in names if n not in ALL_METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(ALL_METHODS)}")
    seed = cfg.seed if seed is None else seed
    cfg = cfg.replace(seed=seed)
    rd = (lambda tag: None) if run_root is None else (lambda tag: Path(run_root) / f"{tag}-seed{seed}")
    common = dict(E_init=E_init, special_ids=special_ids, progress=progress, log=log, vocab=vocab)
    recipe = D2SRecipe() if recipe is None else recipe
    out: dict[str, dict] = {}
    jsd_runs: dict[str, dict] = {}

    def jsd(tag: str, c: JSDConfig) -> dict:   # one training per distinct config (the main run is tagged "jsd")
        if c.digest() not in jsd_runs:
            jsd_runs[c.digest()] = train_jsd(feats_train, feats_val, c, run_dir=rd(tag),
                                             caption_token_ids=caption_token_ids, **common)
        return jsd_runs[c.digest()]

    if "dense_original" in names:
        D = feats_test.proj["W_t"].shape[0]
        out["dense_original"] = _result(feats_test.dense_scores(), feats_test, _dense_cost(D),
                                        {"note": "dense vectors: every dimension is active, FLOPs = dense dim"})
    if "d2s" in names:
        res = train_d2s(feats_train, feats_val, cfg, run_dir=rd("d2s"), caption_token_ids=caption_token_ids, **common)
        out["d2s"] = _sparse_result(res, feats_test, cfg)
    if "d2s_own" in names:
        res = train_d2s_own(feats_train, feats_val, cfg, recipe, run_dir=rd("d2s_own"),
                            caption_token_ids=caption_token_ids, **common)
        out["d2s_own"] = _sparse_result(res, feats_test, cfg, {"recipe": asdict(recipe)})
    jsd_names = [n for n in _JSD_SCORE if n in names]
    if jsd_names or any(n in names for n in _MATCHED):
        res = jsd("jsd", cfg)
        enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
        S = score_matrices(enc, float(res["model"].tau.detach()), cfg.w1, cfg.w2)
        S["integrated_authors"] = authors_integrated_score(enc, cfg.w1, cfg.w2)
        eff = efficiency(enc)
        D = enc["D_t"].shape[1]
        for n in jsd_names:
            kind = _JSD_SCORE[n]
            e = (eff if kind == "sparse" else
                 _dense_cost(D) if kind == "dense" else
                 {**eff, "flops": eff["flops"] + D, "note": "sparse terms; FLOPs = sparse FLOPs + dense dim"})
            out[n] = _result(S[kind], feats_test, e, _trained_summary(res))
    for n in _MATCHED:
        if n in names:
            target = float(res["best"]["val"]["flops"])
            m = match_d2s_l1(feats_train, feats_val, cfg, target, recipe=recipe if n == "d2s_own_matched" else None,
                             run_root=run_root, tag=n, caption_token_ids=caption_token_ids, **common, **(match or {}))
            probes = {k: m[k] for k in ("scale", "eta_t", "eta_i", "matched", "target", "tol", "probes",
                                        "probe_epochs", "final_flops", "final_matched", "select_in_band") if k in m}
            out[n] = _sparse_result(m["result"], feats_test, cfg, {"flops_match": probes})
    for n, quirk in _TEACHER.items():
        if n in names:
            tag = "jsd" if quirk == cfg.teacher_transpose_quirk else n
            res = jsd(tag, cfg.replace(teacher_transpose_quirk=quirk))
            out[n] = _sparse_result(res, feats_test, cfg, {"teacher_transpose_quirk": quirk})
    for n, change in (("jsd_no_kd", {"self_kd": False}), ("jsd_frozen_final", {"freeze_final": True})):
        if n in names:
            res = train_jsd(feats_train, feats_val, cfg.replace(**change), run_dir=rd(n),
                            caption_token_ids=caption_token_ids, **common)
            out[n] = _sparse_result(res, feats_test, cfg)
    return {n: out[n] for n in names}


def run_method(name: str, feats_train, feats_val, feats_test, cfg: JSDConfig, seed: int | None = None, **kw) -> dict:
    """One method: ``{"t2i": {R@1, R@5, R@10, MRR@10}, "rr": per-query reciprocal ranks@10, "terms_q", "terms_d",
    "flops", ...}`` on the test split (training ones also carry best epoch and validation metrics)."""
    return run_methods([name], feats_train, feats_val, feats_test, cfg, seed, **kw)[name]


__all__ = ["METHODS", "EXTRA_METHODS", "ALL_METHODS", "run_methods", "run_method"]
