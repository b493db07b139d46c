"""CMC experiments (notebook 05, reproduce): every pipeline over seeds on a task (:func:`compare`), the committed
WordNet head (:func:`export_wordnet_head`), the learning-rate sweep behind the CPU presets (:func:`lr_sweep`) and
the comparison rerankers' (:func:`reranker_sweep`)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path
from typing import Sequence

from jsdlib.cmc.baselines import TokenStates
from jsdlib.cmc.baselines_train import make_reranker, train_reranker
from jsdlib.cmc.checkpoint import CMC_WORDNET_ASSET, load_cmc, save_cmc
from jsdlib.cmc.config import get_cmc_preset
from jsdlib.cmc.cross_encoder import CEConfig, PairCache, train_ce
from jsdlib.cmc.crossfit import crossfit_emoji_train
from jsdlib.cmc.data import RerankData, eval_subset
from jsdlib.cmc.pipelines import EXTRA_PIPELINES, PIPELINES, aggregate_pipelines, pipeline_tests, run_pipelines
from jsdlib.cmc.rerank import evaluate_cmc
from jsdlib.cmc.tasks import TASKS, load_task, wordnet_task
from jsdlib.cmc.train import train_cmc
from jsdlib.common.seeding import seeded


def compare(task: str, seeds: Sequence[int], preset: str = "cpu-frozen", names: Sequence[str] | None = None,
            run_root=None, n_eval: int | None = -1, ce_cfg: CEConfig | None = None, data: dict | None = None,
            progress: bool = False, log=print, reranker_overrides: dict | None = None,
            tokens: TokenStates | None = None, k_extra: int | None = None, train_folds: int | None = None,
            k_final: int | None = None, ce_result: dict | None = None) -> dict:
    """Train CMC (and the CE) per seed and run every pipeline on the task's test queries; mean ± std over seeds.

    Returns ``{"pipelines": {NAME: {metric: {"mean", "std"}}}, "per_seed", "task", "variant", "config", ...}``.
    ``data``: ``{"train", "val", "test"}`` RerankData to use instead of loading the task.
    ``names`` may add the reranker comparison (:data:`jsdlib.cmc.pipelines.EXTRA_PIPELINES`: ``be_poly``,
    ``be_sum_of_max``): each is trained per seed by :func:`jsdlib.cmc.baselines_train.train_reranker` with the
    CMC preset's config plus ``reranker_overrides`` (``{"lr": 1e-3}`` for every reranker, or one dict per kind,
    ``{"poly": {"lr": 1e-3}, "sum_of_max": {"lr": 3e-4}}``, each chosen on validation: :func:`reranker_sweep`), over the
    frozen MiniLM token states of ``tokens`` (default: pretrained MiniLM, shared by every seed and reranker); they
    rerank the top-``k_extra`` (default: the task's ``k``, as BE-CMC); their token states are encoded first, in the
    canonical order of :func:`reranker_texts`. ``k_final``: how many of the BE's candidates ``cmc_final`` reranks
    (default the task's, else K'; the authors' ``C_eval`` is 64). ``ce_result``: a :func:`train_ce` result of ``ce_cfg``
    with the first seed, trained by the caller (``cmc_fidelity`` trains it while another lane trains the heads).
    ``train_folds`` (emoji only): CMC's
    training lists cross-fitted over that many folds (:func:`jsdlib.cmc.crossfit.crossfit_emoji_train`; default:
    the bundled model's own lists of its training captions).
    """
    if not seeds:
        raise ValueError("compare needs at least one seed")
    spec = TASKS[task]
    names = tuple(spec.get("names", PIPELINES) if names is None else names)
    if train_folds is not None and task != "emoji":
        raise ValueError(f"train_folds (cross-fitted training lists) exists for the emoji task only, not {task!r}")
    if data is None:
        data = {s: load_task(task, s, progress=progress) for s in ("val", "test")}
        data["train"] = (load_task(task, "train", progress=progress) if train_folds is None else
                         crossfit_emoji_train(folds=train_folds,
                                              run_root=None if run_root is None else Path(run_root) / "crossfit",
                                              progress=progress, log=log))
    n_eval = spec["n_eval"] if n_eval == -1 else n_eval
    test = eval_subset(data["test"], n_eval)
    ce_cfg = ce_cfg or spec["ce"]
    need_ce = any(x in names for x in ("be_ce", "be_cmc_ce"))
    ce, ce_info, cache = None, {}, PairCache()
    if need_ce:  # the expensive model: trained once (first seed) and shared by every CMC seed
        ce_res = ce_result or train_first_ce(data["train"], ce_cfg, seeds, task, progress, log, run_root)
        if ce_res["config"] != dataclasses.asdict(ce_cfg.replace(seed=seeds[0])):
            raise ValueError("compare: ce_result was trained with another config than ce_cfg (seed: the first seed)")
        ce = ce_res["model"]
        ce_info = {"train_time_s": ce_res["train_time_s"], "n_train_queries": ce_res["n_train_queries"],
                   "seed": seeds[0], "first_loss": ce_res["loss_first"], "final_loss": ce_res["loss_last"],
                   "chance_loss": math.log(ce_cfg.n_candidates)}
    kinds = [EXTRA_PIPELINES[x] for x in names if x in EXTRA_PIPELINES]
    if kinds and tokens is None:
        tokens = TokenStates()
    if kinds:
        log(f"[{task}] encoding the token states the comparison rerankers read")
        tokens.prefill(reranker_texts(data, test, k_extra))
    k_final = k_final or spec.get("k_final")
    per_seed, info = [], []
    for s in seeds:
        cfg = get_cmc_preset(preset, seed=s)
        log(f"[{task}] seed {s}: training CMC ({cfg.encoders} encoders, preset {cfg.name})")
        res = cmc_run(task, data, cfg, run_root, progress, log)
        rerankers, extra_info = _train_rerankers(reranker_configs(kinds, cfg, reranker_overrides), data, tokens,
                                                 run_root, task, progress, log)
        log(f"[{task}] seed {s}: pipelines on {len(test)} test queries")
        per_seed.append(run_pipelines(test, res["model"], ce, spec["k"], spec["k_ce"], names, progress=progress,
                                      ce_cache=cache, rerankers=rerankers, k_extra=k_extra,
                                      k_final=k_final))
        info.append({"seed": s, "best_epoch": res["best"]["epoch"], "val_acc": res["best"]["val_acc"],
                     "val_history": [h["val_acc"] for h in res["history"]], "cmc_train_time_s": trained_seconds(res)}
                    | _key_history(res, cfg) | extra_info)
    ce_out = (ce_info | {"ms_per_pair": cache.ms_per_pair, "pairs_scored": cache.pairs,
                         "note": "the CE is trained once (first seed) and shared by every CMC seed"} if need_ce
              else {"skipped": True, "note": spec.get("ce_note", "no cross-encoder pipelines asked for")})
    return {"pipelines": aggregate_pipelines(per_seed), "tests": pipeline_tests(per_seed, seeds), "task": task,
            "names": list(names), "variant": get_cmc_preset(preset).encoders,
            "preset": dataclasses.asdict(get_cmc_preset(preset)),
            "ce_config": dataclasses.asdict(ce_cfg) if need_ce else None,
            "k": min(spec["k"], test.k), "k_ce": spec["k_ce"], "k_final": k_final or spec["k_ce"],
            **({"k_extra": k_extra} if kinds else {}),
            "seeds": list(seeds), "seed_info": info,
            "ce": ce_out,
            "n_test_queries": len(test), "n_test_total": len(data["test"]), "n_train_queries": len(data["train"]),
            "catalogue_size": int(test.cand_emb.shape[0]), "data": test.name, "train_data": data["train"].name,
            **({"train_folds": train_folds} if train_folds is not None else {}),
            "per_seed": [{n: {k: v for k, v in m.items() if k not in ("per_domain", "ranks")} for n, m in r.items()}
                         for r in per_seed]}


def folder_key(data: dict) -> str:
    """8 hex digits naming the training data of a run folder: SHA-256 over the train and val sets' fingerprints.

    Part of every reranker run folder's name, so that new data (the emoji lists of a re-exported bundled JSD model)
    trains in a new folder instead of meeting the old data's checkpoints there (which ``fit`` refuses)."""
    return hashlib.sha256(f"{data['train'].fingerprint()}:{data['val'].fingerprint()}".encode()).hexdigest()[:8]


def cmc_run(task: str, data: dict, cfg, run_root=None, progress: bool = False, log=print) -> dict:
    """CMC of ``cfg`` trained on ``data`` (or found finished) in ``run_root/{task}-{preset}-seed{seed}-{data key}``
    (:func:`folder_key`).

    The finetuned variant (preset ``cpu-authors-ft``, WordNet only: its encoders are text encoders) starts from
    :func:`finetuned_start`."""
    rd = None if run_root is None else Path(run_root) / f"{task}-{cfg.name}-seed{cfg.seed}-{folder_key(data)}"
    model = finetuned_start(task, data, cfg, run_root, progress, log) if cfg.encoders == "finetuned" else None
    return train_cmc(data["train"], data["val"], cfg, run_dir=rd, progress=progress, log=log, model=model)


def finetuned_start(task: str, data: dict, cfg, run_root=None, progress: bool = False, log=print):
    """The finetuned-variant CMC before training: encoders copied from the as-is bi-encoder (the one that ranked
    ``data``), and, when ``cfg.warm_start`` names a frozen preset, the head of that preset's run with the same seed
    (trained first, or found finished, by :func:`cmc_run`)."""
    if task != "wordnet" or not data["train"].name.endswith("be_asis"):
        raise ValueError(f"the finetuned CMC variant needs text queries and candidates ranked by the as-is bi-encoder "
                         f"(task 'wordnet'), not {task!r} / {data['train'].name!r}")
    from jsdlib.cmc.model import CMC  # noqa: PLC0415
    from jsdlib.retrieval.finetune import load_biencoder  # noqa: PLC0415

    head = None
    if cfg.warm_start is not None:
        base = get_cmc_preset(cfg.warm_start, seed=cfg.seed, device=cfg.device)
        if base.encoders != "frozen":
            raise ValueError(f"warm_start must name a frozen-variant preset, not {cfg.warm_start!r}")
        log(f"[{task}] seed {cfg.seed}: the {base.name} head the finetuned CMC starts from")
        head = cmc_run(task, data, base, run_root, progress, log)["model"].head
    with seeded(cfg.seed):
        return CMC.from_biencoder(load_biencoder("asis"), head=head, dropout=cfg.dropout)


def train_first_ce(train: RerankData, ce_cfg: CEConfig, seeds: Sequence[int], task: str, progress: bool = False,
                   log=print, run_root=None) -> dict:
    """The CE every seed of :func:`compare` shares: ``ce_cfg`` trained once, with the first seed (in
    ``run_root/{task}-ce-<digest of the config and the training set>``, when given: a finished one is only
    loaded)."""
    cfg = ce_cfg.replace(seed=seeds[0])
    rd = None
    if run_root is not None:
        key = json.dumps(dataclasses.asdict(cfg), sort_keys=True) + train.fingerprint()
        digest = hashlib.sha256(key.encode()).hexdigest()[:12]
        rd = Path(run_root) / f"{task}-ce-{digest}"
    log(f"[{task}] training the cross-encoder on {ce_cfg.max_train_queries} queries (seed {seeds[0]})")
    return train_ce(train, cfg, progress=progress, log=log, run_dir=rd)


def trained_seconds(res: dict) -> float:
    """A training's time: the sum of its epochs' seconds (validation included), the same whether this call trained
    it or found it finished (another lane's, an earlier invocation's) and only loaded it."""
    return float(sum(h.get("epoch_s", 0.0) for h in res["history"])) or float(res["train_time_s"])


def _key_history(res: dict, cfg) -> dict:
    """The selection key per epoch where it is not micro top-1 (``val_history``): the authors' macro key."""
    if cfg.select_on == "micro_top1":
        return {}
    return {"select_on": cfg.select_on, "val_key_history": [h.get("val_" + cfg.select_on) for h in res["history"]]}


def reranker_texts(data: dict, test: RerankData, k_extra: int | None) -> list[str]:
    """Every text a comparison reranker reads in :func:`compare`: the training and validation queries and catalogues,
    the test queries and the candidates in their top-``k_extra`` (all of them when None). What
    :meth:`TokenStates.prefill` encodes, so that every process training a reranker on ``data`` reads the same
    states (:mod:`jsdlib.experiments.cmc_fidelity`)."""
    texts = []
    for d in (data["train"], data["val"]):
        texts += list(d.query_texts or []) + list(d.cand_texts or [])   # an image catalogue has no texts
    texts += list(test.query_texts or [])
    if test.cand_texts is not None:
        top, valid = (test.topk, test.valid) if k_extra is None else (test.topk[:, :k_extra], test.valid[:, :k_extra])
        texts += [test.cand_texts[i] for i in top[valid].unique().tolist()]
    return texts


def reranker_configs(kinds, cfg, overrides: dict | None = None) -> dict:
    """Each comparison reranker's config: ``cfg`` (CMC's preset, this seed) with ``overrides``' flat fields for
    every kind and, under a kind's name (``"poly"``, ``"sum_of_max"``), that kind's own fields (its lr chosen on
    validation by :func:`reranker_sweep`)."""
    overrides = dict(overrides or {})
    known = set(EXTRA_PIPELINES.values())
    per_kind = {k: overrides.pop(k) for k in list(overrides) if k in known}
    bad = [k for k, v in per_kind.items() if not isinstance(v, dict)]
    if bad:
        raise ValueError(f"reranker overrides for {bad} must be dicts of config fields, e.g. {{'lr': 1e-3}}")
    return {kind: cfg.replace(**overrides, **per_kind.get(kind, {})) for kind in kinds}


def _train_rerankers(cfgs: dict, data: dict, tokens, run_root, task: str, progress: bool, log) -> tuple[dict, dict]:
    """Each comparison reranker of ``cfgs`` (``{kind: config}``, one seed) trained with its config:
    ``({kind: model}, seed-info fields)``."""
    models, info = {}, {}
    for kind, cfg in cfgs.items():
        rd = None if run_root is None else (Path(run_root) /
                                            f"{task}-{kind}-{cfg.name}-seed{cfg.seed}-{folder_key(data)}")
        log(f"[{task}] seed {cfg.seed}: training the {kind} reranker (lr {cfg.lr:g})")
        with seeded(cfg.seed):
            model = make_reranker(kind, data["train"], tokens)
        r = train_reranker(model, data["train"], data["val"], cfg, run_dir=rd, progress=progress, log=log)
        models[kind] = r["model"]
        info[kind] = {"best_epoch": r["best"]["epoch"], "val_acc": r["best"]["val_acc"],
                      "val_history": [h["val_acc"] for h in r["history"]], "train_time_s": trained_seconds(r),
                      "lr": cfg.lr} | _key_history(r, cfg)
    return models, info


def export_wordnet_head(out=None, preset: str = "cpu-frozen", seed: int = 0, be_kind: str = "asis",
                        progress: bool = True, log=print) -> dict:
    """Train the frozen-encoder CMC head on WordNet (train, selected on val) and write it as float16 safetensors.

    The validation accuracy stored in the metadata is measured on the *saved* (float16) head after reloading.
    """
    cfg = get_cmc_preset(preset, seed=seed)
    train = wordnet_task("train", be_kind, progress=progress)
    val = wordnet_task("val", be_kind, progress=progress)
    res = train_cmc(train, val, cfg, progress=progress, log=log)
    out = Path(out) if out is not None else CMC_WORDNET_ASSET
    meta = {"task": "wordnet", "encoders": "frozen", "be": be_kind, "preset": cfg.name, "seed": seed,
            "config": dataclasses.asdict(cfg), "best_epoch": res["best"]["epoch"],
            "trained_on": "WordNet train domains with <= 4,000 entities (BE top-1024 candidates); selected on "
                          "val accuracy"}
    save_cmc(res["model"], out, meta)
    model, _ = load_cmc(out)
    meta["val_acc"] = round(evaluate_cmc(model, eval_subset(val, cfg.max_val_queries), cfg.eval_k), 4)
    save_cmc(model, out, meta)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): val accuracy {meta['val_acc']:.2f} (K = {cfg.eval_k}, "
        f"{cfg.max_val_queries or len(val)} val queries)")
    return meta


def validation_sweep(task: str, lrs: Sequence[float], input_scales: Sequence[str] = ("unit",),
                     preset: str = "cpu-frozen", seed: int = 0, progress: bool = False, log=print,
                     **overrides) -> dict:
    """CMC's validation accuracy for every (input scale, learning rate) on ``task``'s train / val splits, and the
    best learning rate per input scale (issue 15: each input scale gets its own learning rate). Validation only:
    no test number is computed, so the choice cannot leak the test split."""
    train, val = (load_task(task, s, progress=progress) for s in ("train", "val"))
    rows = []
    for scale in input_scales:
        log(f"[{task}] input scale {scale}")
        for r in lr_sweep(train, val, lrs, preset=preset, seed=seed, log=log, input_scale=scale, **overrides):
            rows.append({"input_scale": scale, **r})
    best = {sc: max((r for r in rows if r["input_scale"] == sc), key=lambda r: r["val_acc"]) for sc in input_scales}
    cfg = get_cmc_preset(preset, seed=seed, **overrides)
    return {"task": task, "preset": preset, "seed": seed, "overrides": overrides, "rows": rows,
            "best": {sc: {"lr": b["lr"], "val_acc": b["val_acc"], "best_epoch": b["best_epoch"]} for sc, b in best.items()},
            "select_on": cfg.select_on, "n_val_queries": min(len(val), cfg.max_val_queries or len(val)),
            "n_train_queries": min(len(train), cfg.max_train_queries or len(train))}


def reranker_sweep(task: str, kinds: Sequence[str], lrs: Sequence[float], preset: str = "cpu-frozen", seed: int = 0,
                   run_root=None, tokens: TokenStates | None = None, data: dict | None = None,
                   progress: bool = False, log=print, **overrides) -> dict:
    """The comparison rerankers' learning rate chosen on validation (issue 15: a row beside CMC only after its
    own lr is chosen): each of ``kinds`` (``"poly"``, ``"sum_of_max"``) trained with CMC's preset at every lr of
    ``lrs`` (:func:`_train_rerankers`, seed ``seed``), its best validation epoch's accuracy, and the best lr per
    kind. Validation only: no test number is computed. ``data``: ``{"train", "val"}`` instead of the task's;
    ``overrides``: fields of the preset's config changed for every run (a test's toy sizes)."""
    unknown = sorted(set(kinds) - set(EXTRA_PIPELINES.values()))
    if unknown or not kinds or not lrs:
        raise ValueError(f"reranker_sweep: kinds must be among {sorted(EXTRA_PIPELINES.values())} and lrs non-empty; "
                         f"got kinds={list(kinds)}, lrs={list(lrs)}")
    data = data or {s: load_task(task, s, progress=progress) for s in ("train", "val")}
    tokens = TokenStates() if tokens is None else tokens
    rows = []
    for kind in kinds:
        for lr in lrs:
            cfg = get_cmc_preset(preset, **overrides, lr=lr, seed=seed)
            _, info = _train_rerankers({kind: cfg}, data, tokens, run_root, task, progress, log)
            r = info[kind]
            rows.append({"kind": kind, "lr": lr, "val_acc": r["val_acc"], "best_epoch": r["best_epoch"],
                         "history": r["val_history"], "train_time_s": r["train_time_s"]})
            log(f"{kind} lr {lr:g}: val acc {r['val_acc']:.2f} (epoch {r['best_epoch']}) {r['val_history']}")
    best = {k: max((r for r in rows if r["kind"] == k), key=lambda r: r["val_acc"]) for k in kinds}
    cfg = get_cmc_preset(preset, **overrides, seed=seed)
    return {"task": task, "preset": preset, "seed": seed, "rows": rows,
            "best": {k: {"lr": b["lr"], "val_acc": b["val_acc"], "best_epoch": b["best_epoch"]} for k, b in best.items()},
            "select_on": cfg.select_on, "n_val_queries": min(len(data["val"]), cfg.max_val_queries or len(data["val"])),
            "n_train_queries": min(len(data["train"]), cfg.max_train_queries or len(data["train"]))}


def lr_sweep(train: RerankData, val: RerankData, lrs: Sequence[float], preset: str = "spec", seed: int = 0,
             log=print, **overrides) -> list[dict]:
    """Validation accuracy of CMC trained with each learning rate (how the CPU presets' lr was chosen: val only)."""
    rows = []
    for lr in lrs:
        cfg = get_cmc_preset(preset, lr=lr, seed=seed, **overrides)
        res = train_cmc(train, val, cfg, progress=False, log=lambda *a: None)
        rows.append({"lr": lr, "val_acc": res["best"]["val_acc"], "best_epoch": res["best"]["epoch"],
                     "history": [h["val_acc"] for h in res["history"]], "train_time_s": res["train_time_s"]})
        log(f"lr {lr:g}: val acc {rows[-1]['val_acc']:.2f} (epoch {rows[-1]['best_epoch']}) {rows[-1]['history']}")
    return rows


# ----------------------------------------------------------------------------------------------
