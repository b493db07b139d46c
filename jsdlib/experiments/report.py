"""The report of ``jsdlib reproduce`` (``OUT/report.md``) and the summary the README shows, rendered from a
``results.json`` document with the tables of :mod:`jsdlib.experiments.tables` (the papers' tables and claims)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from jsdlib.apps.viz import r1_vs_flops, save_figure
from jsdlib.cmc.speed import speed_table
from jsdlib.common.io import atomic_write
from jsdlib.common.metrics import format_table, report_rows
from jsdlib.experiments.fidelity_report import fidelity_section, flops_match_section
from jsdlib.experiments.jsd_compare import summary_rows
from jsdlib.experiments.tables import (DASH, cmc_claims, cmc_table, jsd_claims, jsd_table1, jsd_table2, jsd_table3,
                                       reranker_table, settings_table, sweep_table, to_markdown)
from jsdlib.index.bench import ratio_table


# ----------------------------------------------------------------------------------------------
# The report of `jsdlib reproduce`
# ----------------------------------------------------------------------------------------------
def _section(title: str, body: str, source: str) -> str:
    return f"## {title}\n\nFrom `{source}`.\n\n{body}\n"


def report_sections(doc: dict, out=None) -> list[str]:
    """Markdown sections for each finished step of a ``results.json`` document (PNG plots into ``out``)."""
    res, parts = doc["results"], []
    if "dense" in res:
        parts.append(_section("Dense retrieval of the stand-in VLP (emoji test split)",
                              format_table(report_rows(res["dense"]), name_header="queries", digits=2),
                              "steps/dense.json"))
    if "jsd_compare" in res:
        r = res["jsd_compare"]
        body = [format_table(summary_rows(r)),
                "\nPaper tables beside ours (different data and models: compare orderings, not numbers):\n",
                "### Table 1 — sparse retrievers\n", to_markdown(jsd_table1(r), "ours / paper row"),
                "\n### Table 2 — against the dense counterpart\n", to_markdown(jsd_table2(r), "ours / paper row"),
                "\n### Table 3 — ablations\n", to_markdown(jsd_table3(r), "ours / paper row"),
                "\n### Claims checked on our numbers\n", to_markdown(jsd_claims(r, per_seed=True), "claim")]
        body += flops_match_section(r)
        parts.append(_section("JSD and its baselines", "\n".join(body), "steps/jsd_compare.json"))
    if "jsd_fidelity" in res:
        parts.append(_section("JSD as the authors ran it, against the real D2S (issue 13)",
                              fidelity_section(res["jsd_fidelity"], out), "steps/jsd_fidelity.json"))
    if "jsd_sweep" in res:
        body = to_markdown(sweep_table(res["jsd_sweep"]), "run")
        if out is not None:
            fig = r1_vs_flops(res["jsd_sweep"]["rows"])
            save_figure(fig, Path(out) / "jsd_sweep.png", dpi=110)
            plt.close(fig)
            body += "\n\n![R@1 vs FLOPs](jsd_sweep.png)"
        parts.append(_section("Effectiveness vs efficiency (the paper's Figure 2)", body, "steps/jsd_sweep.json"))
    if "search" in res:
        parts.append(_section("Search back ends", ratio_table(res["search"]["rows"]), "steps/search.json"))
    for task, title in (("wordnet", "CMC on WordNet sense linking"), ("emoji", "CMC on emoji retrieval after JSD")):
        r = res.get(f"cmc_{task}")
        if r:
            body = (f"Data: {r.get('data')}. CMC variant: {r.get('variant')} encoders; {r.get('n_test_queries')} test "
                    f"queries; K = {r.get('k')}, K' = {r.get('k_ce')}; seeds {r.get('seeds')}.\n\n"
                    + to_markdown(cmc_table(r), "pipeline"))
            parts.append(_section(title, body, f"steps/cmc_{task}.json"))
    if res.get("cmc_fidelity"):
        r = res["cmc_fidelity"]
        body = [f"Data: {r.get('data')}. CMC preset {r['preset']['name']} (lr {r['preset']['lr']:g}, every training "
                f"mention, up to {r['preset']['epochs']} epochs with early stopping, selection on "
                f"{r['preset']['select_on']}); {r.get('n_test_queries')} test queries; K = {r.get('k')}, "
                f"K' = {r.get('k_ce')}, CMC-final and the comparison rerankers over the top-{r.get('k_final')}; "
                f"seeds {r.get('seeds')}.\n", to_markdown(cmc_table(r), "pipeline"),
                "\n### The reranker comparison (the same lists, the same run)\n", to_markdown(reranker_table(r), "reranker"),
                "\n### Claims checked on our numbers\n", to_markdown(cmc_claims({"wordnet": r}), "claim")]
        if r.get("settings"):
            ft = r["settings"].get("finetuned_encoders", {}).get("preset", {})
            body += ["\n### Fine-tuned encoders, and the fine-tuned BE (the same test queries, seeds and CE)\n",
                     (f"Fine-tuned encoders: preset {ft.get('name')}, CMC's query and candidate encoders copied from "
                      f"the as-is BE and trained with the head (lr {ft.get('lr', 0):g}, encoders "
                      f"{ft.get('encoder_lr') or ft.get('lr', 0):g}) on {ft.get('max_train_queries')} training "
                      f"mentions for {ft.get('epochs')} epoch, starting from the same seed's {ft.get('warm_start')} "
                      "head. Fine-tuned BE: the bi-encoder fine-tuned on the train domains ranks every split; CMC "
                      "(frozen encoders, its vectors) and the CE rerank its lists.\n\n" if ft else "")
                     + to_markdown(settings_table(r), "setting")]
        parts.append(_section("CMC as the authors ran it, and the reranker comparison (issue 15)", "\n".join(body),
                              "steps/cmc_fidelity.json"))
    if "cmc_speed" in res:
        parts.append(_section("CMC vs cross-encoder speed", speed_table(res["cmc_speed"]), "steps/cmc_speed.json"))
    cmc_res = {t: res[f"cmc_{t}"] for t in ("wordnet", "emoji") if res.get(f"cmc_{t}")}
    if cmc_res or "cmc_speed" in res:
        parts.append(_section("CMC claims checked on our numbers",
                              "The paper's values are on ZeSHEL with BERT-base; ours on the bundled sets with MiniLM: "
                              "only the direction is judged.\n\n"
                              + to_markdown(cmc_claims(cmc_res, res.get("cmc_speed")), "claim"),
                              "steps/cmc_*.json"))
    return parts


def wall_seconds(steps: dict) -> float | None:
    """The job's wall time from its step files: the last ``finished`` stamp minus the earliest start
    (``finished - seconds``); ``None`` without stamps. Lanes overlap, so this is less than the sum of the steps."""
    from datetime import datetime, timezone
    spans = []
    for m in steps.values():
        try:
            end = datetime.strptime(m["finished"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        except (KeyError, TypeError, ValueError):
            return None
        spans.append((end - float(m.get("seconds", 0)), end))
    return (max(e for _, e in spans) - min(s for s, _ in spans)) if spans else None


def write_report(doc: dict, out) -> Path:
    """``out/report.md`` from a ``results.json`` document: every table, the claims, plots, environment, seeds."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env = doc.get("environment", {})
    head = [f"# jsdlib reproduce — preset `{doc['preset']}`", "",
            f"Seeds {doc['seeds']}; Python {env.get('python')}, torch {env.get('torch')}, "
            f"{env.get('cpu_count')} CPUs, CUDA {env.get('cuda')}; {env.get('platform')}.", "",
            "Every number below is read from `results.json` (written in the same run, or reused from a previous "
            "run of the same step and configuration). Reference numbers: `data/paper_tables/reference.csv` "
            "(\"secondary\" = quoted by a secondary summary, not checked against the PDF; — = not known).", "",
            "| step | seconds | finished |", "|---|---|---|"]
    head += [f"| {n} | {m.get('seconds')} | {m.get('finished')} |" for n, m in doc.get("steps", {}).items()]
    span = wall_seconds(doc.get("steps", {}))
    if span is not None:
        head += ["", f"Wall time: {span / 60:.1f} min from the first step's start to the last step's end (from the "
                     f"step files; {doc.get('workers', 1)} lane(s): steps in parallel lanes overlap)."]
    text = "\n".join(head) + "\n\n" + "\n".join(report_sections(doc, out))
    return atomic_write(out / "report.md", text)


# ----------------------------------------------------------------------------------------------
# The short summary the README shows (kept equal to the committed results.json by a test)
# ----------------------------------------------------------------------------------------------
README_BEGIN, README_END = "<!-- reproduce:begin -->", "<!-- reproduce:end -->"


def summary_markdown(doc: dict) -> str:
    """The headline tables of a ``reproduce`` run: JSD methods and claims, CMC pipelines per task, claims."""
    res, parts = doc["results"], []
    if "jsd_compare" in res:
        r = res["jsd_compare"]
        rows = {n: {"R@1": f"{m['t2i']['R@1']['mean']:.1f} ± {m['t2i']['R@1']['std']:.1f}",
                    "MRR@10": f"{m['t2i']['MRR@10']['mean']:.1f} ± {m['t2i']['MRR@10']['std']:.1f}",
                    "FLOPs": f"{m['flops']:.1f}"} for n, m in r["methods"].items()}
        parts += [f"**JSD** (emoji test split, {len(r.get('seeds', []))} seeds; text -> image):\n",
                  to_markdown(pd.DataFrame.from_dict(rows, orient="index"), "method"), "",
                  to_markdown(jsd_claims(r), "JSD claim"), ""]
    for task in ("wordnet", "emoji"):
        r = res.get(f"cmc_{task}")
        if r:
            parts += [f"**CMC, {task}** ({r['data']}, {r['n_test_queries']} test queries, K = {r['k']}, "
                      f"K' = {r['k_ce']}, {r['variant']} encoders, {len(r['seeds'])} seeds):\n",
                      to_markdown(cmc_table(r)[["R@1", "R@16", "R@64", "acc_unnorm", "ms_per_query"]], "pipeline"),
                      ""]
    cmc_res = {t: res[f"cmc_{t}"] for t in ("wordnet", "emoji") if res.get(f"cmc_{t}")}
    if cmc_res:
        c = cmc_claims(cmc_res, res.get("cmc_speed"))
        c = c[c.verdict != DASH][["ours", "verdict", "p"]]
        parts += [to_markdown(c, "CMC claim"), ""]
    return "\n".join(parts).rstrip() + "\n"
