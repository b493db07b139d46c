"""Matched FLOPs inside the run: D2S's L1 weight searched on validation so that its FLOPs land within +-15 % of a
given JSD run's (the comparison "JSD sparse vs D2S at the same cost" then holds on any machine, instead of resting
on a constant tuned once on one CPU).

The search is over one scale ``s`` of D2S's L1 weights ``(s eta_t, s eta_i)``; more L1 means fewer active terms,
so the validation FLOPs ``F(s)`` fall as ``s`` grows, close to a power law ``F(s) ~ c s^b`` (b about -0.5 to -1 in
the committed L1 sweep). Each next probe is therefore the **secant step in log-log space** through the two most
telling probes so far (the bracketing pair once there is one, else the two last)::

    log s_next = log s_ref + (log F_target - log F(s_ref)) / b,    b = d log F / d log s  (one probe: b = -1)

clamped inside the bracket ``(s_lo, s_hi)`` when the target is bracketed (``s_lo``: too many FLOPs, ``s_hi``:
too few), else to at most ``factor`` away from ``s_ref``; a slope that is not negative (noise) falls back to
bracketing by ``factor`` and bisection in log space. Stop when ``|F(s)/F_target - 1| <= tol``.

Each probe is one training (:func:`match_d2s_l1`: ``probe_epochs`` epochs) scored on the validation split only;
with F a power law of s, two or three probes usually land within +-15 %.

**Selection inside the band (D2S's own recipe).** ``F(s)`` is the FLOPs of the probe's *selected* epoch, and that
is a power law only while selection picks a late epoch. Under D2S's own recipe a strong L1 collapses retrieval
after its warm-up, so the best validation epoch moves early and ``F(s)`` stops falling: on the bundled set, seed
0, x197 / x257 / x331 / x400 gave 4.06 / 3.19 / 3.81 / 4.50 FLOPs against a target of 5.8, and no probe landed
within +-15 %. With ``select_in_band`` each probe selects among the epochs whose validation FLOPs lie in
``target * (1 +- tol)`` (``flops_band`` of :func:`~jsdlib.jsd.train.train_d2s_own`): the row is then "the best
D2S epoch at JSD's cost", which exists as soon as the run's FLOPs pass through the band on their way down. A probe
without such an epoch steers the search by its epoch closest to the target.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

from jsdlib.jsd.presets import D2SRecipe, JSDConfig
from jsdlib.jsd.train import train_d2s, train_d2s_own


# D2S's own recipe puts L1 1e-3 on both sides, 10x below JSD's eta_t (1e-2) and 3x below its eta_i (3e-3) in
# ``cpu-emoji``, and with its lower learning rate for E (5e-5) and its 11 steps per epoch (batch 512) it
# sparsifies slowly: on the bundled set, 40 epochs at x10 (L1 1e-2) still left 183 validation FLOPs against
# JSD's 5.9 (seed 2, jsd_fidelity's first run), each of those epochs ~3x slower than at JSD's sparsity. So
# its search starts at x100, near where a power law through that probe puts the target.
OWN_RECIPE_START = 100.0
# ... and selects inside the FLOPs band (module docstring): its selected epoch's FLOPs are not monotone in L1.
OWN_RECIPE_IN_BAND = True


def _miss(flops: float, target: float) -> float:
    """``|log(F / F_target)|``: how far a probe is from the target, symmetric in over / under (0 FLOPs: inf)."""
    return math.inf if flops <= 0 else abs(math.log(flops / target))


def _next_scale(probes: list[dict], target: float, lo, hi, factor: float, slope0: float) -> float:
    """The next probe's scale: the log-log secant step (module docstring), clamped; bisection as the fallback."""
    pos = [p for p in probes if p["flops"] > 0]
    if lo is not None and hi is not None:
        pair = [p for p in pos if p["scale"] in (lo, hi)]
    else:
        pair = pos[-2:]
    ref = min(pair or probes, key=lambda p: _miss(p["flops"], target))     # step from the pair's closer end
    slope = slope0
    if len(pair) == 2 and pair[0]["scale"] != pair[1]["scale"]:
        a, b = pair
        slope = math.log(b["flops"] / a["flops"]) / math.log(b["scale"] / a["scale"])
    fallback = (lo * factor if hi is None else hi / factor if lo is None else math.sqrt(lo * hi))
    if ref["flops"] <= 0 or not slope < 0:
        return fallback
    s = math.exp(math.log(ref["scale"]) + (math.log(target) - math.log(ref["flops"])) / slope)
    if lo is not None and hi is not None:      # stay strictly inside the bracket
        margin = (hi / lo) ** 0.1
        return min(max(s, lo * margin), hi / margin)
    s = min(max(s, ref["scale"] / factor), ref["scale"] * factor)
    if lo is not None and s <= lo or hi is not None and s >= hi:   # never probe again on the wrong side
        return fallback
    return s


def match_flops(probe: Callable[[float], object], target: float, tol: float = 0.15, start: float = 1.0,
                factor: float = 4.0, max_probes: int = 8, slope0: float = -1.0) -> dict:
    """Search the L1 scale ``s`` whose probe lands within ``target * (1 +- tol)`` FLOPs (see the module docstring).

    ``probe(s)`` returns the validation FLOPs, or a dict holding them under ``"flops"`` (kept as the probe's
    ``result``; its scalar ``"record"`` entries, e.g. the validation R@1, are copied into the probe's row).
    ``slope0``: the assumed ``d log F / d log s`` for the step after the first probe. Returns ``{"scale",
    "flops", "matched", "target", "tol", "result", "probes": [{"scale", "flops", "ratio", ...}, ...]}`` for the
    first probe within tolerance, else (``matched=False``) the closest one.
    """
    if not target > 0:
        raise ValueError(f"match_flops: the target FLOPs must be > 0, got {target}")
    if not (0 < tol < 1 and start > 0 and factor > 1 and max_probes >= 1 and slope0 < 0):
        raise ValueError("match_flops: need 0 < tol < 1, start > 0, factor > 1, max_probes >= 1 and slope0 < 0")
    probes, results = [], []
    lo = hi = None          # lo: a scale with too many FLOPs (needs more L1); hi: one with too few
    s = float(start)
    while len(probes) < max_probes:
        r = probe(s)
        f = float(r["flops"] if isinstance(r, dict) else r)
        probes.append({"scale": s, "flops": f, "ratio": f / target,
                       **(r.get("record", {}) if isinstance(r, dict) else {})})
        results.append(r)
        if abs(f / target - 1) <= tol:
            break
        if f > target:
            lo = s if lo is None else max(lo, s)
        else:
            hi = s if hi is None else min(hi, s)
        s = _next_scale(probes, target, lo, hi, factor, slope0)
    k = next((i for i, p in enumerate(probes) if abs(p["ratio"] - 1) <= tol), None)
    matched = k is not None
    if k is None:
        k = min(range(len(probes)), key=lambda i: _miss(probes[i]["flops"], target))
    return {"scale": probes[k]["scale"], "flops": probes[k]["flops"], "matched": matched, "target": float(target),
            "tol": tol, "result": results[k], "probes": probes}


def match_d2s_l1(feats_train, feats_val, cfg: JSDConfig, target_flops: float, recipe: D2SRecipe | None = None,
                 probe_epochs: int | None = None, tol: float = 0.15, max_probes: int = 8, factor: float = 4.0,
                 start: float | None = None, seed: int | None = None, run_root=None, tag: str = "d2s",
                 select_in_band: bool | None = None, log=print, **train_kw) -> dict:
    """D2S's L1 weight searched on validation so that its validation FLOPs match ``target_flops`` within ``tol``.

    ``recipe=None``: D2S with JSD's recipe (:func:`~jsdlib.jsd.train.train_d2s`, base weights ``cfg.d2s_eta_*``,
    else JSD's); a :class:`~jsdlib.jsd.presets.D2SRecipe`: D2S's own recipe (:func:`~jsdlib.jsd.train.train_d2s_own`,
    base weights ``recipe.eta_*``). Each probe trains ``probe_epochs`` epochs (default: ``cfg.epochs``, so the chosen
    probe is the final model) and reads the FLOPs of its selected validation epoch; with shorter probes the chosen
    weight is trained once more for ``cfg.epochs`` (``result``), and ``final_flops`` / ``final_matched`` say
    whether that run still lands within ``tol``. ``start``: the first probe's scale (default 1 for JSD's recipe,
    :data:`OWN_RECIPE_START` for D2S's own, whose base L1 1e-3 is 3-10x below JSD's weights). ``select_in_band``:
    each probe selects among the epochs within ``target_flops * (1 +- tol)`` (module docstring; default
    :data:`OWN_RECIPE_IN_BAND` for D2S's own recipe, off for JSD's, whose selected FLOPs fall monotonically).
    ``run_root``: resumable probe folders ``run_root/<tag>-l1x<scale>-seed<k>``. Returns :func:`match_flops`'
    dict plus ``eta_t``, ``eta_i``, ``probe_epochs``, ``select_in_band``; each probe row records the FLOPs,
    ``val_R@1`` and ``best_epoch`` of its selected epoch and, in the band mode, ``in_band`` and ``kept_epoch``
    (the model a probe keeps: its best in-band epoch, else its last one; when no epoch is in the band the row's
    FLOPs / R@1 / epoch are those of the epoch closest to the target, the one that steers the search).
    """
    epochs = cfg.epochs if probe_epochs is None else int(probe_epochs)
    seed = cfg.seed if seed is None else seed
    base_cfg = cfg.replace(epochs=epochs, seed=seed)
    if recipe is None:
        base = (cfg.eta_t if cfg.d2s_eta_t is None else cfg.d2s_eta_t,
                cfg.eta_i if cfg.d2s_eta_i is None else cfg.d2s_eta_i)
    else:
        base = (recipe.eta_t, recipe.eta_i)
    if select_in_band is None:
        select_in_band = recipe is not None and OWN_RECIPE_IN_BAND
    band = (target_flops * (1 - tol), target_flops * (1 + tol)) if select_in_band else None
    folder = f"{tag}-band" if select_in_band else tag

    def train(scale: float, c: JSDConfig, suffix: str = "") -> dict:
        rd = None if run_root is None else Path(run_root) / f"{folder}-l1x{scale:.4g}{suffix}-seed{seed}"
        eta_t, eta_i = base[0] * scale, base[1] * scale
        if recipe is None:
            res = train_d2s(feats_train, feats_val, c.replace(d2s_eta_t=eta_t, d2s_eta_i=eta_i), run_dir=rd,
                            log=log, flops_band=band, **train_kw)
        else:
            res = train_d2s_own(feats_train, feats_val, c, recipe.replace(eta_t=eta_t, eta_i=eta_i), run_dir=rd,
                                log=log, flops_band=band, **train_kw)
        row = res["best"]
        in_band = band is not None and res["best_key"] is not None
        if band is not None and not in_band:    # no epoch in the band: the epoch closest to the target steers
            row = min(res["history"], key=lambda r: _miss(r["val"]["flops"], target_flops))
        record = {"val_R@1": float(row["val"]["sparse"]["R@1"]), "best_epoch": row["epoch"]}
        if band is not None:
            record.update(in_band=in_band, kept_epoch=res["best"]["epoch"])
        return {**res, "flops": float(row["val"]["flops"]), "record": record}

    def probe(scale: float) -> dict:
        res = train(scale, base_cfg)
        log(f"{tag} L1 x{scale:.4g}: val FLOPs {res['flops']:.2f} (target {target_flops:.2f})")
        return res

    if start is None:
        start = 1.0 if recipe is None else OWN_RECIPE_START
    out = match_flops(probe, target_flops, tol=tol, factor=factor, max_probes=max_probes, start=start)
    out.update(eta_t=base[0] * out["scale"], eta_i=base[1] * out["scale"], probe_epochs=epochs,
               select_in_band=bool(select_in_band))
    if epochs < cfg.epochs:     # short probes: train the chosen weight for the full run and say whether it holds
        out["result"] = train(out["scale"], cfg.replace(seed=seed), "-final")
        out["final_flops"] = out["result"]["flops"]
        out["final_matched"] = abs(out["final_flops"] / target_flops - 1) <= tol
        log(f"{tag} final run at L1 x{out['scale']:.4g}: val FLOPs {out['final_flops']:.2f} "
            f"({'within' if out['final_matched'] else 'OUTSIDE'} +-{tol:.0%} of {target_flops:.2f})")
    return out


__all__ = ["match_flops", "match_d2s_l1", "OWN_RECIPE_START", "OWN_RECIPE_IN_BAND"]
