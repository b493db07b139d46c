"""`jsdlib reproduce`: paper presets stop at once without data; steps are reused; report numbers = JSON numbers."""
import json
import math
import re
from pathlib import Path

import pytest

from jsdlib.experiments import reproduce
from jsdlib.cli.main import main

ROOT = Path(__file__).resolve().parent.parent


def test_paper_preset_without_data_stops_at_once(tmp_path, capsys):
    with pytest.raises(reproduce.MissingDataError, match="needs --data DIR holding dataset_coco.json, "
                                                         "text_embs_before_proj_blip.parquet"):
        reproduce.check_paper_data("blip-coco", None)
    (tmp_path / "dataset_flickr30k.json").write_text("{}")
    with pytest.raises(reproduce.MissingDataError, match=r"missing .*text_embs_before_proj_albef.parquet.*released"):
        reproduce.check_paper_data("albef-flickr", tmp_path)
    assert main(["reproduce", "--preset", "blip-coco", "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "holi-lab/mm-sparse-retrieval" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    with pytest.raises(ValueError, match="unknown step"):
        reproduce.cpu_steps(["nope"])


def test_dense_step_runs_then_is_reused(tmp_path):
    logs = []
    doc = reproduce.run(tmp_path, only=["dense"], progress=False, log=logs.append)
    assert (tmp_path / "steps" / "dense.json").is_file() and (tmp_path / "results.json").is_file()
    again = reproduce.run(tmp_path, only=["dense"], progress=False, log=logs.append)
    assert any("dense: reusing" in m for m in logs)
    assert again["results"] == doc["results"]
    saved = json.loads((tmp_path / "results.json").read_text())
    report = (tmp_path / "report.md").read_text()
    for k, v in saved["results"]["dense"]["t2i"].items():
        assert f"{v:.2f}" in report, k
    assert f"{saved['results']['dense']['rsum']:.2f}" in report


def test_report_from_committed_results(tmp_path):
    main = json.loads((ROOT / "notebooks" / "results" / "reproduce_cpu" / "results.json").read_text())["results"]
    doc = {"preset": "cpu", "seeds": [0, 1, 2], "environment": reproduce.environment(), "steps": {},
           "results": {k: main[k] for k in ("jsd_compare", "jsd_sweep", "cmc_wordnet", "cmc_speed")}}
    from jsdlib.experiments.report import write_report

    text = write_report(doc, tmp_path).read_text()
    assert (tmp_path / "jsd_sweep.png").stat().st_size > 1000
    m = doc["results"]["jsd_compare"]["methods"]["jsd_sparse"]["t2i"]["R@1"]
    assert f"{m['mean']:.1f} ± {m['std']:.1f}" in text
    assert "JSD sparse > D2S" in text and "57.6 (secondary)" in text
    # every number of the paper column is in the reference file; "—" where unknown
    assert re.search(r"\| VisualSparta \|.*— \|", text)
    w = doc["results"]["cmc_wordnet"]["pipelines"]["be_cmc"]["R@16"]
    assert f"{w['mean']:.1f} ± {w['std']:.1f}" in text and "CMC vs cross-encoder speed" in text


COMMITTED = ROOT / "notebooks" / "results" / "reproduce_cpu"
FIDELITY = ROOT / "notebooks" / "results" / "jsd_fidelity_cpu"
CMC_FIDELITY = ROOT / "notebooks" / "results" / "cmc_fidelity_cpu"


def test_committed_report_is_the_committed_json(tmp_path):
    """The committed report of the last `jsdlib reproduce --preset cpu` run is exactly what its results.json
    renders to (so every number in the report is the JSON's), and the README's summary is that JSON's too."""
    from jsdlib.experiments.report import README_BEGIN, README_END, summary_markdown, write_report

    doc = json.loads((COMMITTED / "results.json").read_text())
    assert doc["preset"] == "cpu" and set(doc["results"]) == set(reproduce.CPU_STEPS)
    assert all(m["seconds"] > 0 for m in doc["steps"].values())           # every step was run, not assembled
    assert write_report(doc, tmp_path).read_text() == (COMMITTED / "report.md").read_text()
    readme = (ROOT / "README.md").read_text()
    block = readme.split(README_BEGIN, 1)[1].split(README_END, 1)[0]
    assert block.strip() == summary_markdown(doc).strip()


def test_the_main_jobs_d2s_row_is_matched_to_jsds_flops_inside_the_run():
    """Issue 13 point 5 in `make run`: the JSD table's D2S row is `d2s_matched` (its L1 weight searched on validation
    to each seed's JSD run, so the match holds on any machine), beside the authors' integrated score and the
    training-time S_x. Each probe selects its epoch inside the +-15 % FLOPs band (the run before, selecting over all
    epochs, saw seed 2's selected-epoch FLOPs jump from 7.1 to 3.0 between x1.11 and x1.20 and match in none of five
    probes). The committed run records every probe and whether each seed matched (every seed, at the first probe),
    and the report says so."""
    step = reproduce.cpu_steps(["jsd_compare"])[0]
    assert step.args["names"] == reproduce.MAIN_JSD_METHODS and step.args["match"] == reproduce.MAIN_MATCH
    assert {"d2s_matched", "jsd_integrated_authors", "jsd_integrated"} <= set(reproduce.MAIN_JSD_METHODS)
    assert "d2s" not in reproduce.MAIN_JSD_METHODS and reproduce.MAIN_MATCH["tol"] == 0.15
    r = json.loads((COMMITTED / "results.json").read_text())["results"]["jsd_compare"]
    assert list(r["methods"]) == list(reproduce.MAIN_JSD_METHODS)
    report = (COMMITTED / "report.md").read_text()
    assert "How each D2S row's FLOPs were matched" in report
    for ps in r["methods"]["d2s_matched"]["per_seed"]:
        fm = ps["flops_match"]
        assert fm["target"] > 0 and fm["select_in_band"] == reproduce.MAIN_MATCH["select_in_band"] is True
        assert fm["probes"][0]["scale"] == reproduce.MAIN_MATCH["start"]
        kept = next(p for p in fm["probes"] if p["scale"] == fm["scale"])
        assert fm["matched"] == (abs(kept["ratio"] - 1) <= fm["tol"])
        assert kept == min(fm["probes"], key=lambda p: abs(math.log(p["ratio"])))     # the closest probe is kept
        assert fm["matched"] or len(fm["probes"]) == reproduce.MAIN_MATCH["max_probes"]
        row = next(ln for ln in report.splitlines() if ln.startswith(f"| D2S loss, JSD's recipe, FLOPs matched, seed {ps['seed']} |"))
        assert ("| yes |" if fm["matched"] else "| NO |") in row
    assert all(ps["flops_match"]["matched"] for ps in r["methods"]["d2s_matched"]["per_seed"])


def test_committed_cmc_fidelity_table_is_the_step_as_configured(tmp_path):
    """`make cmc-fidelity`'s committed run (issue 15): its report is its JSON's; it ran the step as configured now
    (the preset, the CE, the rerankers' learning rates chosen on validation, CMC-final and the rerankers over the
    BE's top-64); every reranker of the comparison was measured in that one run, with paired tests per seed."""
    from jsdlib.experiments.report import write_report

    doc = json.loads((CMC_FIDELITY / "results.json").read_text())
    assert set(doc["results"]) == {"cmc_fidelity"} and doc["seeds"] == [0, 1, 2]
    assert write_report(doc, tmp_path).read_text() == (CMC_FIDELITY / "report.md").read_text()
    step = reproduce.cpu_steps(["cmc_fidelity"])[0]
    assert doc["steps"]["cmc_fidelity"]["digest"] == step.digest([0, 1, 2])        # the committed step is today's
    r = doc["results"]["cmc_fidelity"]
    assert r["preset"]["name"] == "cpu-authors" and r["preset"]["max_train_queries"] is None
    assert r["ce_config"]["head"] == "pooler" and r["ce"]["n_train_queries"] == 4000
    assert r["k_final"] == r["k_extra"] == 64
    assert all(r["pipelines"][n]["n_reranked"] == 64 for n in ("cmc_final", "be_poly", "be_sum_of_max"))
    for kind, name in (("poly", "poly"), ("sum_of_max", "sum_of_max")):   # the lr each was chosen with on validation
        sweep = json.loads((ROOT / "notebooks" / "results" / f"cmc_reranker_lr_wordnet_{name}.json").read_text())
        assert all(i[kind]["lr"] == sweep["best"][kind]["lr"] for i in r["seed_info"])
    for t in ("be_cmc_vs_be_R@16", "be_cmc_ce_vs_be_ce_R@1", "cmc_final_vs_be_poly_R@1",
              "cmc_final_vs_be_sum_of_max_R@1"):
        assert len(r["tests"][t]["per_seed"]) == 3
    from jsdlib.experiments.tables import reranker_table, settings_table, to_markdown
    readme = (ROOT / "README.md").read_text()
    assert to_markdown(reranker_table(r), "reranker") in readme             # the README's table is the JSON's
    ft, fb = r["settings"]["finetuned_encoders"], r["settings"]["finetuned_be"]   # item 2: two more settings
    assert ft["variant"] == "finetuned" and ft["preset"]["name"] == "cpu-authors-ft" and ft["data"] == r["data"]
    assert fb["be_kind"] == "finetuned" and fb["data"] == "wordnet-test-be_finetuned" and fb["variant"] == "frozen"
    for x in (ft, fb):                      # the same test queries, seeds and CE as the main table
        assert (x["n_test_queries"], x["seeds"], x["k_final"]) == (r["n_test_queries"], r["seeds"], 64)
        assert x["ce"]["train_time_s"] == r["ce"]["train_time_s"] and len(x["tests"]["be_cmc_vs_be_R@16"]["per_seed"]) == 3
    assert ft["pipelines"]["be"] == r["pipelines"]["be"] | {"ms_per_query": ft["pipelines"]["be"]["ms_per_query"]}
    assert to_markdown(settings_table(r), "setting") in readme
    lrs = json.loads((ROOT / "notebooks" / "results" / "cmc_finetuned_lr_val.json").read_text())
    best = max(lrs["rows"], key=lambda x: x["val_key"])                      # the preset's lr won on validation
    assert (best["lr"], best["encoder_lr"]) == (ft["preset"]["lr"], ft["preset"]["encoder_lr"])
    i0 = r["seed_info"][0]
    assert lrs["warm_start_val_key"] == i0["val_key_history"][i0["best_epoch"] - 1] and lrs["seed"] == 0
    assert ft["seed_info"][0]["val_key_history"] == [best["val_key"]]        # the same training as the probe's
    pool = json.loads((ROOT / "notebooks" / "results" / "cmc_pooling_val.json").read_text())["poolings"]
    assert all(pool["mean_unit"][k] > pool["cls"][k] for k in ("R@1", "R@16", "R@64"))   # why the BE's pooling


def test_committed_fidelity_table_shares_the_comparisons_jsd_runs(tmp_path):
    """`make fidelity`'s committed run: its report is its JSON's; its JSD rows are, seed by seed, the very numbers
    of the committed main job's comparison (the same trainings, so the ablation claims of that table hold for this
    JSD too); every claim of issue 13 is checked; both D2S rows record their FLOPs searches."""
    from jsdlib.experiments.fidelity_report import fidelity_claims
    from jsdlib.experiments.report import write_report

    fid = json.loads((FIDELITY / "results.json").read_text())
    assert set(fid["results"]) == {"jsd_fidelity"} and fid["seeds"] == [0, 1, 2]
    assert write_report(fid, tmp_path).read_text() == (FIDELITY / "report.md").read_text()
    r, main = fid["results"]["jsd_fidelity"], json.loads((COMMITTED / "results.json").read_text())
    text = (FIDELITY / "report.md").read_text()
    assert all(c[0] in text for c in fidelity_claims(r)) and "FLOPs matched, any epoch" in text
    for n in ("d2s_own_matched", "d2s_matched"):
        for ps in r["methods"][n]["per_seed"]:
            fm = ps["flops_match"]
            chosen = next(p for p in fm["probes"] if p["scale"] == fm["scale"])
            assert isinstance(fm["matched"], bool) and fm["matched"] == (abs(chosen["ratio"] - 1) <= fm["tol"])
            assert fm["matched"] and fm["select_in_band"] == (n == "d2s_own_matched")    # issue 13: every seed
            assert all(p["in_band"] == (abs(p["ratio"] - 1) <= fm["tol"]) for p in fm["probes"] if "in_band" in p)
    assert set(r["sampling"]["rows"]) == {"images", "captions", "captions_same_steps"}
    # the README's table of this run is this JSON's (R@1, MRR@10 and FLOPs of each row it shows)
    readme = (ROOT / "README.md").read_text().split("### JSD as the authors ran it", 1)[1].split("\n### ", 1)[0]
    shown = set()          # README lines that carry a row's numbers (the corrected teacher's are JSD sparse's)
    for n, m in r["methods"].items():
        cells = [f"{m['t2i'][k]['mean']:.1f} ± {m['t2i'][k]['std']:.1f}" for k in ("R@1", "MRR@10")] + [f"{m['flops']:.1f}"]
        row = next((ln for ln in readme.splitlines() if ln.startswith("| ") and " | ".join(cells) in ln), None)
        shown |= {row} - {None}
    assert len(shown) == 6
    # the same stand-in as the main job's comparison, today's: then its JSD rows are that table's, seed by seed
    weights = main["steps"]["jsd_compare"]["config"].get("weights")
    assert weights == reproduce.weight_digests(bundled=False)
    if fid["steps"]["jsd_fidelity"]["config"].get("weights") != weights:
        # the README labels the committed run with the stand-in it was measured on until it is rerun
        assert "measured on the stand-in before `deep-long`" in " ".join(readme.split())
        pytest.xfail("make fidelity's committed run predates the deep-long stand-in: rerun pending (README)")
    for n in ("jsd_sparse", "jsd_dense", "dense_original"):
        assert r["methods"][n]["per_seed"] == [
            {k: v for k, v in ps.items() if k in r["methods"][n]["per_seed"][0]}
            for ps in main["results"]["jsd_compare"]["methods"][n]["per_seed"]]


def test_only_the_steps_that_read_the_bundled_model_carry_its_digest():
    """A re-exported bundled JSD model reruns the steps that read it (search, cmc_emoji) and no other: the others'
    fingerprints name the stand-in alone. The committed main-job run is on today's weights, step by step."""
    doc = json.loads((COMMITTED / "results.json").read_text())
    steps = {s.name: s for s in reproduce.cpu_steps()}
    assert set(reproduce.BUNDLED_STEPS) < set(reproduce.WEIGHT_STEPS) and set(reproduce.BUNDLED_STEPS) <= set(steps)
    for name in reproduce.WEIGHT_STEPS:
        if name not in doc["steps"]:
            continue
        expect = reproduce.weight_digests(bundled=name in reproduce.BUNDLED_STEPS)
        assert ("bundled_jsd" in expect) == (name in ("search", "cmc_emoji"))
        assert doc["steps"][name]["config"]["weights"] == expect, name
        steps[name].config["weights"] = expect
        assert doc["steps"][name]["digest"] == steps[name].digest(doc["seeds"]), name


def test_progress_weights_steps_by_the_committed_step_times(tmp_path):
    """The job's ETA weighs each step by its cost in the committed run (not 1/7 each): the weights are exactly
    that run's step times, one per step."""
    doc = json.loads((COMMITTED / "results.json").read_text())
    fid = json.loads((FIDELITY / "results.json").read_text())
    cfid = json.loads((CMC_FIDELITY / "results.json").read_text())
    assert reproduce.EXPECTED_SECONDS == {k: m["seconds"] for d in (doc, fid, cfid) for k, m in d["steps"].items()}
    assert set(reproduce.EXPECTED_SECONDS) == set(reproduce.CPU_STEPS) | set(reproduce.OPT_IN_STEPS)
    share = reproduce.EXPECTED_SECONDS["dense"] / sum(reproduce.EXPECTED_SECONDS.values())
    assert share < 0.01          # the first step is ~0.1 % of the job, so its ETA no longer promises 48 s


# ------------------------------------------------------------------------------------------------ stale steps
def test_editing_a_default_of_the_called_function_reruns_the_step(tmp_path, monkeypatch):
    """A step's fingerprint covers the resolved arguments of the library function it calls, defaults included:
    editing a default of ``speed_curve`` (not the step's own settings) re-runs the ``cmc_speed`` step instead of
    reusing its stale file. The real function is replaced by a cheap one with the same kind of signature."""
    from jsdlib import cmc as cmc_core

    committed = json.loads((ROOT / "notebooks" / "results" / "reproduce_cpu" / "results.json").read_text())[
        "results"]["cmc_speed"]
    calls = []

    def speed_curve(ns=(16, 64), ce_max=10000, ce_batch=64, log=print, repeats=(5, 3, 1)):
        calls.append(ce_batch)
        return committed

    monkeypatch.setattr(cmc_core, "speed_curve", speed_curve)
    run = lambda: reproduce.run(tmp_path, only=["cmc_speed"], progress=False, log=lambda *a: None)  # noqa: E731
    first = run()
    run()
    assert calls == [64]                                                 # same defaults: reused
    speed_curve.__defaults__ = ((16, 64), 10000, 32, print, (5, 3, 1))   # a default edited in the callee
    again = run()
    assert calls == [64, 32]                                             # ... runs the step again
    assert again["steps"]["cmc_speed"]["digest"] != first["steps"]["cmc_speed"]["digest"]
    assert again["steps"]["cmc_speed"]["config"]["args"]["ce_batch"] == 32


def test_fingerprint_is_the_resolved_arguments(tmp_path):
    """``Step.resolved`` = the step's own values + every default of its function (runtime arguments left out);
    a step without ``run`` calls ``fn(ctx, **resolved)``."""
    def fit(ctx, lr=0.1, epochs=3, log=print):
        return {"lr": lr, "epochs": epochs}

    step = reproduce.Step("fit", "a fit", fit, args={"epochs": 5})
    assert step.resolved() == {"lr": 0.1, "epochs": 5}
    doc = reproduce.run(tmp_path, steps=[step], progress=False, log=lambda *a: None)
    assert doc["results"]["fit"] == {"lr": 0.1, "epochs": 5}
    d = step.digest([0])
    assert reproduce.Step("fit", "a fit", fit, args={"epochs": 5, "lr": 0.1}).digest([0]) == d   # default spelled out
    assert reproduce.Step("fit", "a fit", fit, args={"epochs": 5, "lr": 0.2}).digest([0]) != d
    assert step.digest([0, 1]) != d
    with pytest.raises(TypeError):
        reproduce.Step("fit", "a fit", fit, args={"nope": 1}).resolved()   # a misspelt argument fails at once
    steps = {s.name: s for s in reproduce.cpu_steps()}
    assert steps["jsd_sweep"].resolved()["scales"] == (0.3, 1.0, 3.0, 10.0)
    assert steps["cmc_wordnet"].resolved()["n_eval"] == -1                 # compare's own default, now covered


def test_cmc_steps_cover_the_task_settings_and_preset(monkeypatch):
    """The CMC steps name a task and a preset; the values behind those names are in the fingerprint, so editing
    `TASKS` or a CMC preset re-runs the step too."""
    from jsdlib import cmc as cmc_core

    before = {s.name: s.digest([0]) for s in reproduce.cpu_steps()}
    monkeypatch.setitem(cmc_core.TASKS, "wordnet", {**cmc_core.TASKS["wordnet"], "n_eval": 301})
    after = {s.name: s.digest([0]) for s in reproduce.cpu_steps()}
    assert [n for n in before if before[n] != after[n]] == ["cmc_wordnet"]
