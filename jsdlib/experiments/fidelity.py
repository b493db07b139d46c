"""``jsd_fidelity``'s trainings as units two lanes can share (:mod:`jsdlib.experiments.lanes`).

A unit is a row group and a seed (:data:`FIDELITY_UNITS`), or one seed's epoch check. The step's owner trains the
pending units from the first (waiting for a unit another lane holds), a helper lane from the last (stopping at the
first unit that is finished or held); each unit holds a lock on its folder and leaves a marker naming what it
trained, so a changed step retrains instead of trusting an old marker. Every run lands in the comparison's folder
(``OUT/runs/jsd_compare``), where :func:`jsdlib.experiments.jsd_compare.fidelity` then finds it finished and only
evaluates it: which lane trained a run changes no number.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jsdlib.experiments import jsd_compare
from jsdlib.experiments.lanes import plain_json, share_units
from jsdlib.jsd.matching import OWN_RECIPE_IN_BAND, OWN_RECIPE_START
from jsdlib.jsd.methods import run_methods

FIDELITY_UNITS = (("jsd", ("jsd_sparse",)), ("d2s_jsd_recipe", ("d2s_matched",)),
                  ("teacher", ("jsd_authors_teacher", "jsd_corrected_teacher")), ("d2s_own", ("d2s_own_matched",)))


def units(ctx) -> list[tuple[str, tuple, int]]:
    """The step's trainings as units ``(kind, methods, seed)``: every JSD run first (the matched rows' targets),
    the epoch check's trainings (two per seed) last."""
    return [(k, names, s) for k, names in FIDELITY_UNITS for s in ctx.seeds] + [("sampling", (), s) for s in ctx.seeds]


def unit_dir(ctx, a: dict, unit: tuple) -> tuple[Path, str]:
    """A unit's lock folder and the identity its marker must carry (what the unit trains)."""
    ident = hashlib.sha256(json.dumps({"args": a, "seeds": list(ctx.seeds), "units": FIDELITY_UNITS,
                                       "epochs": jsd_compare.sampling_variants(a["cfg"]),
                                       "own_start": OWN_RECIPE_START, "own_in_band": OWN_RECIPE_IN_BAND},
                                      sort_keys=True, default=plain_json).encode()).hexdigest()[:16]
    return ctx.run_root("jsd_fidelity") / "units" / f"{unit[0]}-seed{unit[2]}", ident


def train_unit(ctx, a: dict, unit: tuple) -> None:
    """Train one unit's runs (into ``OUT/runs/jsd_compare``, where :func:`jsd_compare.fidelity` finds them)."""
    kind, names, seed = unit
    fs, root = ctx.features(), ctx.run_root("jsd_compare")
    ctx.log(f"jsd_fidelity: {kind} seed {seed}")
    if kind == "sampling":
        jsd_compare.sampling_check(fs, a["cfg"], [seed], run_root=root, log=ctx.log)
    else:
        run_methods(list(names), fs.train, fs.val, fs.test, a["cfg"], seed=seed, E_init=fs.E_init,
                    special_ids=fs.special_ids, caption_token_ids=fs.caption_token_ids, run_root=root,
                    log=ctx.log, match=a["match"], vocab=fs.vocab)


def work_units(ctx, a: dict, helper: bool) -> int:
    """Train the pending units (:func:`jsdlib.experiments.lanes.share_units`: the owner from the start, a helper
    from the end). Returns how many it trained."""
    return share_units(units(ctx), lambda u: unit_dir(ctx, a, u), lambda u: train_unit(ctx, a, u), helper)


__all__ = ["FIDELITY_UNITS", "units", "unit_dir", "train_unit", "work_units"]
