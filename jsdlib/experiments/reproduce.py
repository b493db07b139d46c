"""The headless main job: every experiment of the CPU course, resumable, into one report.

    jsdlib reproduce --preset cpu --out results/          # 84 min for the committed run (2 slow cores); rerun = reuse
    jsdlib reproduce --preset cpu --out results/ --only jsd_compare search

Each **step** writes ``OUT/steps/<name>.json`` atomically when it finishes, stamped with a digest of its
configuration; a second run reuses every step whose file exists with the same digest (an interrupted step
restarts, and its trainings resume from ``OUT/runs/``). Then ``OUT/results.json`` (every step's result, the
environment, the seeds) and ``OUT/report.md`` (tables beside the papers' numbers, the claims check, plots as PNG)
are written from the step files, so the report's numbers are the JSON's. With ``--workers 2`` (the default on 2+
cores) the training steps run in two single-thread lanes and the timed steps alone afterwards
(:mod:`jsdlib.experiments.lanes`); the committed run took 84 minutes that way on 2 cores (57 minutes for a run
two days before on the same kind of machine, whose steps ran 1.4-1.9x faster: README, "Your first hour").

Steps of the ``cpu`` preset (bundled emoji set, stand-in VLP, WordNet sense linking):

| step | what | made by |
|---|---|---|
| dense | dense retrieval of the stand-in VLP | :func:`jsdlib.common.metrics.evaluate_split` |
| jsd_compare | every JSD-table method, 3 seeds, paired tests; D2S's L1 weight searched on validation to each JSD run's FLOPs | :func:`jsdlib.experiments.jsd_compare.compare` |
| jsd_sweep | R@1 vs FLOPs over L1 weights: JSD, D2S, D2S + PEC | :func:`jsdlib.experiments.jsd_compare.l1_sweep` |
| search | index back ends at 1k and 10k documents | :func:`jsdlib.index.bench.benchmark_backends` |
| cmc_wordnet, cmc_emoji | BE / BE-CE / BE-CMC / BE-CMC-CE / CMC-final, 3 seeds | :func:`jsdlib.experiments.cmc_compare.compare` |
| cmc_speed | ms/query vs candidates, CMC and CE | :func:`jsdlib.cmc.speed.speed_curve` |
| jsd_fidelity | opt-in (``--only jsd_fidelity``, ``make fidelity``): the JSD table as the authors ran it, 3 seeds | :func:`jsdlib.experiments.jsd_compare.fidelity` |
| cmc_fidelity | opt-in (``--only cmc_fidelity``, ``make cmc-fidelity``): CMC as the authors ran it and the reranker comparison (poly-encoder, sum-of-max), plus CMC with fine-tuned encoders and CMC over the fine-tuned BE, WordNet, 3 seeds | :func:`jsdlib.experiments.cmc_compare.compare` |

``jsd_compare``'s D2S row is D2S's loss under JSD's recipe, its L1 weight searched on validation inside the run
until its FLOPs are within +-15 % of that seed's JSD run (:data:`MAIN_MATCH`), so the two rows cost the same on
any machine. ``jsd_fidelity`` is not part of the default job (it would take it past the hour): D2S in its own
recipe and D2S's loss under JSD's recipe, both matched to JSD's FLOPs by a search on validation inside the run, the authors'
integrated score and teacher beside ours, and the choice of ``cpu-emoji``'s epoch on validation. It shares its
JSD runs with ``jsd_compare`` (``OUT/runs/jsd_compare``), and with ``--workers 2`` the second lane trains its
units (a row and a seed each) from the end while the first works from the start.

``cmc_fidelity`` is opt-in for the same reason: CMC trained on every WordNet mention with the authors' selection,
CMC-final over the BE's top-64, the CE with the authors' head, and the paper's reranker comparison over the same
lists (:data:`jsdlib.experiments.cmc_fidelity.SETTINGS`); with ``--workers 2`` the second lane trains the comparison rerankers from the end
(:mod:`jsdlib.experiments.cmc_fidelity`).

Paper presets (``blip-coco``, ``blip-flickr``, ``albef-coco``, ``albef-flickr``) run the JSD steps on the authors'
released features; without them the job stops at once and names the files and where they come from.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from jsdlib import cmc
from jsdlib.apps.emoji_index import emoji_vectors
from jsdlib.experiments.cmc_compare import compare as cmc_compare
from jsdlib.common import hardware
from jsdlib.common.integrity import file_sha256
from jsdlib.common.io import write_json
from jsdlib.common.runlock import finished, run_lock
from jsdlib.common.metrics import evaluate_split
from jsdlib.data.karpathy import load_emoji
from jsdlib.experiments import cmc_fidelity, fidelity, jsd_compare
from jsdlib.experiments.lanes import plain_json, run_pending_in_lanes, saved_step
from jsdlib.jsd.features import FeatureSet, emoji_features
from jsdlib.jsd.io import JSD_ASSET
from jsdlib.jsd.matching import OWN_RECIPE_IN_BAND, OWN_RECIPE_START
from jsdlib.experiments.paper_inputs import (  # noqa: F401 (PAPER_DATA, MissingDataError: re-exported)
    PAPER_DATA, MissingDataError, _word_embeddings, check_paper_data, check_paper_inputs)
from jsdlib.experiments.report import write_report
from jsdlib import index
from jsdlib.jsd.vocab import Vocabulary
from jsdlib.jsd.presets import get_preset
from jsdlib.data.released import load_released_features
from jsdlib import vlp as vlp_models

SEEDS = (0, 1, 2)
CPU_STEPS = ("dense", "jsd_compare", "jsd_sweep", "search", "cmc_wordnet", "cmc_emoji", "cmc_speed")
OPT_IN_STEPS = ("jsd_fidelity", "cmc_fidelity")     # cpu steps run only when asked for by name (--only)
# Expected cost of each step in seconds: the step times of the committed run (notebooks/results/reproduce_cpu,
# 2 cores; tests/test_reproduce.py keeps the two equal). Only the job's progress bar uses them, so that its ETA
# weighs the steps by what they cost instead of counting them; a step without an entry counts 60 s.
EXPECTED_SECONDS = {"dense": 14.5, "jsd_compare": 2181.7, "jsd_sweep": 1969.2, "search": 18.3, "cmc_wordnet": 3077.7,
                    "cmc_emoji": 499.6, "cmc_speed": 65.6,
                    # the opt-in step's committed run (notebooks/results/jsd_fidelity_cpu): its last invocation
                    # resumed a first one's finished units (~28 min); from scratch it costs about twice this (README)
                    "jsd_fidelity": 1831.6,
                    # the other opt-in step: its committed run (notebooks/results/cmc_fidelity_cpu), whose last
                    # invocation reused all but two trainings of the ones before; from scratch it costs more (README)
                    "cmc_fidelity": 1794.1}
def expected_trainings(seeds: Sequence[int]) -> dict[str, int]:
    """How many trainings (``fit`` runs with a folder under ``OUT/runs/<step>``) each cpu step makes: the lanes'
    per-step progress bars count them. JSD comparison: D2S, JSD (its sparse, dense and integrated rows share one
    run), no self-KD, frozen final layer per seed; sweep: every point but the x1 JSD run it shares with the
    comparison; CMC: one head per seed (the CE keeps no folder)."""
    n = len(seeds)
    return {"jsd_compare": 4 * n, "jsd_sweep": len(SWEEP_SCALES) * len(SWEEP_VARIANTS) - 1, "cmc_wordnet": n, "cmc_emoji": n}


# Arguments that say where and how a step runs (or come from the job's seeds), not what it computes.
RUNTIME = frozenset({"ctx", "fs", "features", "run_root", "workdir", "progress", "log", "seed", "seeds"})
SWEEP_VARIANTS = (("jsd", False), ("d2s", False), ("d2s", True))   # (method, PEC) curves of the jsd_sweep step
SWEEP_SCALES = (0.3, 1.0, 3.0, 10.0)   # L1 weight multipliers of the sweep
SEARCH_SIZES = (1000, 10000)
COMPARE_CFG = get_preset("cpu-emoji")    # the JSD comparison's config (its seed-0 JSD run is the sweep's x1 point)
CMC_PRESETS = cmc.TASK_PRESETS   # the CMC preset of each task's step (jsdlib.cmc.config.TASK_PRESETS)
# the FLOPs search of jsd_fidelity's matched D2S rows: full-length probes (the chosen probe is the final model)
FIDELITY_MATCH = {"tol": 0.15, "max_probes": 5}
# The main job's JSD table (issue 13): D2S's loss under JSD's recipe with its L1 weight searched on validation to the
# JSD run's FLOPs (+-15 %) inside the run, so the match holds on any machine (a constant weight ended 28 % below JSD's
# FLOPs on another CPU); the authors' test-time integrated score beside the training-time S_x. The search starts at
# x0.72, the geometric mean of the scales jsd_fidelity matched at on this machine (x0.815, x0.695, x0.661, validation
# FLOPs): one probe where it lands, more where another CPU's arithmetic moves it. Each probe selects its epoch among
# those whose validation FLOPs lie within the band (``select_in_band``, as D2S's own recipe does): with selection over
# all epochs, the selected epoch's FLOPs are not monotone in the L1 weight (the run of 2026-12-02, seed 2: x1.11 ->
# 7.1 FLOPs at epoch 17, x1.20 -> 3.0 at epoch 33; five probes, none within 15 %), while every probe whose FLOPs pass
# through the band on their way down has a model at JSD's cost. D2S's own recipe stays in jsd_fidelity (its probes
# cost ~10-17 min each at batch 512 on one thread: past the hour; docs/decisions.md).
MAIN_JSD_METHODS = ("dense_original", "d2s_matched", "jsd_sparse", "jsd_dense", "jsd_integrated_authors",
                    "jsd_integrated", "jsd_no_kd", "jsd_frozen_final")
MAIN_MATCH = {"tol": 0.15, "max_probes": 5, "start": 0.72, "select_in_band": True}
# cpu steps that read the stand-in VLP (and the BUNDLED_STEPS the bundled JSD model): their fingerprints carry the
# files' sha256, so results made with other weights (e.g. before issue 14) are recomputed, not reused
WEIGHT_STEPS = ("dense", "jsd_compare", "jsd_sweep", "search", "cmc_emoji", "jsd_fidelity")
BUNDLED_STEPS = ("search", "cmc_emoji")
HELPERS = {"jsd_sweep": "help_sweep", "jsd_fidelity": "help_fidelity", "cmc_fidelity": "help_cmc_fidelity"}   # steps a free lane can help with


@dataclass
class Step:
    """One step of the job: ``run(ctx, args)`` calls the library function ``fn`` with ``args`` = :meth:`resolved`
    (without ``run``: ``fn(ctx, **args)``, for a step function of its own such as the tests' tiny ones).

    ``args`` holds only what the step fixes; every other argument is ``fn``'s own default. The step's fingerprint
    (:meth:`digest`) is taken over the *resolved* arguments (``inspect.signature(fn).bind_partial(**args)`` plus
    ``apply_defaults()``), so editing a default of ``fn`` changes the fingerprint and the step runs again instead
    of reusing a stale result. ``config``: what else the result depends on (a preset's values, a checkpoint).
    """

    name: str
    title: str
    fn: Callable
    run: Callable[["Context", dict], dict] | None = None
    args: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    options: tuple = ()     # keys of ``args`` that ``fn`` does not take: the step's own (``run`` reads them)

    def resolved(self) -> dict:
        """``fn``'s arguments with ``args`` bound and every default filled in (runtime ones left out), plus the
        step's own ``options`` as given (e.g. ``cmc_fidelity``'s ``settings``); any other unknown key fails."""
        own = {k: v for k, v in self.args.items() if k in self.options}
        bound = inspect.signature(self.fn).bind_partial(**{k: v for k, v in self.args.items() if k not in own})
        bound.apply_defaults()
        return {k: v for k, v in bound.arguments.items() if k not in RUNTIME} | own

    def fingerprint(self, seeds: Sequence[int]) -> dict:
        """What the step's result depends on, as JSON: the callee, its resolved arguments, the config, the seeds."""
        doc = {"step": self.name, "calls": plain_json(self.fn), "args": self.resolved(), **self.config,
               "seeds": list(seeds)}
        return json.loads(json.dumps(doc, sort_keys=True, default=plain_json))

    def digest(self, seeds: Sequence[int]) -> str:
        return hashlib.sha256(json.dumps(self.fingerprint(seeds), sort_keys=True).encode()).hexdigest()[:16]

    def __call__(self, ctx: "Context") -> dict:
        a = self.resolved()
        return self.fn(ctx, **a) if self.run is None else self.run(ctx, a)


@dataclass
class Context:
    out: Path
    preset: str
    seeds: tuple
    progress: bool = True
    log: Callable = print
    options: dict = field(default_factory=dict)
    _features: object = None

    def features(self):
        """The emoji FeatureSet (stand-in VLP: the committed checkpoint, or the retrained one)."""
        if self._features is None:
            self._features = emoji_features(self.options.get("standin"), progress=self.progress)
        return self._features

    def run_root(self, step: str) -> Path:
        return self.out / "runs" / step


# ----------------------------------------------------------------------------------------------
# Steps: each calls its library function with the resolved arguments (the values its fingerprint covers)
# ----------------------------------------------------------------------------------------------
def _dense(ctx: Context, a: dict) -> dict:
    vlp = vlp_models.load_standin(ctx.options.get("standin"))
    split = load_emoji("test")
    feats = vlp_models.cached_features(vlp, split, progress=ctx.progress, **a)
    res = evaluate_split(feats.dense_scores().numpy(), split.caption_to_image, split.image_to_captions,
                         split.image_meta)
    return {**res, "model": vlp.name, "weights": vlp.weights, "dataset": "emoji", "split": "test"}


def _jsd_compare(ctx: Context, a: dict) -> dict:
    return jsd_compare.compare(ctx.features(), seeds=list(ctx.seeds), run_root=ctx.run_root("jsd_compare"),
                               progress=ctx.progress, log=ctx.log, **a)


def _sweep_points(ctx: Context, a: dict) -> list[tuple]:
    """The sweep's trainings ``(method, pec, scale, run folder)`` in the order the step runs them: JSD x1 is the JSD
    comparison's seed-0 run (same config, seed and data: one training, in that step's folder), so it comes last,
    when the comparison (perhaps in the other lane) has long trained it."""
    s0, pts = ctx.seeds[0], []
    for method, pec in SWEEP_VARIANTS:
        for scale in a["scales"]:
            shared = (method == "jsd" and not pec and scale == 1.0
                      and a["cfg"].replace(pec=False).digest() == COMPARE_CFG.digest())
            rd = (ctx.run_root("jsd_compare") / f"jsd-seed{s0}" if shared else
                  ctx.run_root("jsd_sweep") / ("pec" if pec else "plain") / f"{method}-l1x{scale:g}-seed{s0}")
            pts.append((method, pec, scale, rd, shared))
    return sorted(pts, key=lambda p: p[4])


def _sweep_point(ctx: Context, a: dict, point: tuple) -> dict:
    """One sweep training (or its finished run) and its row (:func:`jsdlib.experiments.jsd_compare.l1_sweep`)."""
    method, pec, scale, rd, _ = point
    return jsd_compare.l1_sweep(ctx.features(), a["cfg"].replace(pec=pec), method, [scale], seed=ctx.seeds[0],
                                run_dirs={scale: rd}, log=ctx.log)[0]


def _jsd_sweep(ctx: Context, a: dict) -> dict:
    rows = {p[:3]: _sweep_point(ctx, a, p) for p in _sweep_points(ctx, a)}
    order = [(m, pec, sc) for m, pec in SWEEP_VARIANTS for sc in a["scales"]]
    return {"rows": [rows[k] for k in order], "preset": a["cfg"].name, "seed": ctx.seeds[0],
            "scales": list(a["scales"])}


def help_sweep(ctx: Context, step: Step) -> int:
    """A lane with nothing left to do trains the sweep's points from the end while the step's owner works from the
    start (each training holds its folder's lock: :mod:`jsdlib.common.runlock`); skips finished points (a resumed
    job finds its helper's at the end) and stops where they meet, at a point another lane holds. Returns how many
    points it trained. The owner then finds them finished and only evaluates them: the same numbers."""
    a, done = step.resolved(), 0
    for p in reversed([p for p in _sweep_points(ctx, a) if not p[4]]):
        rd = p[3]
        if finished(rd):
            continue
        with run_lock(rd, blocking=False) as free:
            pass
        if not free:
            break
        ctx.log(f"helping jsd_sweep: {p[0]}{' +PEC' if p[1] else ''} L1 x{p[2]:g}")
        _sweep_point(ctx, a, p)
        done += 1
    return done


def _search(ctx: Context, a: dict) -> dict:
    docs, queries, _, _ = emoji_vectors("test")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SEARCH_SIZES:
            ctx.log(f"search benchmark: {n} documents")
            rows += index.benchmark_backends(index.corpus_of_size(docs, n), queries,
                                                  workdir=Path(tmp) / str(n), log=ctx.log, **a)
    return {"rows": rows, "sizes": list(SEARCH_SIZES), "queries": len(queries),
            "model": "bundled JSD (cpu-emoji + PEC, whole-word vocabulary, caption-word loss, four styles)"}


def _cmc(ctx: Context, a: dict) -> dict:
    return cmc_compare(seeds=list(ctx.seeds), run_root=ctx.run_root(f"cmc_{a['task']}"), progress=ctx.progress,
                            log=ctx.log, **a)


def _cmc_speed(ctx: Context, a: dict) -> dict:
    return cmc.speed_curve(log=ctx.log, **a)


def cpu_steps(only: Sequence[str] | None = None) -> list[Step]:
    """The steps of the ``cpu`` preset (``only``: a subset by name). The functions are looked up when this is
    called, so a test can stand a cheap one in."""
    cmc_config = {t: {"cmc_preset": cmc.get_cmc_preset(CMC_PRESETS[t]), "task_settings": cmc.TASKS[t]}
                  for t in ("wordnet", "emoji")}   # what compare() looks up by name: covered by the fingerprint
    steps = [Step("dense", "Dense retrieval of the stand-in VLP", vlp_models.cached_features, _dense),
             Step("jsd_compare", "JSD and its baselines (3 seeds)", jsd_compare.compare, _jsd_compare,
                  {"cfg": COMPARE_CFG, "names": MAIN_JSD_METHODS, "match": MAIN_MATCH}),
             Step("jsd_sweep", "R@1 vs FLOPs over L1 weights", jsd_compare.l1_sweep, _jsd_sweep,
                  {"cfg": get_preset("cpu-emoji"), "scales": SWEEP_SCALES},
                  {"variants": SWEEP_VARIANTS}),
             Step("search", "Search back ends", index.benchmark_backends, _search, {},
                  {"sizes": SEARCH_SIZES}),
             Step("cmc_wordnet", "CMC on WordNet sense linking", cmc_compare, _cmc,
                  {"task": "wordnet", "preset": CMC_PRESETS["wordnet"]}, cmc_config["wordnet"]),
             Step("cmc_emoji", "CMC on emoji retrieval after JSD", cmc_compare, _cmc,
                  {"task": "emoji", "preset": CMC_PRESETS["emoji"]}, cmc_config["emoji"]),
             # CE measured up to 1,000 candidates, extrapolated above (docs/decisions.md)
             Step("cmc_speed", "CMC vs CE speed", cmc.speed_curve, _cmc_speed,
                  {"ns": (16, 64, 256, 1000, 4000, 10000), "ce_max": 1000, "repeats": (3, 2, 1)}),
             # opt-in: issue 13's table (docs/fidelity.md); D2S's L1 searched on validation to JSD's FLOPs
             # opt-in: issue 15's table (docs/fidelity.md): CMC as the authors ran it, the reranker comparison
             Step("cmc_fidelity", "CMC as the authors ran it, and the reranker comparison (WordNet, 3 seeds)",
                  cmc_compare, cmc_fidelity.run, cmc_fidelity.SETTINGS,
                  {"cmc_preset": cmc.get_cmc_preset(cmc_fidelity.SETTINGS["preset"]),
                   "task_settings": cmc.TASKS["wordnet"],
                   "setting_presets": {n: cmc.get_cmc_preset(st["preset"])
                                       for n, st in cmc_fidelity.SETTINGS["settings"].items()}},
                  options=("settings",)),
             Step("jsd_fidelity", "JSD as the authors ran it, against the real D2S (3 seeds)", jsd_compare.fidelity,
                  _jsd_fidelity, {"cfg": COMPARE_CFG, "match": FIDELITY_MATCH},
                  {"units": fidelity.FIDELITY_UNITS, "epochs_compared": jsd_compare.sampling_variants(COMPARE_CFG),
                   "own_recipe_l1_start": OWN_RECIPE_START,
                   "own_recipe_selects_in_band": OWN_RECIPE_IN_BAND})]
    if only:
        unknown = set(only) - {s.name for s in steps}
        if unknown:
            raise ValueError(f"unknown step(s) {sorted(unknown)}; steps: {[s.name for s in steps]}")
        return [s for s in steps if s.name in only]
    return [s for s in steps if s.name not in OPT_IN_STEPS]


# ----------------------------------------------------------------------------------------------
# jsd_fidelity: its units of work are shared by two lanes (jsdlib.experiments.fidelity)
# ----------------------------------------------------------------------------------------------
def _jsd_fidelity(ctx: Context, a: dict) -> dict:
    fidelity.work_units(ctx, a, helper=False)
    return jsd_compare.fidelity(ctx.features(), seeds=list(ctx.seeds), run_root=ctx.run_root("jsd_compare"),
                                progress=ctx.progress, log=ctx.log, **a)


def help_cmc_fidelity(ctx: Context, step: Step) -> int:
    """A lane with nothing left to do trains ``cmc_fidelity``'s units from the end: the comparison rerankers."""
    return cmc_fidelity.work_units(ctx, step.resolved(), helper=True)


def help_fidelity(ctx: Context, step: Step) -> int:
    """A lane with nothing left to do trains ``jsd_fidelity``'s units from the end (see :func:`help_sweep`)."""
    return fidelity.work_units(ctx, step.resolved(), helper=True)


# ----------------------------------------------------------------------------------------------
# Paper presets: data check
# ----------------------------------------------------------------------------------------------
def paper_steps(preset: str, data_dir, projection=None, word_embeddings=None,
                random_projection: bool = False) -> list[Step]:
    """The JSD comparison on the released features (GPU recommended: about 4 h per run on an RTX-3090)."""
    paths = check_paper_data(preset, data_dir)
    check_paper_inputs(projection, word_embeddings, random_projection)
    proj_src = "random(seed=0)" if projection is None else str(projection)

    def run(ctx: Context, a: dict) -> dict:
        feats = {s: load_released_features(paths["text_parquet"], paths["image_parquet"], paths["karpathy_json"], s,
                                           projection=projection) for s in ("train", "val", "test")}
        fs = FeatureSet(feats["train"], feats["val"], feats["test"], _word_embeddings(word_embeddings), [], [],
                        Vocabulary.from_minilm())
        res = jsd_compare.compare(fs, seeds=list(ctx.seeds), run_root=ctx.run_root("jsd_compare"),
                                  progress=ctx.progress, log=ctx.log, **a)
        return {**res, "projection": proj_src}

    cfg = get_preset(preset, device="cuda" if torch.cuda.is_available() else "cpu")
    return [Step("jsd_compare", f"JSD and its baselines ({preset})", jsd_compare.compare, run, {"cfg": cfg},
                 {"preset": preset, "projection": proj_src, **{k: str(v) for k, v in paths.items()}})]


# ----------------------------------------------------------------------------------------------
# Runner and report
# ----------------------------------------------------------------------------------------------
def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "torch": torch.__version__,
            "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.is_available(), "cpu": hardware.describe(),
            "cpu_bf16": hardware.native_bf16()}  # whether bf16-requesting steps ran bf16 autocast


def weight_digests(standin=None, bundled: bool = True) -> dict:
    """sha256 of the stand-in VLP (``standin`` or the committed one) and, with ``bundled``, of the bundled JSD model."""
    return ({"standin": file_sha256(standin or vlp_models.DEFAULT_STANDIN_CHECKPOINT)}
            | ({"bundled_jsd": file_sha256(JSD_ASSET)} if bundled else {}))


def run(out, preset: str = "cpu", only: Sequence[str] | None = None, seeds: Sequence[int] = SEEDS,
        data_dir=None, standin=None, projection=None, word_embeddings=None, progress: bool = True,
        log=print, random_projection: bool = False, steps: Sequence[Step] | None = None, workers: int = 1,
        report: bool = True) -> dict:
    """Run (or reuse) every step, then write ``results.json`` and ``report.md``; returns the results dict.

    A step file that cannot be read (e.g. truncated by a crash of another tool) is reported, discarded and the
    step recomputed. ``steps`` replaces the preset's steps (tests use tiny ones). ``workers > 1`` (cpu preset):
    the training steps run first in that many parallel lanes, each with ``torch.get_num_threads() // workers``
    threads (:mod:`jsdlib.experiments.lanes`), then the timed steps alone; a single pending training step runs
    in a lane too, so ``--only jsd_compare`` trains with the same threads (and gives the same numbers) as the
    full job. ``report=False``: step files only.
    """
    out = Path(out)
    lanes_ok = steps is None and preset == "cpu" and workers > 1
    if steps is None:
        steps = (cpu_steps(only) if preset == "cpu"
                 else paper_steps(preset, data_dir, projection, word_embeddings, random_projection))
    steps = list(steps)
    for s in (s for s in steps if preset == "cpu" and s.name in WEIGHT_STEPS):
        s.config["weights"] = weight_digests(standin, bundled=s.name in BUNDLED_STEPS)
    if lanes_ok:
        run_pending_in_lanes(out, steps, seeds, standin, workers, EXPECTED_SECONDS, expected_trainings(seeds), progress,
                             log)
    ctx = Context(out, preset, tuple(seeds), progress, log, {"standin": standin})
    results, timing = {}, {}
    cost = {s.name: round(EXPECTED_SECONDS.get(s.name, 60.0)) for s in steps}
    bar = tqdm(total=sum(cost.values()), unit="s", disable=not progress,
               bar_format="{desc}{percentage:3.0f}% of the expected cost |{bar}| [{elapsed}<{remaining}]")
    for step in steps:
        bar.set_description(f"reproduce [{step.name}]")
        path = out / "steps" / f"{step.name}.json"
        digest = step.digest(seeds)
        saved = saved_step(out, step, seeds)
        if saved is not None:
            log(f"[reproduce] {step.name}: reusing {path}")
            results[step.name], timing[step.name] = saved["result"], saved["_step"]
            bar.update(cost[step.name])
            continue
        log(f"[reproduce] {step.name}: {step.title}")
        t0 = time.time()
        res = step(ctx)
        meta = {"name": step.name, "digest": digest, "config": step.fingerprint(seeds), "seconds": round(time.time() - t0, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_json({"_step": meta, "result": res}, path, default=_json_default)
        results[step.name], timing[step.name] = json.loads(path.read_text())["result"], meta
        bar.update(cost[step.name])
    bar.close()
    if not report:
        return {"steps": timing, "results": results}
    doc = {"preset": preset, "seeds": list(seeds), "environment": environment(), "steps": timing,
           "results": results, "workers": workers}
    write_json(doc, out / "results.json", default=_json_default)
    write_report(doc, out)
    log(f"[reproduce] wrote {out / 'results.json'} and {out / 'report.md'}")
    return doc
