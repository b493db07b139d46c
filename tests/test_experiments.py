"""Aggregation of multi-seed method results into the `jsdlib jsd compare` schema."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jsdlib.experiments.jsd_compare import aggregate, summary_rows
from jsdlib.jsd.methods import METHODS


def _fake(seed):
    rng = np.random.default_rng(seed)
    out = {}
    for k, n in enumerate(METHODS):
        rr = rng.random(50) * (0.5 + 0.05 * k)
        out[n] = {"t2i": {"R@1": 40.0 + k + seed, "R@5": 60.0, "R@10": 70.0, "MRR@10": 50.0},
                  "rr": rr, "flops": 5.0 + k, "terms_q": 50.0, "terms_d": 90.0}
    return out


def test_aggregate_schema_and_pooled_tests():
    res = aggregate([_fake(0), _fake(1), _fake(2)], [0, 1, 2])
    assert set(res["methods"]) == set(METHODS)
    for m in res["methods"].values():
        assert set(m["t2i"]) == {"R@1", "R@5", "R@10", "MRR@10"}
        assert set(m["t2i"]["R@1"]) == {"mean", "std"}
        assert {"flops", "terms_q", "terms_d"} <= set(m)
    assert res["methods"]["d2s"]["t2i"]["R@1"] == pytest.approx({"mean": 42.0, "std": 1.0})
    assert set(res["tests"]) == {f"jsd_sparse_vs_{n}" for n in METHODS if n != "jsd_sparse"} | {
        "jsd_dense_vs_dense_original"}
    t = res["tests"]["jsd_sparse_vs_d2s"]
    assert t["n_pairs"] == 150 and 0 <= t["p"] <= 1
    # each seed's own test beside the pooled one (the pooled p treats a seed's captions as independent)
    assert [s["seed"] for s in t["per_seed"]] == [0, 1, 2] and all(0 <= s["p"] <= 1 for s in t["per_seed"])
    from jsdlib.common.stats import paired_test
    one = [_fake(0), _fake(1), _fake(2)][1]
    assert t["per_seed"][1]["p"] == pytest.approx(paired_test(one["jsd_sparse"]["rr"], one["d2s"]["rr"], "t"))
    assert np.mean([s["mean_rr_diff"] for s in t["per_seed"]]) == pytest.approx(t["mean_rr_diff"])
    json.dumps(res)  # serialisable
    from jsdlib.experiments.tables import jsd_claims
    claims = jsd_claims(res, per_seed=True)
    assert claims.loc["JSD sparse > D2S", "p per seed"] == ", ".join(f"{s['p']:.2g}" for s in t["per_seed"])
    old = json.loads(json.dumps(res))
    for v in old["tests"].values():
        del v["per_seed"]
    assert "p per seed" not in jsd_claims(old, per_seed=True)     # results from before keep their rendering
    rows = summary_rows(res)
    assert rows["jsd_sparse"]["p vs JSD sparse"] == "—" and "±" in rows["d2s"]["R@1"]


def test_committed_compare_result_has_the_schema():
    path = Path(__file__).resolve().parent.parent / "notebooks" / "results" / "reproduce_cpu" / "results.json"
    res = json.loads(path.read_text())["results"]["jsd_compare"]     # the main job's, the one source notebooks read
    from jsdlib.experiments.reproduce import MAIN_JSD_METHODS     # the main job's rows (D2S matched since issue 13)
    assert set(res["methods"]) == set(MAIN_JSD_METHODS) and res["seeds"] == [0, 1, 2]
    assert all(0 <= t["p"] <= 1 for t in res["tests"].values())
