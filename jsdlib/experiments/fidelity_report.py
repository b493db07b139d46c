"""The report of ``jsd_fidelity`` (``make fidelity``): issue 13's table under readable names, its claims seed by
seed, how each D2S row's FLOPs were matched (every probe), the two teachers, and the epoch chosen on validation."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from jsdlib.apps.viz import r1_vs_flops, save_figure
from jsdlib.common.metrics import format_table
from jsdlib.experiments.jsd_compare import summary_rows
from jsdlib.experiments.tables import DASH, epoch_rule, jsd_claims, to_markdown, with_epoch_rule

# issue 13's table (step jsd_fidelity): the paper's claims against the real D2S, both D2S rows at JSD's FLOPs
FIDELITY_CLAIMS = [("JSD sparse > D2S (its own recipe, FLOPs matched)", "jsd_sparse", ">", "d2s_own_matched"),
                   ("JSD sparse > D2S loss under JSD's recipe (FLOPs matched)", "jsd_sparse", ">", "d2s_matched"),
                   ("JSD sparse >= dense original (comparable or better)", "jsd_sparse", ">=", "dense_original"),
                   ("JSD dense > dense original", "jsd_dense", ">", "dense_original")]
FIDELITY_LABELS = {"dense_original": "dense original (stand-in VLP)",
                   "d2s_own_matched": "D2S, its own recipe, FLOPs matched",
                   "d2s_matched": "D2S loss, JSD's recipe, FLOPs matched",
                   "jsd_sparse": "JSD sparse", "jsd_dense": "JSD dense",
                   "jsd_integrated_authors": "JSD integrated, the authors' test-time score (w1 cos + w2 S_s)",
                   "jsd_integrated_sx": "JSD integrated, training-time S_x (w1 cos / tau + w2 S_s)",
                   "jsd_authors_teacher": "JSD sparse, the authors' (untransposed) t->i teacher",
                   "jsd_corrected_teacher": "JSD sparse, the corrected t->i teacher"}


def fidelity_label(r: dict, name: str) -> str:
    """The row's readable name, a FLOPs-matched row's with its epoch rule (:func:`~jsdlib.experiments.tables.
    epoch_rule`): the main job's D2S row is the same loss and recipe with the other rule, and a different number."""
    return with_epoch_rule(FIDELITY_LABELS.get(name, name), r, name)


def fidelity_claims(r: dict) -> list[tuple]:
    """:data:`FIDELITY_CLAIMS` with each matched D2S row's epoch rule inside the claim's parentheses."""
    return [(t[:-1] + f", {rule})" if (rule := epoch_rule(r, b)) and t.endswith(")") else t, a, op, b)
            for t, a, op, b in FIDELITY_CLAIMS]


def fidelity_probe_rows(r: dict) -> list[dict]:
    """Every probe of the matched D2S rows' FLOPs searches (all seeds) as R@1-vs-FLOPs rows on the validation
    split (:func:`jsdlib.apps.viz.r1_vs_flops` with ``split="val"``): both D2S recipes' trade-off around JSD's
    operating point, from trainings the run made anyway."""
    rows = []
    for n, label in (("d2s_own_matched", "d2s (own recipe)"), ("d2s_matched", "d2s loss, jsd recipe")):
        for ps in r["methods"].get(n, {}).get("per_seed", []):
            for p in (ps.get("flops_match") or {}).get("probes", []):
                if "val_R@1" in p:
                    rows.append({"method": label, "scale": float(f"{p['scale']:.3g}"), "val_flops": p["flops"],
                                 "val_R@1": p["val_R@1"], "seed": ps["seed"]})
    return rows


def fidelity_probe_figure(r: dict):
    """:func:`fidelity_probe_rows` plotted, with the JSD runs' validation FLOPs (the targets) as dashed lines."""
    fig = r1_vs_flops(fidelity_probe_rows(r), split="val")
    ax = fig.axes[0]
    targets = sorted({ps["flops_match"]["target"] for n in ("d2s_own_matched", "d2s_matched")
                      for ps in r["methods"].get(n, {}).get("per_seed", []) if ps.get("flops_match")})
    for i, t in enumerate(targets):
        ax.axvline(t, color="grey", ls="--", lw=0.8, label="JSD runs' val FLOPs (targets)" if i == 0 else None)
    ax.set_title("D2S's FLOPs searches: every probe (validation, all seeds)")
    ax.legend(fontsize=8)
    return fig


def flops_match_section(r: dict, labels: dict | None = None) -> list[str]:
    """Markdown lines: how each ``*_matched`` D2S row's L1 weight was searched to the JSD run's FLOPs, seed by
    seed (target, chosen scale, weights, epoch rule, matched or not, every probe); empty without such rows."""
    labels = FIDELITY_LABELS if labels is None else labels
    match = {}
    for n in ("d2s_own_matched", "d2s_matched"):
        for ps in r["methods"].get(n, {}).get("per_seed", []):
            fm = ps.get("flops_match")
            if fm:
                band = fm.get("select_in_band", False)
                probes = ", ".join(f"x{p['scale']:.3g}: {p['flops']:.2f}"
                                   + ("" if "in_band" not in p else " (in band)" if p["in_band"] else " (none in band)")
                                   for p in fm["probes"])
                match[f"{labels.get(n, n)}, seed {ps['seed']}"] = {
                    "target (JSD val FLOPs)": f"{fm['target']:.2f}", "L1 scale": f"x{fm['scale']:.3g}",
                    "eta_t / eta_i": f"{fm['eta_t']:.3g} / {fm['eta_i']:.3g}",
                    "epoch selected among": "epochs within +-15 % FLOPs" if band else "all epochs",
                    "matched (+-15 %)": "yes" if fm["matched"] else "NO", "probes (scale: val FLOPs)": probes}
    if not match:
        return []
    return ["\n### How each D2S row's FLOPs were matched (on validation, inside the run)\n", format_table(match),
            "\nA probe's FLOPs are those of its selected validation epoch. Where the epoch is selected among the "
            "epochs within +-15 % of the target (D2S's own recipe, `jsdlib.jsd.matching`), a probe with no "
            "epoch in that band reports its epoch closest to the target, which steers the search."]


def fidelity_report(r: dict) -> str:
    """Markdown for the ``jsd_fidelity`` step: the table, the claims, how each D2S row's FLOPs were matched, the
    two teachers, the two integrated scores, and the epoch chosen on validation."""
    rows = summary_rows(r)
    table = {fidelity_label(r, n): row for n, row in rows.items()}
    out = [format_table(table), "\n### Claims checked on our numbers (pooled paired t-test, and seed by seed)\n",
           to_markdown(jsd_claims(r, claims=fidelity_claims(r), per_seed=True), "claim")]
    t = r["tests"].get("jsd_authors_teacher_vs_jsd_corrected_teacher")
    if t:
        a, c = (r["methods"][n]["t2i"]["R@1"]["mean"] for n in ("jsd_authors_teacher", "jsd_corrected_teacher"))
        out.append(f"\nThe two t->i teachers: the authors' {a:.1f} vs the corrected {c:.1f} R@1 (paired t-test p = "
                   f"{t['p']:.2g}, {t['n_pairs']:,} pairs).")
    out += flops_match_section(r)
    smp = r.get("sampling")
    if smp:
        own = smp["preset_epoch"]
        srows = {}
        for k, v in smp["rows"].items():
            t = v.get("val_vs_own")
            srows[k] = {"val R@1": f"{v['val_R@1']:.2f} ± {v['val_R@1_std']:.2f}", "val FLOPs": f"{v['val_flops']:.2f}",
                        "optimizer steps": f"{v['steps']:.0f}",
                        f"p vs {own} (val)": DASH if t is None else f"{t['p']:.2g}",
                        "val R@1 per seed": ", ".join(f"{x['val_R@1']:.1f}" for x in v["per_seed"]),
                        "test R@1 (not used)": f"{v['test_R@1']:.1f}"}
        out += [f"\n### The epoch of `cpu-emoji`, chosen on validation (JSD, seeds {smp['seeds']})\n",
                format_table(srows, name_header="epoch"),
                f"\nHighest validation R@1: **{smp['chosen_on_validation']}**; the preset's epoch: `{own}`."]
    return "\n".join(out)


def fidelity_section(r: dict, out=None) -> str:
    """:func:`fidelity_report`, plus the probe plot saved as ``out/jsd_fidelity_probes.png`` when ``out`` is given."""
    body = fidelity_report(r)
    if out is not None and fidelity_probe_rows(r):
        fig = fidelity_probe_figure(r)
        save_figure(fig, Path(out) / "jsd_fidelity_probes.png", dpi=110)
        plt.close(fig)
        body += "\n\n![D2S probes, R@1 vs FLOPs](jsd_fidelity_probes.png)"
    return body


__all__ = ["FIDELITY_CLAIMS", "FIDELITY_LABELS", "fidelity_claims", "fidelity_label", "fidelity_probe_rows",
           "fidelity_probe_figure", "fidelity_report", "fidelity_section"]
