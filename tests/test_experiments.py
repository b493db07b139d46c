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
    json.dumps(res)  # serialisable
    rows = summary_rows(res)
    assert rows["jsd_sparse"]["p vs JSD sparse"] == "—" and "±" in rows["d2s"]["R@1"]


def test_committed_compare_result_has_the_schema():
    path = Path(__file__).resolve().parent.parent / "notebooks" / "results" / "jsd_compare_cpu-emoji.json"
    res = json.loads(path.read_text())
    assert set(res["methods"]) == set(METHODS) and res["seeds"] == [0, 1, 2]
    assert all(0 <= t["p"] <= 1 for t in res["tests"].values())
