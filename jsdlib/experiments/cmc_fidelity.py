"""``cmc_fidelity``'s trainings as units two lanes can share (:mod:`jsdlib.experiments.lanes`), as ``jsd_fidelity``'s.

The step (issue 15: CMC as the authors ran it within a CPU budget, beside the paper's reranker comparison) trains,
per seed, a CMC head and each comparison reranker (poly-encoder, sum-of-max): a unit is one of them for one seed.
The step's owner trains the units from the first (every CMC head), a helper lane from the last (the rerankers);
each unit holds a lock and leaves a marker naming what it trained (:func:`jsdlib.experiments.lanes.share_units`).
Every run lands where :func:`jsdlib.experiments.cmc_compare.compare` looks for it (``OUT/runs/cmc_fidelity``),
which then finds it finished and only loads and evaluates it. Which lane trained a run changes no number: both
read the same vectors, and the rerankers' token states are encoded in a canonical order
(:meth:`jsdlib.cmc.baselines.TokenStates.prefill`), so they do not depend on what a process encoded before.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from jsdlib.cmc.baselines import TokenStates
from jsdlib.cmc.config import get_cmc_preset
from jsdlib.cmc.cross_encoder import CEConfig
from jsdlib.cmc.data import eval_subset
from jsdlib.cmc.pipelines import EXTRA_PIPELINES, PIPELINES
from jsdlib.cmc.tasks import TASKS, load_task
from jsdlib.cmc.train import train_cmc
from jsdlib.experiments.cmc_compare import (_train_rerankers, compare, reranker_configs, reranker_texts,
                                            train_first_ce)
from jsdlib.experiments.lanes import plain_json, share_units

# The step's arguments to :func:`compare` (docs/fidelity.md, docs/decisions.md): CMC trained as the authors train it
# within a CPU budget (preset cpu-authors: every training mention, lr 1e-4, early stopping, their selection key and
# weight-decay groups), CMC-final over the BE's top-64 (their C_eval), the CE with their head (BERT pooler -> dropout
# -> linear) and decay groups on 4,000 training queries (what 30 minutes of one thread trains: 0.41 s per query in
# the first run of this step), and the paper's reranker comparison: a poly-encoder and sum-of-max over the same
# top-64 lists, each at its lr chosen on validation. Sum-of-max keeps the 2,000 training mentions and 5 epochs it
# was chosen with: on every mention it would cost about 45 min per seed on one thread.
SETTINGS = {"task": "wordnet", "preset": "cpu-authors", "names": PIPELINES + ("be_poly", "be_sum_of_max"),
            "reranker_overrides": {"poly": {"lr": 1e-3},
                                   "sum_of_max": {"lr": 1e-3, "max_train_queries": 2000, "epochs": 5}},
            "k_extra": 64, "k_final": 64,
            "ce_cfg": CEConfig(max_len=64, head="pooler", decay_groups=True, max_train_queries=4000)}
_DATA: dict = {}     # per process: the task's splits and token states, loaded once for all its units


def kinds(a: dict) -> list[str]:
    """The comparison rerankers the step's pipelines name (``poly``, ``sum_of_max``)."""
    return [EXTRA_PIPELINES[n] for n in a["names"] if n in EXTRA_PIPELINES]


def units(ctx, a: dict) -> list[tuple[str, int]]:
    """``(model, seed)``: every CMC head first (the owner's), the rerankers after them (a helper's, from the end)."""
    return [("cmc", s) for s in ctx.seeds] + [(k, s) for k in kinds(a) for s in ctx.seeds]


def unit_dir(ctx, a: dict, unit: tuple) -> tuple[Path, str]:
    """A unit's lock folder and the identity its marker must carry (the step's arguments, seeds and preset)."""
    ident = hashlib.sha256(json.dumps({"args": a, "seeds": list(ctx.seeds), "preset": get_cmc_preset(a["preset"])},
                                      sort_keys=True, default=plain_json).encode()).hexdigest()[:16]
    return ctx.run_root("cmc_fidelity") / "units" / f"{unit[0]}-seed{unit[1]}", ident


def data_key(a: dict) -> tuple:
    """What the per-process data of :func:`task_data` depends on: the task, the rerankers' list length and the
    test subset."""
    return a["task"], a.get("k_extra"), a.get("n_eval", -1)


def task_data(a: dict, progress: bool = False) -> tuple[dict, TokenStates | None]:
    """The task's train / val / test splits and (when the step has rerankers) the token states they read, prefilled
    as :func:`jsdlib.experiments.cmc_compare.compare` prefills them; cached per process."""
    key = data_key(a)
    if key not in _DATA:
        data = {s: load_task(a["task"], s, progress=progress) for s in ("train", "val", "test")}
        tokens = None
        if kinds(a):
            tokens = TokenStates()
            n_eval = a.get("n_eval", -1)   # as compare() reads it: -1 = the task's own subset
            test = eval_subset(data["test"], TASKS[a["task"]]["n_eval"] if n_eval == -1 else n_eval)
            tokens.prefill(reranker_texts(data, test, a.get("k_extra")))
        _DATA[key] = (data, tokens)
    return _DATA[key]


def train_unit(ctx, a: dict, unit: tuple) -> None:
    """Train one unit into the folder :func:`compare` reads it from."""
    model, seed = unit
    data, tokens = task_data(a, ctx.progress)
    cfg, root = get_cmc_preset(a["preset"], seed=seed), ctx.run_root("cmc_fidelity")
    ctx.log(f"cmc_fidelity: {model} seed {seed}")
    if model == "cmc":
        train_cmc(data["train"], data["val"], cfg, run_dir=Path(root) / f"{a['task']}-{cfg.name}-seed{seed}",
                  progress=ctx.progress, log=ctx.log)
    else:
        _train_rerankers(reranker_configs([model], cfg, a.get("reranker_overrides")), data, tokens, root, a["task"],
                         ctx.progress, ctx.log)


def work_units(ctx, a: dict, helper: bool) -> int:
    """Train the pending units (the owner from the start, a helper from the end); how many this lane trained."""
    return share_units(units(ctx, a), lambda u: unit_dir(ctx, a, u), lambda u: train_unit(ctx, a, u), helper)


def run(ctx, a: dict) -> dict:
    """The step, in its owner lane: the CE first (the longest training, and no units), while a helper lane trains the
    units from the end; then the units left, then every pipeline (:func:`compare`, which finds each unit finished)."""
    data, tokens = task_data(a, ctx.progress)   # the units' data and token states: loaded once
    ce_cfg = a["ce_cfg"] or TASKS[a["task"]]["ce"]
    ce = (train_first_ce(data["train"], ce_cfg, list(ctx.seeds), a["task"], ctx.progress, ctx.log)
          if {"be_ce", "be_cmc_ce"} & set(a["names"]) else None)
    work_units(ctx, a, helper=False)
    return compare(seeds=list(ctx.seeds), run_root=ctx.run_root("cmc_fidelity"), progress=ctx.progress, log=ctx.log,
                   **(a | {"data": data, "tokens": tokens, "ce_result": ce}))


def reset_cache() -> None:
    """Forget the per-process data (tests)."""
    _DATA.clear()


__all__ = ["SETTINGS", "kinds", "units", "unit_dir", "data_key", "task_data", "train_unit", "work_units", "run", "reset_cache"]
