"""Grounding the bundled model's terms (issue 14, point 4): the recipe chosen on validation among PEC schedules,
regularisers and vocabulary masks.

Every candidate is the bundled recipe (``cpu-emoji`` + PEC, one seed) with some of three knobs changed:

- **PEC's schedule** (:func:`jsdlib.jsd.train.pec_probability`): D2S's decay of the masking probability from 1 to
  0 over 95 % of the epochs, or a floor ``pec_floor`` below which it never falls (the captions keep being pulled
  to their own words to the end);
- **the regulariser**: L1, or FLOPS ``sum_j (mean_i |z_ij|)^2`` (Paria et al. 2020), which costs a term by how
  many images use it, so "," (active for 43 % of the images) pays far more than "octopus"; its weights are
  the preset's times ``FLOPS_SCALES`` (FLOPS is much smaller than L1 for the same vectors);
- **the vocabulary mask** (:mod:`jsdlib.jsd.words`): none, or only whole words.

Each candidate trains on the Noto train split and is measured on the Noto **val** split: sparse t2i R@1, FLOPs
and readability of the image vectors (:func:`jsdlib.apps.readability.readability`: ``readable@5`` and
``specific@5``, overall and per subset seen / cross-style / unseen). The rule, fixed before the runs::

    eligible = { c : val FLOPs(c) <= FLOPS_MAX }                      (the acceptance's bound, 5)
    close    = { c in eligible : val R@1(c) >= max_eligible val R@1 - R1_SLACK }   (1 point)
    chosen   = argmax_{c in close} val specific@5(c), ties by val R@1

Test numbers are computed for every candidate too, but only printed beside the choice.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from jsdlib.apps.readability import readability
from jsdlib.data import emoji_styles
from jsdlib.data.karpathy import load_emoji
from jsdlib.jsd.evaluate import encode, evaluate_model
from jsdlib.jsd.features import FeatureSet
from jsdlib.jsd.presets import JSDConfig
from jsdlib.jsd.train import train_jsd
from jsdlib.jsd.vocab import top_terms

TRAIN_SET = "train_set"
FLOPS_MAX = 5.0
R1_SLACK = 1.0
PEC_FLOOR = 0.3
FLOPS_SCALES = (30.0, 100.0)
K = 5


def candidates(cfg: JSDConfig) -> dict[str, dict]:
    """The candidate changes to ``cfg`` (the bundled recipe), by name."""
    flops = {f"pec-flops-x{s:g}-words": {"regulariser": "flops", "eta_t": cfg.eta_t * s, "eta_i": cfg.eta_i * s,
                                         "vocab_mask": "words"} for s in FLOPS_SCALES}
    return {"pec": {}, "pec-floor": {"pec_floor": PEC_FLOOR}, "pec-words": {"vocab_mask": "words"},
            "pec-floor-words": {"pec_floor": PEC_FLOOR, "vocab_mask": "words"}, **flops,
            # added after the first runs (the rule unchanged): denser vectors within the FLOPs bound, no PEC,
            # and JSD trained on every training style's captions (TRAIN_SET key: not a JSDConfig field)
            "pec-floor-words-l1x0.3": {"pec_floor": PEC_FLOOR, "vocab_mask": "words", "eta_t": cfg.eta_t * 0.3,
                                       "eta_i": cfg.eta_i * 0.3},
            "words": {"pec": False, "vocab_mask": "words"},
            "pec-floor-words-styles": {"pec_floor": PEC_FLOOR, "vocab_mask": "words", TRAIN_SET: "styles"}}


def noto_subsets(split: str) -> list[str]:
    """The multi-style set's subset label (seen / cross-style / unseen) of each image of the Noto ``split``,
    in :func:`jsdlib.data.karpathy.load_emoji`'s order (checked by file name)."""
    noto, styles = load_emoji(split), emoji_styles.load(split, style="noto", check_images=False)
    if [Path(p).name for p in noto.image_paths] != [Path(p).name for p in styles.image_paths]:
        raise ValueError(f"the multi-style set's Noto {split} split does not list the bundled {split} split's images")
    return [m["subset"] for m in styles.image_meta]


def measure(model, feats, split, vocab, subsets: Sequence[str], w1: float, w2: float) -> dict:
    """Sparse / dense R@1, FLOPs, terms and the readability rows of one split."""
    ev = evaluate_model(model, feats, w1, w2)
    Z_i = encode(model, feats)["Z_i"]
    terms = top_terms(Z_i, K, vocab)
    captions = [split.captions_of(i) for i in range(len(split))]
    read = readability(terms, captions, k=K, subsets=list(subsets))
    return {"sparse_R@1": ev["sparse"]["R@1"], "dense_R@1": ev["dense"]["R@1"], "flops": ev["flops"],
            "terms_q": ev["terms_q"], "terms_d": ev["terms_d"],
            "readability": {g: {k: row[k] for k in ("readable", "specific", "images", "with_specific_word")}
                            for g, row in read.items()}}


def train_candidate(fs: FeatureSet, cfg: JSDConfig, change: dict, run_dir=None, progress: bool = False,
                    log=print, styles_fs=None) -> dict:
    """Train one candidate (``cfg`` with ``change``) and measure it on val and test; a change with
    ``train_set: "styles"`` trains on ``styles_fs`` (the same stand-in's features, multi-style training split)."""
    change = dict(change)
    if change.pop(TRAIN_SET, "noto") == "styles":
        if styles_fs is None:
            raise ValueError("this candidate trains on the multi-style training split: pass styles_fs "
                             "(jsdlib.jsd.features.emoji_features(checkpoint, train_set='styles'))")
        fs = styles_fs
    c = cfg.replace(**change)
    res = train_jsd(fs.train, fs.val, c, run_dir=run_dir, E_init=fs.E_init, special_ids=fs.special_ids,
                    caption_token_ids=fs.caption_token_ids, progress=progress, log=log, vocab=fs.vocab)
    out = {"change": change | ({TRAIN_SET: "styles"} if fs is styles_fs else {}), "best_epoch": res["best"]["epoch"],
           "epochs_run": res["epoch"]}
    for name, feats in (("val", fs.val), ("test", fs.test)):
        out[name] = measure(res["model"], feats, load_emoji(name), fs.vocab, noto_subsets(name), c.w1, c.w2)
    return out


def choose(rows: dict[str, dict]) -> dict:
    """The module docstring's rule over ``{name: train_candidate(...)}``; returns the choice and why."""
    eligible = {n: r for n, r in rows.items() if r["val"]["flops"] <= FLOPS_MAX}
    if not eligible:
        return {"chosen": None, "why": f"no candidate has val FLOPs <= {FLOPS_MAX}"}
    top = max(r["val"]["sparse_R@1"] for r in eligible.values())
    close = {n: r for n, r in eligible.items() if r["val"]["sparse_R@1"] >= top - R1_SLACK}
    chosen = max(close, key=lambda n: (close[n]["val"]["readability"]["all"]["specific"], close[n]["val"]["sparse_R@1"]))
    return {"chosen": chosen, "eligible": sorted(eligible), "close": sorted(close), "top_val_R@1": top,
            "why": f"highest val specific@{K} among the candidates with val FLOPs <= {FLOPS_MAX} and val sparse R@1 "
                   f">= {top:.1f} - {R1_SLACK:g}"}


def grounding(fs: FeatureSet, cfg: JSDConfig, names: Sequence[str] | None = None, run_root=None,
              progress: bool = False, log=print, styles_fs=None) -> dict:
    """Train (or resume) the candidates ``names`` (default: all) and apply the rule; ``run_root``: resumable run
    folders ``<run_root>/<name>``."""
    cands = candidates(cfg)
    unknown = [n for n in (names or []) if n not in cands]
    if unknown:
        raise ValueError(f"unknown grounding candidate(s) {unknown}; known: {list(cands)}")
    rows = {}
    for n in names or list(cands):
        log(f"grounding: {n} {cands[n]}")
        rows[n] = train_candidate(fs, cfg, cands[n], None if run_root is None else Path(run_root) / n, progress, log,
                                  styles_fs)
    return {"k": K, "flops_max": FLOPS_MAX, "r1_slack": R1_SLACK, "seed": cfg.seed, "preset": cfg.name,
            "rows": rows, **choose(rows)}


__all__ = ["FLOPS_MAX", "R1_SLACK", "PEC_FLOOR", "FLOPS_SCALES", "candidates", "noto_subsets", "measure",
           "train_candidate", "choose", "grounding"]
