"""reproduce --workers: lanes, the run-folder lock, the sweep's shared x1 run and helper, the allocator setting."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from jsdlib.common import runlock
from jsdlib.experiments import lanes, reproduce
from jsdlib.jsd.features import FeatureSet
from test_jsd import tiny_E, tiny_cfg, tiny_features

ROOT = Path(__file__).resolve().parents[1]


def test_expected_trainings_per_step():
    n = reproduce.expected_trainings((0, 1, 2))
    assert n == {"jsd_compare": 12, "jsd_sweep": 11, "cmc_wordnet": 3, "cmc_emoji": 3}
    assert set(n) | lanes.TIMED | {"dense"} == set(reproduce.CPU_STEPS)


def test_plan_deals_longest_first_and_puts_the_sweep_last():
    cost = {"jsd_compare": 2400, "jsd_sweep": 2200, "cmc_wordnet": 1400, "cmc_emoji": 480, "dense": 20}
    got = lanes.plan(list(cost), 2, cost)
    assert sorted(sum(got, [])) == sorted(cost)                        # every step once
    assert got == [["jsd_compare", "cmc_emoji", "dense"], ["cmc_wordnet", "jsd_sweep"]]
    assert lanes.plan(["dense"], 2, cost) == [["dense"]]               # no empty lanes
    assert lanes.plan(list(cost), 1, cost)[0][-1] == "jsd_sweep"
    assert {"search", "cmc_speed"} == set(lanes.TIMED)                  # timed steps never run in a lane


def _hold_lock(path: Path, seconds: float) -> subprocess.Popen:
    code = textwrap.dedent(f"""
        import sys, time
        from jsdlib.common.runlock import run_lock
        with run_lock({str(path)!r}):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def test_run_lock_is_exclusive_across_processes(tmp_path):
    p = _hold_lock(tmp_path / "run", 3)
    try:
        with runlock.run_lock(tmp_path / "run", blocking=False) as got:
            assert got is False                                        # another process holds it
        t0 = time.monotonic()
        with runlock.run_lock(tmp_path / "run") as got:                 # blocks until the holder lets go
            assert got is True and time.monotonic() - t0 > 1.5
    finally:
        p.wait()
    with runlock.run_lock(tmp_path / "run", blocking=False) as got:
        assert got is True


def _fs():
    train = tiny_features(seed=0)
    ids = [torch.tensor([c % 7, 7 + c % 5]) for c in range(len(train.caption_to_image))]   # PEC's caption tokens
    return FeatureSet(train, tiny_features(n_img=12, seed=1), tiny_features(n_img=12, seed=2), tiny_E(), [], ids,
                      None)


def test_fit_marks_a_finished_run_and_a_second_caller_only_loads_it(tmp_path):
    from jsdlib.jsd.train import train_jsd
    fs, rd = _fs(), tmp_path / "jsd"
    a = train_jsd(fs.train, fs.val, tiny_cfg(epochs=2), run_dir=rd, progress=False, log=lambda *x: None)
    assert runlock.finished(rd) and not runlock.finished(tmp_path / "other")
    b = train_jsd(fs.train, fs.val, tiny_cfg(epochs=2), run_dir=rd, progress=False, log=lambda *x: None)
    assert b["history"] == a["history"] and b["train_time_s"] < 1
    for k, v in a["model"].state_dict().items():
        assert torch.equal(v, b["model"].state_dict()[k])


def _sweep_ctx(tmp_path, monkeypatch):
    cfg = tiny_cfg(epochs=1)
    monkeypatch.setattr(reproduce, "COMPARE_CFG", cfg)
    step = reproduce.Step("jsd_sweep", "sweep", reproduce.jsd_compare.l1_sweep, reproduce._jsd_sweep,
                          {"cfg": cfg, "scales": (1.0, 3.0)})
    ctx = reproduce.Context(tmp_path, "cpu", (0, 1, 2), False, lambda *a: None)
    ctx._features = _fs()
    return ctx, step


def test_sweep_x1_jsd_is_the_comparisons_seed0_run_and_runs_last(tmp_path, monkeypatch):
    ctx, step = _sweep_ctx(tmp_path, monkeypatch)
    pts = reproduce._sweep_points(ctx, step.resolved())
    assert len(pts) == 6 and pts[-1][:3] == ("jsd", False, 1.0) and pts[-1][4]
    assert pts[-1][3] == tmp_path / "runs" / "jsd_compare" / "jsd-seed0"
    assert not any(p[4] for p in pts[:-1])
    monkeypatch.setattr(reproduce, "COMPARE_CFG", tiny_cfg(epochs=2))     # another config: nothing shared
    assert not any(p[4] for p in reproduce._sweep_points(ctx, step.resolved()))


def test_a_helping_lane_changes_no_number(tmp_path, monkeypatch):
    """The helper trains the sweep's points from the end; the owner then only evaluates them: same rows as a
    sweep run alone, in the canonical order, and a second helper finds nothing to do."""
    ctx, step = _sweep_ctx(tmp_path / "helped", monkeypatch)
    assert reproduce.help_sweep(ctx, step) == 5                           # all but the shared run
    helped = reproduce._jsd_sweep(ctx, step.resolved())
    assert reproduce.help_sweep(ctx, step) == 0
    # the per-step progress bar counts fit's markers: every sweep point but the shared one lives in the sweep's folder
    assert lanes.finished_trainings(tmp_path / "helped", "jsd_sweep") == 2 * len(reproduce.SWEEP_VARIANTS) - 1
    assert lanes.finished_trainings(tmp_path / "helped", "jsd_compare") == 1
    alone_ctx, _ = _sweep_ctx(tmp_path / "alone", monkeypatch)
    alone = reproduce._jsd_sweep(alone_ctx, step.resolved())
    assert json.dumps(helped, sort_keys=True) == json.dumps(alone, sort_keys=True)
    assert [(r["method"], r["pec"], r["scale"]) for r in helped["rows"]] == [
        (m, pec, s) for m, pec in reproduce.SWEEP_VARIANTS for s in (1.0, 3.0)]


def test_keeping_freed_memory_changes_no_number(tmp_path):
    """glibc's thresholds change where big blocks come from, not the arithmetic: a JSD training gives bit-identical
    weights with and without (JSDLIB_KEEP_FREED_MEMORY=0 turns it off)."""
    code = textwrap.dedent("""
        import hashlib, sys, torch
        sys.path.insert(0, "tests")
        from test_jsd import tiny_features, tiny_cfg, tiny_E
        from jsdlib.common.hardware import keep_freed_memory
        from jsdlib.jsd.train import train_jsd
        torch.set_num_threads(1)
        fs = tiny_features(seed=0)
        r = train_jsd(fs, tiny_features(n_img=12, seed=1), tiny_cfg(epochs=2), E_init=tiny_E(), progress=False,
                      log=lambda *a: None)
        h = hashlib.sha256(b"".join(v.numpy().tobytes() for v in r["model"].state_dict().values())).hexdigest()
        print(keep_freed_memory(), h)
    """)
    outs = []
    for flag in ("0", "1"):
        env = {**__import__("os").environ, "JSDLIB_KEEP_FREED_MEMORY": flag}
        res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
        outs.append(res.stdout.split())
    assert outs[0][0] == "False"
    if sys.platform.startswith("linux"):
        assert outs[1][0] == "True"
    assert outs[0][1] == outs[1][1]


def test_validation_sweep_picks_a_learning_rate_per_input_scale(monkeypatch):
    """`jsdlib cmc sweep`: every (input scale, lr) trained on train and scored on val only; the best lr per scale."""
    from jsdlib.experiments import cmc_compare
    seen = []

    def fake_lr_sweep(train, val, lrs, preset, seed, log, **over):
        seen.append((over["input_scale"], tuple(lrs)))
        return [{"lr": lr, "val_acc": (10 * lr if over["input_scale"] == "unit" else -lr), "best_epoch": 1,
                 "history": [0.0], "train_time_s": 0.0} for lr in lrs]

    monkeypatch.setattr(cmc_compare, "lr_sweep", fake_lr_sweep)
    monkeypatch.setattr(cmc_compare, "load_task", lambda task, split, progress=False: list(range(50)))
    res = cmc_compare.validation_sweep("wordnet", [1e-5, 1e-4], ("unit", "layernorm"), log=lambda *a: None)
    assert seen == [("unit", (1e-5, 1e-4)), ("layernorm", (1e-5, 1e-4))]
    assert res["best"]["unit"]["lr"] == 1e-4 and res["best"]["layernorm"]["lr"] == 1e-5
    assert len(res["rows"]) == 4 and {r["input_scale"] for r in res["rows"]} == {"unit", "layernorm"}


def test_a_step_runs_in_a_spawned_lane_and_the_parent_reuses_it(tmp_path):
    """`run(workers=2)` end to end on the cheap `dense` step: a spawned lane process computes it (its log in
    OUT/logs), the parent then reuses the step file, and the numbers equal a run without lanes."""
    logs = []
    doc = reproduce.run(tmp_path / "lanes", only=["dense"], progress=False, log=logs.append, workers=2)
    assert (tmp_path / "lanes" / "logs" / "lane0.log").read_text().count("dense: Dense retrieval") == 1
    assert any("lane 0 (1 thread): dense" in m for m in logs) and any("dense: reusing" in m for m in logs)
    plain = reproduce.run(tmp_path / "plain", only=["dense"], progress=False, log=lambda *a: None)
    assert doc["results"] == plain["results"] and doc["workers"] == 2


def _fidelity_ctx(tmp_path, seeds=(0, 1)):
    cfg = tiny_cfg(epochs=1)
    step = reproduce.Step("jsd_fidelity", "fidelity", reproduce.jsd_compare.fidelity, reproduce._jsd_fidelity,
                          {"cfg": cfg, "match": {"tol": 0.15, "max_probes": 2}})
    ctx = reproduce.Context(tmp_path, "cpu", seeds, False, lambda *a: None)
    ctx._features = _fs()
    return ctx, step


def test_jsd_fidelity_is_opt_in_and_a_helping_lane_changes_no_number(tmp_path):
    """`jsd_fidelity` runs only when named; its units (a row and a seed each) trained by a helper from the end and
    by the owner from the start give the same table as the owner alone; a second helper finds nothing to do."""
    assert "jsd_fidelity" not in {s.name for s in reproduce.cpu_steps()}
    assert [s.name for s in reproduce.cpu_steps(["jsd_fidelity"])] == ["jsd_fidelity"]
    assert "jsd_fidelity" in lanes.HELPABLE and set(reproduce.HELPERS) == lanes.HELPABLE
    ctx, step = _fidelity_ctx(tmp_path / "helped")
    units = reproduce.fidelity.units(ctx)
    assert units[0] == ("jsd", ("jsd_sparse",), 0) and units[-1][0] == "sampling" and len(units) == 5 * 2
    assert reproduce.help_fidelity(ctx, step) == len(units)              # nobody else working: the helper does all
    assert reproduce.help_fidelity(ctx, step) == 0
    helped = reproduce._jsd_fidelity(ctx, step.resolved())
    alone_ctx, _ = _fidelity_ctx(tmp_path / "alone")
    alone = reproduce._jsd_fidelity(alone_ctx, step.resolved())
    drop = lambda r: {k: v for k, v in r.items() if k != "cpu"}          # noqa: E731
    assert json.dumps(drop(helped), sort_keys=True, default=str) == json.dumps(drop(alone), sort_keys=True, default=str)
    assert list(helped["methods"]) == list(reproduce.jsd_compare.FIDELITY_METHODS)
    assert "jsd_authors_teacher_vs_jsd_corrected_teacher" in helped["tests"]
    smp = helped["sampling"]
    assert set(smp["rows"]) == {"images", "captions", "captions_same_steps"} and smp["preset_epoch"] == "images"
    steps = {k: v["steps"] for k, v in smp["rows"].items()}   # tiny set: 2 captions per image, batch 8
    assert steps["captions"] == 2 * steps["images"]
    v = reproduce.jsd_compare.sampling_variants(reproduce.COMPARE_CFG)      # cpu-emoji: 40 epochs, patience 10
    assert v["captions_same_steps"]["epochs"] == 20 and v["captions_same_steps"]["patience"] == 5
    with pytest.raises(ValueError, match="none of the epochs compared"):     # a preset whose epoch is not compared
        reproduce.jsd_compare.sampling_check(_fs(), tiny_cfg(sampling="captions", drop_duplicates=True), [0])
    assert "val_vs_own" in smp["rows"]["captions"] and "val_vs_own" not in smp["rows"]["images"]
    from jsdlib.experiments.fidelity_report import fidelity_claims, fidelity_report
    md = fidelity_report(helped)       # the report's section: table, claims seed by seed, FLOPs search, sampling
    assert all(c[0] in md for c in fidelity_claims(helped)) and "holds on seeds" in md and " of 2 |" in md
    assert "How each D2S row's FLOPs were matched" in md and "Highest validation R@1" in md
    own = [ps["flops_match"] for ps in helped["methods"]["d2s_own_matched"]["per_seed"]]
    jsd_recipe = [ps["flops_match"] for ps in helped["methods"]["d2s_matched"]["per_seed"]]
    assert all(fm["select_in_band"] for fm in own) and not any(fm["select_in_band"] for fm in jsd_recipe)
    assert all("in_band" in p for fm in own for p in fm["probes"]) and "epochs within +-15 % FLOPs" in md
    # each matched row is named with its epoch rule, in the table and in its claim
    assert "| D2S, its own recipe, FLOPs matched, epoch in band |" in md
    assert "| JSD sparse > D2S loss under JSD's recipe (FLOPs matched, any epoch) |" in md
    from jsdlib.experiments.report import report_sections
    sec = report_sections({"results": {"jsd_fidelity": helped}}, tmp_path / "report")
    assert len(sec) == 1 and (tmp_path / "report" / "jsd_fidelity_probes.png").is_file()
    # the JSD rows are the comparison's runs: one training per seed in OUT/runs/jsd_compare/jsd-seed<k>
    assert all((tmp_path / "alone" / "runs" / "jsd_compare" / f"jsd-seed{s}" / runlock.DONE).is_file() for s in (0, 1))


def test_a_helper_stops_where_the_owner_holds_a_unit(tmp_path):
    ctx, step = _fidelity_ctx(tmp_path, seeds=(0,))
    a = step.resolved()
    last = reproduce.fidelity.units(ctx)[-1]
    d, _ = reproduce.fidelity.unit_dir(ctx, a, last)
    p = _hold_lock(d, 5)
    try:
        assert reproduce.help_fidelity(ctx, step) == 0                  # the unit at the end is held: stop at once
    finally:
        p.wait()


def test_a_helper_skips_units_a_resumed_job_finished_at_the_end(tmp_path, monkeypatch):
    """A job killed and started again finds its helper's units at the end finished: the helper skips them and
    trains the pending ones instead of stopping there (which left the owner alone, at twice the wall time)."""
    ctx, step = _fidelity_ctx(tmp_path, seeds=(0,))
    a = step.resolved()
    todo = reproduce.fidelity.units(ctx)
    d, ident = reproduce.fidelity.unit_dir(ctx, a, todo[-1])
    d.mkdir(parents=True)
    runlock.mark_finished(d, ident)                  # the last unit, finished by the first invocation's helper
    trained = []
    monkeypatch.setattr(reproduce.fidelity, "train_unit", lambda ctx, a, unit: trained.append(unit))
    assert reproduce.help_fidelity(ctx, step) == len(todo) - 1
    assert trained == list(reversed(todo[:-1]))
