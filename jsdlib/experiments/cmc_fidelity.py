"""``cmc_fidelity``'s trainings as units two lanes can share (:mod:`jsdlib.experiments.lanes`), as ``jsd_fidelity``'s.

The step (issue 15: CMC as the authors ran it within a CPU budget, beside the paper's reranker comparison) trains,
per seed, a CMC head and each comparison reranker (poly-encoder, sum-of-max): a unit is one of them for one seed.
Its ``settings`` add two more WordNet runs of :func:`compare` over the same test queries, seeds and CE, each with one
unit per seed: CMC with its own encoders fine-tuned (preset ``cpu-authors-ft``, warm-started from the same seed's
head) and the frozen CMC over the fine-tuned bi-encoder.
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
import math
from pathlib import Path

import torch

from jsdlib.cmc.baselines import TokenStates
from jsdlib.cmc.config import get_cmc_preset
from jsdlib.cmc.cross_encoder import CEConfig
from jsdlib.cmc.data import eval_subset
from jsdlib.cmc.pipelines import EXTRA_PIPELINES, PIPELINES
from jsdlib.cmc.tasks import TASKS, load_task
from jsdlib.experiments.cmc_compare import (_train_rerankers, cmc_run, compare, reranker_configs, reranker_texts,
                                            train_first_ce)
from jsdlib.retrieval.finetune import load_biencoder
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
            "ce_cfg": CEConfig(max_len=64, head="pooler", decay_groups=True, max_train_queries=4000),
            # issue 15's two more WordNet settings, each a compare() beside the main one, sharing its CE: CMC with its
            # own encoders fine-tuned (preset cpu-authors-ft), and the frozen-encoder CMC over the fine-tuned BE
            "settings": {"finetuned_encoders": {"preset": "cpu-authors-ft", "be_kind": "asis"},
                         "finetuned_be": {"preset": "cpu-authors", "be_kind": "finetuned"}}}
_DATA: dict = {}     # per process: the task's splits and token states, loaded once for all its units


def kinds(a: dict) -> list[str]:
    """The comparison rerankers the step's pipelines name (``poly``, ``sum_of_max``)."""
    return [EXTRA_PIPELINES[n] for n in a["names"] if n in EXTRA_PIPELINES]


def units(ctx, a: dict) -> list[tuple[str, int]]:
    """``(model, seed)``: every CMC head first, then the CMC of each setting over the main step's BE (the finetuned
    encoders start from those heads), the rerankers, and last the CMC of each setting over another BE (the owner
    trains from the start, a helper from the end). ``(setting name, seed)`` is that setting's CMC for the seed."""
    st = a.get("settings", {})
    same = [n for n in st if st[n]["be_kind"] == "asis"]
    return ([("cmc", s) for s in ctx.seeds] + [(n, s) for n in same for s in ctx.seeds]
            + [(k, s) for k in kinds(a) for s in ctx.seeds]
            + [(n, s) for n in st if n not in same for s in ctx.seeds])


def unit_dir(ctx, a: dict, unit: tuple) -> tuple[Path, str]:
    """A unit's lock folder and the identity its marker must carry (the step's arguments, seeds and preset)."""
    presets = {n: get_cmc_preset(st["preset"]) for n, st in a.get("settings", {}).items()}
    ident = hashlib.sha256(json.dumps({"args": a, "seeds": list(ctx.seeds), "preset": get_cmc_preset(a["preset"])}
                                      | ({"setting_presets": presets} if presets else {}),
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


def setting_data(a: dict, name: str, progress: bool = False) -> dict:
    """A setting's train / val / test splits: the main step's when its BE is the as-is one, else the task ranked by
    the fine-tuned BE (trained first when it is not cached: ~3 min); cached per process."""
    be_kind = a["settings"][name]["be_kind"]
    if be_kind == "asis":
        return task_data(a, progress)[0]
    key = (a["task"], "be", be_kind)
    if key not in _DATA:
        load_biencoder(be_kind, progress=progress)   # trains and caches it if missing
        _DATA[key] = {s: load_task(a["task"], s, progress=progress, be_kind=be_kind) for s in ("train", "val", "test")}
    return _DATA[key]


def train_unit(ctx, a: dict, unit: tuple) -> None:
    """Train one unit into the folder :func:`compare` reads it from."""
    model, seed = unit
    root = ctx.run_root("cmc_fidelity")
    ctx.log(f"cmc_fidelity: {model} seed {seed}")
    if model in a.get("settings", {}):
        st = a["settings"][model]
        cmc_run(a["task"], setting_data(a, model, ctx.progress), get_cmc_preset(st["preset"], seed=seed),
                setting_root(root, model), ctx.progress, ctx.log)
        return
    data, tokens = task_data(a, ctx.progress)
    cfg = get_cmc_preset(a["preset"], seed=seed)
    if model == "cmc":
        cmc_run(a["task"], data, cfg, root, ctx.progress, ctx.log)
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
    ce = (train_first_ce(data["train"], ce_cfg, list(ctx.seeds), a["task"], ctx.progress, ctx.log,
                         ctx.run_root("cmc_fidelity"))
          if {"be_ce", "be_cmc_ce"} & set(a["names"]) else None)
    work_units(ctx, a, helper=False)
    root, main = ctx.run_root("cmc_fidelity"), {k: v for k, v in a.items() if k != "settings"}
    res = compare(seeds=list(ctx.seeds), run_root=root, progress=ctx.progress, log=ctx.log,
                  **(main | {"data": data, "tokens": tokens, "ce_result": ce}))
    res["settings"] = {}
    for name, st in a.get("settings", {}).items():
        ctx.log(f"cmc_fidelity: setting {name}")
        res["settings"][name] = compare(a["task"], list(ctx.seeds), preset=st["preset"],
                                        names=[n for n in a["names"] if n in PIPELINES],
                                        run_root=setting_root(root, name), n_eval=a.get("n_eval", -1),
                                        ce_cfg=a["ce_cfg"], data=setting_data(a, name, ctx.progress),
                                        progress=ctx.progress, log=ctx.log, k_final=a.get("k_final"),
                                        ce_result=ce) | {"be_kind": st["be_kind"]}
    return res


def setting_root(root, name: str) -> Path:
    """Where a setting's runs live: its own folder, except that the finetuned-encoder CMC shares the main step's
    (its warm start is the main step's CMC head of the same seed)."""
    return Path(root) if name == "finetuned_encoders" else Path(root) / name


def pooling_validation(task: str = "wordnet", progress: bool = False) -> dict:
    """How well the as-is MiniLM's two poolings rank on the task's validation split, each query's domain in full
    (issue 15: which vectors the finetuned CMC's encoders start from; validation only). ``mean_unit``: the bi-encoder's
    mean-pooled unit vectors; ``cls``: the raw [CLS] state the authors' encoders read (cosine ranking; its mean norm
    is reported). R@k over each query's BE top-1024 list re-scored, which holds the whole domain on validation."""
    from jsdlib.cmc.model import TextEncoder  # noqa: PLC0415
    from jsdlib.common.metrics import list_ranks, success_at_k  # noqa: PLC0415

    val = load_task(task, "val", progress=progress)   # WordNet's val domains have <= 1,000 entities: whole lists
    out = {"task": task, "n_queries": len(val), "poolings": {}}
    for pooling in ("mean_unit", "cls"):
        enc = TextEncoder(pooling=pooling)
        q, c = enc.encode(val.query_texts, progress=progress), enc.encode(val.cand_texts, progress=progress)
        norm = float(q.norm(dim=1).mean())
        q, c = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(c, dim=1)
        s = torch.einsum("nd,nkd->nk", q, c[val.topk]).masked_fill(~val.valid, -math.inf)
        ranked = torch.gather(val.topk, 1, torch.argsort(s, dim=1, descending=True, stable=True))
        r = list_ranks(ranked, val.gold)
        out["poolings"][pooling] = {f"R@{k}": success_at_k(r, k) for k in (1, 16, 64)} | {"mean_query_norm": norm}
    return out


def finetuned_lr_validation(lr_pairs, seed: int = 0, run_root=None, head_root=None, progress: bool = False,
                            log=print) -> dict:
    """The finetuned-encoder CMC's validation key at each ``(head lr, encoder lr)`` of ``lr_pairs`` (preset
    ``cpu-authors-ft`` otherwise; validation only, no test number). Each run starts from the ``cpu-authors`` head of
    ``seed`` in ``head_root`` (the step's run folder: trained there first when missing) and trains in its own folder
    under ``run_root``."""
    from jsdlib.cmc.train import train_cmc  # noqa: PLC0415
    from jsdlib.experiments.cmc_compare import finetuned_start  # noqa: PLC0415

    data = {s: load_task("wordnet", s, progress=progress) for s in ("train", "val")}
    rows = []
    for lr, enc_lr in lr_pairs:
        cfg = get_cmc_preset("cpu-authors-ft", seed=seed, lr=lr, encoder_lr=enc_lr)
        model = finetuned_start("wordnet", data, cfg, head_root, progress, log)
        rd = None if run_root is None else Path(run_root) / f"ft-lr{lr:g}-enc{enc_lr:g}-seed{seed}"
        res = train_cmc(data["train"], data["val"], cfg, run_dir=rd, progress=progress, log=log, model=model)
        rows.append({"lr": lr, "encoder_lr": enc_lr, "val_key": res["best"].get("val_" + cfg.select_on),
                     "val_acc": res["best"]["val_acc"], "train_time_s": res["train_time_s"]})
        log(f"finetuned CMC lr {lr:g} / encoders {enc_lr:g}: val key {rows[-1]['val_key']:.2f}")
    base = get_cmc_preset("cpu-authors-ft")
    return {"task": "wordnet", "preset": base.name, "seed": seed, "select_on": base.select_on,
            "n_train_queries": base.max_train_queries, "n_val_queries": base.max_val_queries, "rows": rows}


def reset_cache() -> None:
    """Forget the per-process data (tests)."""
    _DATA.clear()


__all__ = ["SETTINGS", "kinds", "units", "unit_dir", "data_key", "task_data", "setting_data", "setting_root", "train_unit",
           "pooling_validation", "finetuned_lr_validation", "work_units", "run", "reset_cache"]
