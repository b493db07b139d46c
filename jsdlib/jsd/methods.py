"""Every row of the JSD comparison table (spec jsd.md §5) on the same features and split.

    dense_original     the VLP's own projection, untrained
    d2s                sparse head distilled from the frozen dense embeddings (:func:`jsdlib.jsd.train.train_d2s`)
    jsd_sparse / jsd_dense / jsd_integrated     one JSD model, three scores (:func:`jsdlib.jsd.train.train_jsd`)
    jsd_no_kd          ablation: self-KD L' removed
    jsd_frozen_final   ablation: W_t, W_v fixed
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from jsdlib.common.metrics import ranks, reciprocal_ranks, t2i_metrics
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.evaluate import encode, score_matrices, sparse_product
from jsdlib.jsd.presets import JSDConfig
from jsdlib.jsd.train import train_d2s, train_jsd


METHODS = ("dense_original", "d2s", "jsd_sparse", "jsd_dense", "jsd_integrated", "jsd_no_kd", "jsd_frozen_final")
_JSD_SCORE = {"jsd_sparse": "sparse", "jsd_dense": "dense", "jsd_integrated": "integrated"}


def _result(scores: torch.Tensor, feats, eff: dict, extra: dict | None = None) -> dict:
    s = scores.numpy() if torch.is_tensor(scores) else np.asarray(scores)
    r = ranks(s, feats.caption_to_image)
    return {"t2i": t2i_metrics(s, feats.caption_to_image), "rr": reciprocal_ranks(r, 10), **eff, **(extra or {})}


def _dense_cost(D: int) -> dict:
    """Efficiency of a dense retriever of dimension ``D``: every dimension is active, FLOPs = D."""
    return {"terms_q": float(D), "terms_d": float(D), "flops": float(D)}


def _sparse_result(res: dict, feats_test, cfg: JSDConfig) -> dict:
    """Test metrics of a trained model's sparse score (D2S, JSD sparse, the ablations)."""
    enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
    return _result(sparse_product(enc["Z_t"], enc["Z_i"]), feats_test, efficiency(enc), _trained_summary(res))


def _trained_summary(res: dict) -> dict:
    hist = res["history"]
    return {"best_epoch": res["best"]["epoch"], "epochs_run": len(hist), "val": res["best"]["val"],
            "precision": res.get("precision"),
            "epoch_s": float(np.mean([h["epoch_s"] for h in hist])) if hist else None,
            "train_s": float(np.mean([h["train_s"] for h in hist])) if hist else None}


def run_methods(names: Sequence[str], feats_train, feats_val, feats_test, cfg: JSDConfig, seed: int | None = None,
                E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
                caption_token_ids: Sequence[torch.Tensor] | None = None, run_root=None, progress: bool = False,
                log=print) -> dict[str, dict]:
    """Every requested method on the same features; ``{name: result}`` (see :func:`run_method`).

    One JSD model serves ``jsd_sparse``, ``jsd_dense`` and ``jsd_integrated``. ``run_root``: resumable run
    folders ``run_root/<method>-seed<k>``.
    """
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; known: {list(METHODS)}")
    seed = cfg.seed if seed is None else seed
    cfg = cfg.replace(seed=seed)
    rd = (lambda tag: None) if run_root is None else (lambda tag: Path(run_root) / f"{tag}-seed{seed}")
    common = dict(E_init=E_init, special_ids=special_ids, progress=progress, log=log)
    out: dict[str, dict] = {}
    if "dense_original" in names:
        D = feats_test.proj["W_t"].shape[0]
        out["dense_original"] = _result(feats_test.dense_scores(), feats_test, _dense_cost(D),
                                        {"note": "dense vectors: every dimension is active, FLOPs = dense dim"})
    if "d2s" in names:
        res = train_d2s(feats_train, feats_val, cfg, run_dir=rd("d2s"), caption_token_ids=caption_token_ids, **common)
        out["d2s"] = _sparse_result(res, feats_test, cfg)
    jsd_names = [n for n in _JSD_SCORE if n in names]
    if jsd_names:
        res = train_jsd(feats_train, feats_val, cfg, run_dir=rd("jsd"), caption_token_ids=caption_token_ids, **common)
        enc = encode(res["model"], feats_test, cfg.eval_batch, cfg.device)
        S = score_matrices(enc, float(res["model"].tau.detach()), cfg.w1, cfg.w2)
        eff = efficiency(enc)
        D = enc["D_t"].shape[1]
        for n in jsd_names:
            kind = _JSD_SCORE[n]
            e = (eff if kind == "sparse" else
                 _dense_cost(D) if kind == "dense" else
                 {**eff, "flops": eff["flops"] + D, "note": "sparse terms; FLOPs = sparse FLOPs + dense dim"})
            out[n] = _result(S[kind], feats_test, e, _trained_summary(res))
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


__all__ = ["METHODS", "run_methods", "run_method"]
