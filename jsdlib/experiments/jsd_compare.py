"""Experiments over cached features: every JSD-table method over several seeds, with paired tests.

``compare`` trains and evaluates the methods of the JSD paper for each seed on the same features and split and
aggregates them into the schema of ``jsdlib jsd compare --json``::

    {"methods": {NAME: {"t2i": {"R@1": {"mean", "std"}, "R@5": ..., "R@10": ..., "MRR@10": ...},
                        "flops", "terms_q", "terms_d", "per_seed": [...]}},
     "tests": {"jsd_sparse_vs_NAME": {"p", "test", "n_pairs", "mean_rr_diff"},
               "jsd_dense_vs_dense_original": {...}}, "config": ..., "seeds": [...]}

Significance: a paired t-test on per-query reciprocal ranks (MRR@10 terms), **pooled over seeds**: each
(seed, caption) is one pair, JSD sparse's value against the other method's for the same caption and seed.
Std is the sample standard deviation over seeds (ddof=1; 0 for one seed).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from jsdlib.common.hardware import describe
from jsdlib.common.metrics import ranks, reciprocal_ranks, t2i_metrics
from jsdlib.common.stats import mean_std, paired_test
from jsdlib.jsd.methods import METHODS, run_methods
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.features import FeatureSet
from jsdlib.jsd.evaluate import encode, evaluate_model, sparse_product
from jsdlib.jsd.train import train_d2s, train_d2s_own, train_jsd
from jsdlib.jsd.presets import D2SRecipe, JSDConfig

SWEEP_METHODS = ("jsd", "d2s", "d2s_own")
# Issue 13's table: the authors' JSD beside the real D2S. D2S in its own recipe and D2S's loss under JSD's recipe,
# both matched to each JSD run's FLOPs inside the run; the integrated score as the authors compute it at test
# time and the training-time S_x; JSD trained with the authors' t->i teacher and with the corrected one.
FIDELITY_METHODS = ("dense_original", "d2s_own_matched", "d2s_matched", "jsd_sparse", "jsd_dense",
                    "jsd_integrated_authors", "jsd_integrated_sx", "jsd_authors_teacher", "jsd_corrected_teacher")


def _pooled_paired_test(per_seed: Sequence[dict], x: str, y: str, seeds: Sequence[int]) -> dict:
    """Paired t-test of method ``x`` against ``y`` on per-query RR@10, the (seed, caption) pairs of all seeds, and
    each seed's own test in ``per_seed`` (the pooled p treats one seed's captions as independent draws, which
    they are not: they share that seed's training run)."""
    a, b = (np.concatenate([r[n]["rr"] for r in per_seed]) for n in (x, y))
    own = [{"seed": int(s), "p": paired_test(np.asarray(r[x]["rr"]), np.asarray(r[y]["rr"]), "t"),
            "mean_rr_diff": float(np.mean(np.asarray(r[x]["rr"]) - np.asarray(r[y]["rr"])))}
           for s, r in zip(seeds, per_seed)]
    return {"p": paired_test(a, b, "t"), "test": "paired t-test, RR@10, pooled over seeds", "n_pairs": int(len(a)),
            "mean_rr_diff": float(np.mean(a - b)), "per_seed": own}


def aggregate(per_seed: Sequence[dict], seeds: Sequence[int]) -> dict:
    """Per-seed ``{name: result}`` dicts -> the compare schema (mean/std per metric, pooled paired tests)."""
    names = list(per_seed[0])
    methods = {}
    for n in names:
        runs = [r[n] for r in per_seed]
        t2i = {k: mean_std([r["t2i"][k] for r in runs]) for k in runs[0]["t2i"]}
        methods[n] = {"t2i": t2i, **{k: float(np.mean([r[k] for r in runs])) for k in ("flops", "terms_q", "terms_d")},
                      "per_seed": [{"seed": s, "t2i": r["t2i"], "flops": r["flops"], "terms_q": r["terms_q"],
                                    "terms_d": r["terms_d"], **({"best_epoch": r["best_epoch"]} if "best_epoch" in r
                                                                else {}),
                                    **{k: r[k] for k in ("flops_match", "recipe") if k in r}}
                                   for s, r in zip(seeds, runs)]}
    pairs = [("jsd_sparse", n) for n in names if n != "jsd_sparse"] if "jsd_sparse" in names else []
    if {"jsd_dense", "dense_original"} <= set(names):  # the paper's "JSD dense > dense original"
        pairs.append(("jsd_dense", "dense_original"))
    if {"jsd_authors_teacher", "jsd_corrected_teacher"} <= set(names):  # issue 13: the two t->i teachers
        pairs.append(("jsd_authors_teacher", "jsd_corrected_teacher"))
    tests = {f"{x}_vs_{y}": _pooled_paired_test(per_seed, x, y, seeds) for x, y in pairs}
    return {"methods": methods, "tests": tests}


def compare(fs: FeatureSet, cfg: JSDConfig, seeds: Sequence[int], names: Sequence[str] | None = None,
            run_root=None, progress: bool = False, log=print, match: dict | None = None) -> dict:
    """Run ``names`` (default: all methods) for every seed on ``fs`` and aggregate (see module docstring).
    ``match``: keyword arguments of :func:`jsdlib.jsd.matching.match_d2s_l1` for the ``*_matched`` rows."""
    names = list(names or METHODS)
    if not seeds:
        raise ValueError("compare needs at least one seed")
    per_seed = []
    for s in seeds:
        log(f"seed {s}: {', '.join(names)}")
        per_seed.append(run_methods(names, fs.train, fs.val, fs.test, cfg, seed=s, E_init=fs.E_init,
                                    special_ids=fs.special_ids, caption_token_ids=fs.caption_token_ids,
                                    run_root=run_root, progress=progress, log=log, match=match, vocab=fs.vocab))
    out = aggregate(per_seed, list(seeds))
    out["config"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    out["seeds"] = list(seeds)
    # what the training ran in (bf16 autocast only on CPUs with native bf16, see jsdlib.common.hardware)
    out["precision"] = sorted({r["precision"] for res in per_seed for r in res.values() if r.get("precision")})
    out["cpu"] = describe()
    out["data"] = {"dataset": fs.test.meta.get("dataset"), "split": "test", "n_images": int(fs.test.image.shape[0]),
                   "n_captions": int(fs.test.text.shape[0])}
    return out


def sampling_variants(cfg: JSDConfig) -> dict[str, dict]:
    """The epochs :func:`sampling_check` compares, as config changes: ``images`` (each image once, with one of
    its captions), ``captions`` (the authors' epoch: every (caption, image) pair, duplicates kept; as many epochs,
    so more optimiser steps) and ``captions_same_steps`` (the authors' epoch with epochs and patience scaled so the
    run has as many optimiser steps as ``images``: the comparison at equal compute)."""
    return {"images": {"sampling": "images", "drop_duplicates": True},
            "captions": {"sampling": "captions", "drop_duplicates": False},
            "captions_same_steps": {"sampling": "captions", "drop_duplicates": False,
                                    "epochs": max(1, round(cfg.epochs / 2)), "patience": max(1, round(cfg.patience / 2))}}


def sampling_check(fs: FeatureSet, cfg: JSDConfig, seeds: Sequence[int], run_root=None, progress: bool = False,
                   log=print) -> dict:
    """Which epoch ``cpu-emoji`` should use, chosen on validation: JSD trained with each epoch of
    :func:`sampling_variants` for every seed, compared on validation sparse R@1 at the selected epoch (mean over
    seeds) and by a paired t-test on validation per-query RR@10 pooled over seeds against the preset's own epoch.
    Test R@1 is reported beside, never used. The runs of ``cfg``'s own epoch are the comparison's
    ``jsd-seed<k>`` folders (the same trainings). (The bundled emoji set has two captions per image, so an epoch
    over caption pairs has twice the steps of an epoch over images.)"""
    variants = sampling_variants(cfg)
    own = next((n for n, ch in variants.items() if cfg.replace(**ch).digest() == cfg.digest()), None)
    if own is None:
        raise ValueError(f"sampling_check: the preset's epoch (sampling={cfg.sampling!r}, drop_duplicates="
                         f"{cfg.drop_duplicates}, {cfg.epochs} epochs) is none of the epochs compared "
                         f"{list(variants)}: nothing to compare it with")
    per, rr = {n: [] for n in variants}, {n: [] for n in variants}
    for seed in seeds:
        for name in sorted(variants, key=lambda n: n == own):   # own last: the comparison may train it meanwhile
            c = cfg.replace(seed=seed, **variants[name])
            rd = None if run_root is None else Path(run_root) / (f"jsd-seed{seed}" if name == own else
                                                                  f"jsd-{name}-seed{seed}")
            res = train_jsd(fs.train, fs.val, c, run_dir=rd, E_init=fs.E_init, special_ids=fs.special_ids,
                            caption_token_ids=fs.caption_token_ids, progress=progress, log=log, vocab=fs.vocab)
            best = res["best"]
            val_enc, enc = (encode(res["model"], f, c.eval_batch, c.device) for f in (fs.val, fs.test))
            S_val = sparse_product(val_enc["Z_t"], val_enc["Z_i"]).numpy()
            rr[name].append(reciprocal_ranks(ranks(S_val, fs.val.caption_to_image), 10))
            per[name].append({"seed": seed, "val_R@1": best["val"]["sparse"]["R@1"], "val_flops": best["val"]["flops"],
                              "best_epoch": best["epoch"], "epochs_run": len(res["history"]), "steps": res["step"],
                              "test_R@1": t2i_metrics(sparse_product(enc["Z_t"], enc["Z_i"]).numpy(),
                                                      fs.test.caption_to_image)["R@1"],
                              "test_flops": efficiency(enc)["flops"]})
            log(f"sampling {name} seed {seed}: val R@1 {per[name][-1]['val_R@1']:.2f} "
                f"(FLOPs {per[name][-1]['val_flops']:.2f}), {per[name][-1]['steps']} steps")
    rows = {}
    for name, runs in per.items():
        rows[name] = {**{k: v for k, v in variants[name].items()},
                      **{k: float(np.mean([r[k] for r in runs])) for k in ("val_R@1", "val_flops", "steps",
                                                                           "test_R@1", "test_flops")},
                      "val_R@1_std": float(np.std([r["val_R@1"] for r in runs], ddof=1)) if len(runs) > 1 else 0.0,
                      "per_seed": runs}
        if name != own:
            a, b = np.concatenate(rr[name]), np.concatenate(rr[own])
            rows[name]["val_vs_own"] = {"p": paired_test(a, b, "t"), "mean_rr_diff": float(np.mean(a - b)),
                                        "n_pairs": int(len(a)), "test": "paired t-test, validation RR@10, pooled"}
    chosen = max(rows, key=lambda n: rows[n]["val_R@1"])
    return {"seeds": list(seeds), "rows": rows, "chosen_on_validation": chosen, "preset_epoch": own}


def fidelity(fs: FeatureSet, cfg: JSDConfig, seeds: Sequence[int], names: Sequence[str] = FIDELITY_METHODS,
             match: dict | None = None, run_root=None, progress: bool = False, log=print) -> dict:
    """Issue 13's table (:data:`FIDELITY_METHODS`) over ``seeds`` (:func:`compare`, with the paired tests of JSD
    sparse against each row and of the two teachers), plus :func:`sampling_check` over the same seeds."""
    out = compare(fs, cfg, seeds, names, run_root=run_root, progress=progress, log=log, match=match)
    out["sampling"] = sampling_check(fs, cfg, seeds, run_root=run_root, progress=progress, log=log)
    return out


def summary_rows(result: dict, digits: int = 1) -> dict:
    """``{method: {"R@1": "57.6 ± 0.3", ..., "terms q/d": ..., "FLOPs": ..., "p vs JSD sparse": ...}}`` for tables."""
    rows = {}
    for n, m in result["methods"].items():
        row = {k: f"{v['mean']:.{digits}f} ± {v['std']:.{digits}f}" for k, v in m["t2i"].items()}
        row["terms q/d"] = f"{m['terms_q']:.0f}/{m['terms_d']:.0f}"
        row["FLOPs"] = f"{m['flops']:.1f}"
        t = result["tests"].get(f"jsd_sparse_vs_{n}")
        row["p vs JSD sparse"] = "—" if t is None else f"{t['p']:.2g}"
        rows[n] = row
    return rows


def l1_sweep(fs: FeatureSet, cfg: JSDConfig, method: str, scales: Sequence[float], seed: int | None = None,
             run_root=None, progress: bool = False, log=print, run_dirs: dict | None = None) -> list[dict]:
    """Train ``method`` ("jsd", "d2s", or "d2s_own": D2S's own recipe) with the L1 weights ``scale * (cfg.eta_t, cfg.eta_i)`` for each scale.

    Both methods scale the same base (JSD's weights; D2S's own ``d2s_eta_*`` are ignored here), so one scale
    means one L1 weight on both curves.

    Returns one row per scale with validation *and* test R@1, active terms and FLOPs: the R@1-vs-FLOPs trade-off
    of the paper's Figure 2. Pick operating points on the validation numbers only. ``run_dirs``: ``{scale: run
    folder}`` replacing ``run_root``'s folder for that scale (``reproduce`` points the JSD x1 run at the JSD
    comparison's seed-0 run: the same training).
    """
    if method not in SWEEP_METHODS:
        raise ValueError(f"l1_sweep: method must be one of {SWEEP_METHODS}, got {method!r}")
    rows = []
    for scale in scales:
        if method == "jsd":
            c = cfg.replace(eta_t=cfg.eta_t * scale, eta_i=cfg.eta_i * scale)
            train = train_jsd
            kw = {}
        elif method == "d2s_own":     # D2S's own recipe, the same L1 weights
            c = cfg.replace(d2s_eta_t=cfg.eta_t * scale, d2s_eta_i=cfg.eta_i * scale)
            train = train_d2s_own
            kw = {"caption_token_ids": fs.caption_token_ids,
                  "recipe": D2SRecipe(eta_t=cfg.eta_t * scale, eta_i=cfg.eta_i * scale)}
        else:
            c = cfg.replace(d2s_eta_t=cfg.eta_t * scale, d2s_eta_i=cfg.eta_i * scale)
            train = train_d2s
            kw = {"caption_token_ids": fs.caption_token_ids}
        rd = None if run_root is None else Path(run_root) / f"{method}-l1x{scale:g}-seed{c.seed if seed is None else seed}"
        rd = (run_dirs or {}).get(scale, rd)
        res = train(fs.train, fs.val, c, run_dir=rd, seed=seed, E_init=fs.E_init, special_ids=fs.special_ids,
                    progress=progress, log=log, vocab=fs.vocab, **kw)
        val = evaluate_model(res["model"], fs.val, c.w1, c.w2)
        enc = encode(res["model"], fs.test)
        test = t2i_metrics(sparse_product(enc["Z_t"], enc["Z_i"]).numpy(), fs.test.caption_to_image)
        eff = efficiency(enc)
        rows.append({"method": method, "scale": scale, "eta_t": c.eta_t if method == "jsd" else c.d2s_eta_t,
                     "eta_i": c.eta_i if method == "jsd" else c.d2s_eta_i, "pec": c.pec,
                     "val_R@1": val["sparse"]["R@1"], "val_flops": val["flops"], "val_terms_q": val["terms_q"],
                     "val_terms_d": val["terms_d"], "test_R@1": test["R@1"], "test_flops": eff["flops"],
                     "test_terms_q": eff["terms_q"], "test_terms_d": eff["terms_d"],
                     "best_epoch": res["best"]["epoch"], "precision": res["precision"]})
        log(f"{method} L1 x{scale:g}: val R@1 {rows[-1]['val_R@1']:.1f} FLOPs {rows[-1]['val_flops']:.1f} "
            f"terms {rows[-1]['val_terms_q']:.0f}/{rows[-1]['val_terms_d']:.0f}")
    return rows
