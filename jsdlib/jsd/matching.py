"""Matched FLOPs inside the run: D2S's L1 weight searched on validation so that its FLOPs land within +-15 % of a
given JSD run's (the comparison "JSD sparse vs D2S at the same cost" then holds on any machine, instead of resting
on a constant tuned once on one CPU).

The search is over one scale ``s`` of D2S's L1 weights ``(s eta_t, s eta_i)``; more L1 means fewer active terms,
so the validation FLOPs ``F(s)`` fall as ``s`` grows::

    probe s0; while |F(s)/F_target - 1| > tol:
        F(s) too high -> s_lo = s      F(s) too low -> s_hi = s
        s = s_lo * factor  (no s_hi yet)   |   s_hi / factor  (no s_lo yet)   |   sqrt(s_lo * s_hi)  (bisection)

Each probe is one training (:func:`match_d2s_l1`: ``probe_epochs`` epochs) scored on the validation split only.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from jsdlib.jsd.presets import D2SRecipe, JSDConfig
from jsdlib.jsd.train import train_d2s, train_d2s_own


def _miss(flops: float, target: float) -> float:
    """``|log(F / F_target)|``: how far a probe is from the target, symmetric in over / under (0 FLOPs: inf)."""
    return math.inf if flops <= 0 else abs(math.log(flops / target))


def match_flops(probe: Callable[[float], object], target: float, tol: float = 0.15, start: float = 1.0,
                factor: float = 4.0, max_probes: int = 8) -> dict:
    """Search the L1 scale ``s`` whose probe lands within ``target * (1 +- tol)`` FLOPs (see the module docstring).

    ``probe(s)`` returns the validation FLOPs, or a dict holding them under ``"flops"`` (kept as the probe's
    ``result``). Returns ``{"scale", "flops", "matched", "target", "tol", "result", "probes": [{"scale",
    "flops", "ratio"}, ...]}`` for the first probe within tolerance, else (``matched=False``) the closest one.
    """
    if not target > 0:
        raise ValueError(f"match_flops: the target FLOPs must be > 0, got {target}")
    if not (0 < tol < 1 and start > 0 and factor > 1 and max_probes >= 1):
        raise ValueError("match_flops: need 0 < tol < 1, start > 0, factor > 1 and max_probes >= 1")
    probes, results = [], []
    lo = hi = None          # lo: a scale with too many FLOPs (needs more L1); hi: one with too few
    s = float(start)
    while len(probes) < max_probes:
        r = probe(s)
        f = float(r["flops"] if isinstance(r, dict) else r)
        probes.append({"scale": s, "flops": f, "ratio": f / target})
        results.append(r)
        if abs(f / target - 1) <= tol:
            break
        if f > target:
            lo = s if lo is None else max(lo, s)
        else:
            hi = s if hi is None else min(hi, s)
        s = lo * factor if hi is None else hi / factor if lo is None else math.sqrt(lo * hi)
    k = next((i for i, p in enumerate(probes) if abs(p["ratio"] - 1) <= tol), None)
    matched = k is not None
    if k is None:
        k = min(range(len(probes)), key=lambda i: _miss(probes[i]["flops"], target))
    return {"scale": probes[k]["scale"], "flops": probes[k]["flops"], "matched": matched, "target": float(target),
            "tol": tol, "result": results[k], "probes": probes}


def match_d2s_l1(feats_train, feats_val, cfg: JSDConfig, target_flops: float, recipe: D2SRecipe | None = None,
                 probe_epochs: int | None = None, tol: float = 0.15, max_probes: int = 8, factor: float = 4.0,
                 seed: int | None = None, run_root=None, tag: str = "d2s", log=print, **train_kw) -> dict:
    """D2S's L1 weight searched on validation so that its validation FLOPs match ``target_flops`` within ``tol``.

    ``recipe=None``: D2S with JSD's recipe (:func:`~jsdlib.jsd.train.train_d2s`, base weights ``cfg.d2s_eta_*``,
    else JSD's); a :class:`~jsdlib.jsd.presets.D2SRecipe`: D2S's own recipe (:func:`~jsdlib.jsd.train.train_d2s_own`,
    base weights ``recipe.eta_*``). Each probe trains ``probe_epochs`` epochs (default: ``cfg.epochs``, so the chosen
    probe is the final model) and reads the FLOPs of its selected validation epoch; with shorter probes the chosen
    weight is trained once more for ``cfg.epochs`` (``result``), and ``final_flops`` / ``final_matched`` say
    whether that run still lands within ``tol``. ``run_root``: resumable probe folders
    ``run_root/<tag>-l1x<scale>-seed<k>``. Returns :func:`match_flops`' dict plus ``eta_t``, ``eta_i``,
    ``probe_epochs``.
    """
    epochs = cfg.epochs if probe_epochs is None else int(probe_epochs)
    seed = cfg.seed if seed is None else seed
    base_cfg = cfg.replace(epochs=epochs, seed=seed)
    if recipe is None:
        base = (cfg.eta_t if cfg.d2s_eta_t is None else cfg.d2s_eta_t,
                cfg.eta_i if cfg.d2s_eta_i is None else cfg.d2s_eta_i)
    else:
        base = (recipe.eta_t, recipe.eta_i)

    def train(scale: float, c: JSDConfig, suffix: str = "") -> dict:
        rd = None if run_root is None else Path(run_root) / f"{tag}-l1x{scale:.4g}{suffix}-seed{seed}"
        eta_t, eta_i = base[0] * scale, base[1] * scale
        if recipe is None:
            res = train_d2s(feats_train, feats_val, c.replace(d2s_eta_t=eta_t, d2s_eta_i=eta_i), run_dir=rd,
                            log=log, **train_kw)
        else:
            res = train_d2s_own(feats_train, feats_val, c, recipe.replace(eta_t=eta_t, eta_i=eta_i), run_dir=rd,
                                log=log, **train_kw)
        return {**res, "flops": float(res["best"]["val"]["flops"])}

    def probe(scale: float) -> dict:
        res = train(scale, base_cfg)
        log(f"{tag} L1 x{scale:.4g}: val FLOPs {res['flops']:.2f} (target {target_flops:.2f})")
        return res

    out = match_flops(probe, target_flops, tol=tol, factor=factor, max_probes=max_probes)
    out.update(eta_t=base[0] * out["scale"], eta_i=base[1] * out["scale"], probe_epochs=epochs)
    if epochs < cfg.epochs:     # short probes: train the chosen weight for the full run and say whether it holds
        out["result"] = train(out["scale"], cfg.replace(seed=seed), "-final")
        out["final_flops"] = out["result"]["flops"]
        out["final_matched"] = abs(out["final_flops"] / target_flops - 1) <= tol
        log(f"{tag} final run at L1 x{out['scale']:.4g}: val FLOPs {out['final_flops']:.2f} "
            f"({'within' if out['final_matched'] else 'OUTSIDE'} +-{tol:.0%} of {target_flops:.2f})")
    return out


__all__ = ["match_flops", "match_d2s_l1"]
