"""The papers' tables beside ours, and the papers' claims checked as orderings on our numbers.

Reference numbers live in one file, ``data/paper_tables/reference.csv`` (one row per table cell: paper, table,
row, dataset, metric, value, source, note). Every value there is quoted from ``paper_numbers.md`` with its source
tag (A = the paper's abstract, C = the authors' code/configs, S = a *secondary* summary not yet checked against
the PDF); a cell whose value is not known is present with an empty value and shows as "—". A reader with the
PDF fills cells in there, nowhere else.

Our numbers come from result JSONs written by the library (``jsdlib jsd compare``, ``jsdlib jsd sweep``, ...).
They are measured on the **bundled emoji set with the stand-in VLP**, the paper's on MSCOCO 5K / Flickr30k 1K
with BLIP/ALBEF: different data and models, so the two always sit in different, labelled columns and are never
compared number to number. What *can* transfer is an ordering ("JSD sparse > D2S"): :func:`jsd_claims` checks
each claimed ordering on our numbers and reports the paired-test p-value next to it. The report of ``jsdlib
reproduce`` built from these tables is :mod:`jsdlib.experiments.report`.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd

from jsdlib.cmc.pipelines import summary_table
from jsdlib.common.metrics import format_table
from jsdlib.data.paths import data_root

DASH = "—"
SOURCES = {"A": "abstract", "C": "authors' code", "S": "secondary summary (unchecked against the PDF)"}


def reference_path() -> Path:
    return data_root() / "paper_tables" / "reference.csv"


def load_reference(path=None) -> pd.DataFrame:
    """All reference cells as a DataFrame; ``value`` is a float or NaN (unknown); ``value_text`` keeps bounds
    such as ``"< 7"`` verbatim."""
    path = Path(path) if path is not None else reference_path()
    if not path.is_file():
        raise FileNotFoundError(f"reference table not found: {path}")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    need = {"paper", "table", "row", "dataset", "metric", "value", "source", "note"}
    if not rows or need - set(rows[0]):
        raise ValueError(f"{path}: expected columns {sorted(need)}")
    for r in rows:
        r["value_text"] = r["value"]
        try:
            r["value"] = float(r["value"]) if r["value"] != "" else math.nan
        except ValueError:
            r["value"] = math.nan  # a bound or a phrase: kept in value_text
        if r["value_text"] and not r["source"]:
            raise ValueError(f"{path}: value {r['value_text']!r} of {r['row']!r} has no source tag")
    return pd.DataFrame(rows)


def _ref_cell(ref: pd.DataFrame, table: str, row: str, dataset: str, metric: str) -> str:
    hit = ref[(ref.table == table) & (ref.row == row) & (ref.dataset == dataset) & (ref.metric == metric)]
    if hit.empty or not hit.iloc[0]["value_text"]:
        return DASH
    r = hit.iloc[0]
    return f"{r['value_text']}{' (secondary)' if r['source'] == 'S' else ''}"


def _ours(method: dict, metric: str) -> str:
    v = method["t2i"][metric]
    return f"{v['mean']:.1f} ± {v['std']:.1f}"


def _ours_label(result: dict) -> str:
    d = result.get("data", {})
    return f"ours ({d.get('dataset', '?')} {d.get('split', '?')}, {len(result.get('seeds', []))} seeds)"


# (our method name, reference row per backbone) for each JSD table; "d2s" stands for the run's D2S row (d2s_key)
_T1 = [("d2s", "D2S (BLIP)"), ("jsd_sparse", "JSD sparse (BLIP)")]
_T2 = [("dense_original", "BLIP dense (original)"), ("jsd_dense", "JSD dense (BLIP)"),
       ("jsd_sparse", "JSD sparse (BLIP)"), ("jsd_integrated_authors", None), ("jsd_integrated", None)]
# D2S rows a comparison may carry, the first one present is its D2S (the main job's: FLOPs-matched since issue 13)
D2S_ROWS = {"d2s_matched": "D2S loss, JSD recipe, FLOPs matched", "d2s": "D2S loss, JSD recipe, constant L1"}


def d2s_key(result: dict) -> str:
    """The D2S row of a JSD comparison: ``d2s_matched`` (L1 searched on validation to JSD's FLOPs inside the run)
    where the run has it, else ``d2s`` (a constant L1 weight; runs made before the main job matched FLOPs)."""
    return next((k for k in D2S_ROWS if k in result["methods"]), "d2s")


def epoch_rule(result: dict, name: str) -> str | None:
    """How a FLOPs-matched row's searches chose each probe's epoch, read from its seeds' ``flops_match``: "epoch in
    band" (among the epochs within the band, ``select_in_band``), "any epoch" (over all epochs), "epoch rule mixed";
    None for a row without searches. Two runs of "the same" matched row differ by it (the main job vs fidelity)."""
    rules = {bool(ps["flops_match"].get("select_in_band", False))
             for ps in result["methods"].get(name, {}).get("per_seed", []) if ps.get("flops_match")}
    return {frozenset({True}): "epoch in band", frozenset({False}): "any epoch"}.get(
        frozenset(rules), "epoch rule mixed" if rules else None)


def with_epoch_rule(label: str, result: dict, name: str) -> str:
    """``label``, followed by row ``name``'s :func:`epoch_rule` where it has one."""
    return ", ".join(x for x in (label, epoch_rule(result, name)) if x)


def _row(result: dict, name: str) -> str:
    return d2s_key(result) if name == "d2s" else name
_T3 = [("jsd_sparse", "full"), ("jsd_no_kd", "without self-distillation"), ("jsd_frozen_final", "frozen final layer")]


def jsd_table1(result: dict, ref: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 1 (sparse retrievers): our R@1/R@5/MRR@10 and FLOPs beside the paper's COCO 5K / Flickr 1K cells."""
    ref = load_reference() if ref is None else ref
    rows = {}
    for ours, paper in _T1 + [(None, "VisualSparta"), (None, "LexLIP"), (None, "D2S (ALBEF)"), (None, "JSD sparse (ALBEF)")]:
        ours = ours and _row(result, ours)
        m = result["methods"].get(ours) if ours else None
        row = {f"{_ours_label(result)} {k}": (_ours(m, k) if m else DASH) for k in ("R@1", "R@5", "MRR@10")}
        row["ours FLOPs"] = f"{m['flops']:.1f}" if m else DASH
        for ds in ("coco5k", "flickr1k"):
            for k in ("R@1", "R@5", "MRR@10"):
                row[f"paper {ds} {k}"] = _ref_cell(ref, "table1", paper, ds, k)
        rows[paper if not ours else f"{ours} / {paper}"] = row
    return pd.DataFrame.from_dict(rows, orient="index")


def jsd_table2(result: dict, ref: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 2 (vs the dense counterpart): ours (R@1, R@5) beside the paper's MSCOCO 5K BLIP cells."""
    ref = load_reference() if ref is None else ref
    rows = {}
    for ours, paper in _T2:
        if ours not in result["methods"]:      # jsd_integrated_authors: runs made since issue 13
            continue
        m = result["methods"][ours]
        rows[f"{ours} / {paper or DASH}"] = {
            **{f"{_ours_label(result)} {k}": _ours(m, k) for k in ("R@1", "R@5")},
            **{f"paper coco5k {k}": (_ref_cell(ref, "table2", paper, "coco5k", k) if paper else DASH)
               for k in ("R@1", "R@5")}}
    return pd.DataFrame.from_dict(rows, orient="index")


def jsd_table3(result: dict, ref: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 3 (ablations): ours (JSD sparse R@1) beside the paper's ALBEF R@1 on COCO 5K / Flickr 1K."""
    ref = load_reference() if ref is None else ref
    rows = {}
    for ours, paper in _T3:
        m = result["methods"][ours]
        t = result["tests"].get(f"jsd_sparse_vs_{ours}")
        rows[f"{ours} / {paper}"] = {f"{_ours_label(result)} R@1": _ours(m, "R@1"),
                                     "p vs full": DASH if t is None else f"{t['p']:.2g}",
                                     **{f"paper {ds} R@1": _ref_cell(ref, "table3 (ALBEF)", paper, ds, "R@1")
                                        for ds in ("coco5k", "flickr1k")}}
    return pd.DataFrame.from_dict(rows, orient="index")


def sweep_table(sweep: dict) -> pd.DataFrame:
    """Figure 2 as a table: validation/test R@1 and FLOPs per method and L1 scale (the paper's values for this
    figure are not known here, so there is no paper column)."""
    rows = {}
    for r in sweep["rows"]:
        name = f"{r['method']}{' +PEC' if r.get('pec') else ''} L1 x{r['scale']:g}"
        rows[name] = {k: round(float(r[k]), 2) for k in ("val_R@1", "val_flops", "test_R@1", "test_flops")}
    return pd.DataFrame.from_dict(rows, orient="index")


def _test(result: dict, a: str, b: str) -> dict | None:
    for key in (f"{a}_vs_{b}", f"{b}_vs_{a}"):
        if key in result.get("tests", {}):
            return result["tests"][key]
    return None


def _p(result: dict, a: str, b: str):
    t = _test(result, a, b)
    return None if t is None else t["p"]


# claim text, left method, relation, right method (relations on mean R@1 over seeds)
JSD_CLAIMS = [("JSD sparse > D2S", "jsd_sparse", ">", "d2s"),
              ("JSD sparse >= dense original (comparable or better)", "jsd_sparse", ">=", "dense_original"),
              ("JSD dense > dense original", "jsd_dense", ">", "dense_original"),
              ("removing self-distillation hurts", "jsd_no_kd", "<", "jsd_sparse"),
              ("freezing the final layer hurts", "jsd_frozen_final", "<", "jsd_sparse")]


def jsd_claim_list(result: dict) -> list[tuple]:
    """:data:`JSD_CLAIMS` with "D2S" resolved to the run's D2S row (:func:`d2s_key`); a matched row is named
    with its epoch rule ("JSD sparse > D2S (D2S loss, JSD recipe, FLOPs matched, epoch in band)"), runs with the
    constant-L1 row keep the old text."""
    k = d2s_key(result)
    name = with_epoch_rule(D2S_ROWS[k], result, k)
    return [(f"{t} ({name})" if b == "d2s" and k != "d2s" else t, a, op, _row(result, b))
            for t, a, op, b in JSD_CLAIMS]


def jsd_claims(result: dict, metric: str = "R@1", claims=None, per_seed: bool = False) -> pd.DataFrame:
    """Each JSD claim (default :func:`jsd_claim_list`) as an ordering on our mean ``metric``: the two values, holds /
    does not hold, and p; with ``per seed``, how many seeds the ordering holds on (the pooled p treats every
    (seed, query) pair as independent)."""
    ops = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b}
    rows = {}
    for text, a, op, b in (jsd_claim_list(result) if claims is None else claims):
        va, vb = (result["methods"][n]["t2i"][metric]["mean"] for n in (a, b))
        p = _p(result, a, b)
        rows[text] = {"ours": f"{va:.1f} {op} {vb:.1f}?", "verdict": "holds" if ops[op](va, vb) else "does not hold",
                      "p": DASH if p is None else f"{p:.2g}"}
        if per_seed:
            pa, pb = ([r["t2i"][metric] for r in result["methods"][n]["per_seed"]] for n in (a, b))
            rows[text]["holds on seeds"] = f"{sum(ops[op](x, y) for x, y in zip(pa, pb))} of {len(pa)}"
            if any("per_seed" in t for t in result.get("tests", {}).values()):   # runs that recorded each seed's test
                t = _test(result, a, b)
                rows[text]["p per seed"] = (DASH if t is None or "per_seed" not in t
                                            else ", ".join(f"{s['p']:.2g}" for s in t["per_seed"]))
    return pd.DataFrame.from_dict(rows, orient="index")


CLAIM_OPS = {">": lambda x, y: x > y, ">=": lambda x, y: x >= y, "<": lambda x, y: x < y}


def seed_reading(n_hold: int, n: int, p: float) -> str:
    """One line for an ordering over ``n`` seeds that holds at ``n_hold`` of them, with its pooled p: "every seed,
    p < 0.05", "every seed, but p = ...", "mixed" or "no seed"."""
    if n_hold == n:
        return "every seed, p < 0.05" if p < 0.05 else f"every seed, but p = {p:.2g}"
    return "no seed" if n_hold == 0 else "mixed"


def per_seed_claims(rows, seeds) -> pd.DataFrame:
    """Each claim seed by seed, beside its pooled p (the pooled test treats every (seed, query) pair as
    independent, so a claim is read at each seed too).

    ``rows``: ``(claim, left values per seed, relation, right values per seed, pooled p)`` with a relation of
    :data:`CLAIM_OPS`. Returns one row per claim: ``seed S`` = the difference left - right with yes / no for the
    ordering at that seed, ``holds at`` ("k of n seeds"), ``pooled p``, ``reading`` (:func:`seed_reading`) and
    ``n_hold``."""
    out = {}
    for text, left, op, right, p in rows:
        if len(left) != len(seeds) or len(right) != len(seeds):
            raise ValueError(f"per_seed_claims: {text!r} has {len(left)} / {len(right)} values for {len(seeds)} seeds")
        ok = [CLAIM_OPS[op](x, y) for x, y in zip(left, right)]
        out[text] = {**{f"seed {s}": f"{x - y:+.1f} {'yes' if o else 'no'}"
                        for s, x, y, o in zip(seeds, left, right, ok)},
                     "holds at": f"{sum(ok)} of {len(ok)} seeds", "pooled p": f"{p:.2g}",
                     "reading": seed_reading(sum(ok), len(ok), p), "n_hold": sum(ok)}
    return pd.DataFrame.from_dict(out, orient="index")


# ----------------------------------------------------------------------------------------------
# CMC: the pipeline tables and the paper's claims
# ----------------------------------------------------------------------------------------------
def _cmc_ref(ref: pd.DataFrame, row: str) -> str:
    hit = ref[(ref.paper == "CMC") & (ref.row == row)]
    if hit.empty or not hit.iloc[0]["value_text"]:
        return DASH
    r = hit.iloc[0]
    return f"{r['value_text']} ({r['metric']}; {r['dataset']}; source {r['source']})"


def cmc_table(result: dict) -> pd.DataFrame:
    """One task's pipelines (mean ± std over seeds) as a DataFrame, labelled with the data it ran on."""
    return pd.DataFrame.from_dict(summary_table(result), orient="index")


RERANKER_ROWS = (("be", "BE (no reranking)"), ("cmc_final", "CMC"), ("be_poly", "poly-encoder"),
                 ("be_sum_of_max", "sum-of-max (ColBERT)"), ("be_ce", "cross-encoder"))


def reranker_table(result: dict) -> pd.DataFrame:
    """The paper's reranker comparison (CMC §5): each reranker over the bi-encoder's lists of one run, mean ± std
    over seeds; CMC is the final reranker (``cmc_final``, the BE's top-``k_final``), the comparison rerankers read the
    same top-``k_extra`` (64 in ``cmc_fidelity``), the CE its top-``k_ce``. ``val top-1``: the selected epoch's
    validation top-1 accuracy (micro, mean over seeds; the epoch is selected on the config's key); the last column the paired test of CMC against the row on per-query top-1
    (pooled p, and at how many seeds CMC is ahead)."""
    pl, tests, info = result["pipelines"], result.get("tests", {}), result.get("seed_info", [])
    val = {"cmc_final": [i["val_acc"] for i in info]}
    for name, kind in (("be_poly", "poly"), ("be_sum_of_max", "sum_of_max")):
        val[name] = [i[kind]["val_acc"] for i in info if kind in i]
    rows = {}
    for name, label in RERANKER_ROWS:
        if name not in pl:
            continue
        m, t = pl[name], tests.get(f"cmc_final_vs_{name}_R@1")
        vs = DASH
        if t:
            ahead = sum(x["diff"] > 0 for x in t["per_seed"])
            vs = f"{t['diff']:+.1f} (p {t['p']:.2g}; {ahead} of {len(t['per_seed'])} seeds)"
        rows[label] = {"reranks": DASH if name == "be" else f"top-{m['n_reranked']}",
                       **{k: f"{m[k]['mean']:.1f} ± {m[k]['std']:.1f}" for k in ("R@1", "R@16", "acc_unnorm")},
                       "ms/query": f"{m['ms_per_query']['mean']:.1f}",
                       "val top-1": f"{np.mean(val[name]):.1f}" if val.get(name) else DASH,
                       "CMC minus it, R@1": vs}
    return pd.DataFrame.from_dict(rows, orient="index")


SETTING_ROWS = (("main", "frozen encoders, as-is BE (the table above)"),
                ("finetuned_encoders", "fine-tuned encoders, as-is BE"),
                ("finetuned_be", "frozen encoders, fine-tuned BE"))


def _gain(r: dict, test: str) -> str:
    """``+d (p; seeds ahead)`` of one pipeline test of a :func:`jsdlib.experiments.cmc_compare.compare` result."""
    t = r.get("tests", {}).get(test)
    if not t:
        return DASH
    ahead = sum(x["diff"] > 0 for x in t["per_seed"])
    return f"{t['diff']:+.1f} (p {t['p']:.2g}; {ahead} of {len(t['per_seed'])} seeds)"


def settings_table(result: dict) -> pd.DataFrame:
    """``cmc_fidelity``'s three WordNet settings side by side (issue 15): the main run (frozen encoders over the as-is
    BE), CMC with its own encoders fine-tuned, and the frozen-encoder CMC over the fine-tuned BE. Each setting is one
    :func:`jsdlib.experiments.cmc_compare.compare` over the same 300 test queries and seeds with the same CE; the
    gains are paired tests within a setting (pooled p; at how many seeds the first pipeline is ahead). ``val key``:
    the selected epoch's validation macro unnormalised accuracy (mean over seeds)."""
    rows = {}
    for name, label in SETTING_ROWS:
        r = result if name == "main" else result.get("settings", {}).get(name)
        if not r:
            continue
        pl = r["pipelines"]
        f = lambda n, k: f"{pl[n][k]['mean']:.1f} ± {pl[n][k]['std']:.1f}" if n in pl else DASH  # noqa: E731
        keys = [i["val_key_history"][i["best_epoch"] - 1] for i in r.get("seed_info", []) if i.get("val_key_history")]
        rows[label] = {"BE R@1 / R@16": f"{pl['be']['R@1']['mean']:.1f} / {pl['be']['R@16']['mean']:.1f}",
                       "BE-CMC R@16": f("be_cmc", "R@16"), "gain over BE": _gain(r, "be_cmc_vs_be_R@16"),
                       "BE-CE R@1": f("be_ce", "R@1"), "BE-CMC-CE R@1": f("be_cmc_ce", "R@1"),
                       "gain over BE-CE": _gain(r, "be_cmc_ce_vs_be_ce_R@1"),
                       f"CMC-final R@1 (top-{r.get('k_final')})": f("cmc_final", "R@1"),
                       "val key": f"{np.mean(keys):.1f}" if keys else DASH}
    return pd.DataFrame.from_dict(rows, orient="index")


def cmc_claims(results: dict, speed: dict | None = None, ref: pd.DataFrame | None = None) -> pd.DataFrame:
    """The CMC paper's claims, each next to its reference value and checked as an ordering on our numbers.

    ``results``: ``{task: cmc.compare(...) result}`` (e.g. wordnet, emoji); ``speed``: ``cmc.speed_curve``. The
    paper measures on ZeSHEL with BERT-base; ours on the bundled sets with MiniLM: the reference column says
    what the paper found, the ``ours`` column what we measured, and only the direction is judged. ``p``: the
    paired t-test on per-query hits pooled over seeds (:func:`jsdlib.cmc.pipelines.pipeline_tests`), where one applies.
    """
    ref = load_reference() if ref is None else ref
    rows = []

    def add(task, claim, paper_row, ours, ok, p=None):
        rows.append({"claim": f"[{task}] {claim}", "paper": _cmc_ref(ref, paper_row) if paper_row else DASH,
                     "ours": ours, "verdict": DASH if ok is None else ("holds" if ok else "does not hold"),
                     "p": DASH if p is None else f"{p:.2g}"})

    for task, r in results.items():
        if not r:
            continue
        pl, tests = r["pipelines"], r.get("tests", {})
        m = lambda n, k: pl[n][k]["mean"]  # noqa: E731
        for k, row in ((16, "BE-CMC-CE vs BE-CE, R@16 gain"), (64, "BE-CMC-CE vs BE-CE, R@64 gain")):
            d = m("be_cmc", f"R@{k}") - m("be", f"R@{k}")
            t = tests.get(f"be_cmc_vs_be_R@{k}")
            add(task, f"BE-CMC raises R@{k} over the BE (= BE-CMC-CE vs BE-CE R@{k})", row,
                f"{m('be_cmc', f'R@{k}'):.1f} vs {m('be', f'R@{k}'):.1f} ({d:+.1f})", d > 0, t and t["p"])
        if "be_ce" not in pl or "be_cmc_ce" not in pl:
            why = (r.get("ce") or {}).get("note", "no cross-encoder rows")
            add(task, "BE-CMC-CE beats BE-CE; CMC-final faster than the CE", None, f"not run ({why})", None)
            continue
        t = tests.get("be_cmc_ce_vs_be_ce_R@1")
        add(task, "BE-CMC-CE beats BE-CE (macro top-1 accuracy; p on per-query top-1)", None,
            f"{m('be_cmc_ce', 'acc_unnorm'):.1f} vs {m('be_ce', 'acc_unnorm'):.1f} (micro R@1 "
            f"{m('be_cmc_ce', 'R@1'):.1f} vs {m('be_ce', 'R@1'):.1f})",
            m("be_cmc_ce", "acc_unnorm") > m("be_ce", "acc_unnorm"), t and t["p"])
        slow = 100 * (m("be_cmc_ce", "ms_per_query") / m("be_ce", "ms_per_query") - 1)
        add(task, "BE-CMC-CE costs < 7 % more time than BE-CE", "BE-CMC-CE slowdown vs BE-CE", f"{slow:+.1f} %",
            slow < 7)
        up = m("be_ce", "ms_per_query") / m("cmc_final", "ms_per_query")
        kf, kce = r.get("k_final") or r.get("k_ce"), r.get("k_ce")
        same = "same K'" if kf == kce else f"CMC over the top-{kf}, the CE over the top-{kce}"
        add(task, f"CMC as the final reranker is faster than the CE ({same})", "CMC vs CE speed, direct reranking",
            f"{up:.1f}x", up > 1)
        if task == "wordnet":
            add(task, "bi-encoder R@64 (BLINK BE on ZeSHEL; ours MiniLM as is on WordNet)",
                "BLINK BE R@64 on ZeSHEL test", f"{m('be', 'R@64'):.1f}", None)
    if speed and speed.get("claims", {}).get("cmc_at_max_vs_ce_at_16"):
        c = speed["claims"]["cmc_at_max_vs_ce_at_16"]
        add("speed", f"CMC over {c['n']:,} candidates takes about as long as the CE over 16",
            "CMC with ~10K candidates vs CE with 16", f"time ratio {c['ratio']:.1f}", 0.5 <= c["ratio"] <= 2)
        add("speed", "CMC over 2K candidates takes about 2x its time over 100", "CMC with 2K candidates vs 100",
            "not measured (our curve: 16 ... 10k)", None)
    for row, what in (("Wikipedia entity linking, top-1 vs CE", "Wikipedia entity linking"),
                      ("DSTC7 dialogue ranking vs CE", "DSTC7 dialogue ranking")):
        add("—", f"{what}: CMC beats the CE", row, "not run here (no data offline)", None)
    return pd.DataFrame(rows).set_index("claim")


def to_markdown(df: pd.DataFrame, index_name: str = "", digits: int = 2) -> str:
    """A DataFrame as a pipe table (:func:`jsdlib.common.metrics.format_table`; no extra dependency)."""
    return format_table(df.to_dict(orient="index"), keys=[str(c) for c in df.columns], digits=digits,
                        name_header=index_name)
