"""benchmarks/search_scale.py end to end at a tiny N (no Seismic grid, no Milvus): every recall query's exact
top-10 is checked against scipy brute force, and every back end row carries latency, queries/s and memory."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "search_scale.py"


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def test_search_scale_small_run(tmp_path):
    spec = importlib.util.spec_from_file_location("search_scale", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out, txt = tmp_path / "s.json", tmp_path / "s.txt"
    assert mod.main(["--sizes", "4000", "--queries", "24", "--timed", "2", "--repeats", "1", "--no-seismic",
                     "--others", "brute_sparse", "faiss", "--json", str(out), "--txt", str(txt)]) == 0
    rows = {r["backend"]: r for r in json.loads(out.read_text())["rows"]}
    assert list(rows) == ["exact", "exact_maxscore", "brute_sparse", "faiss"]
    assert rows["exact"]["identical_to_brute_force_on"] == 12 == rows["exact_maxscore"]["identical_to_brute_force_on"]
    assert rows["exact"]["recall_at_10"] == 1.0 and rows["brute_sparse"]["recall_at_10"] == 1.0
    for r in rows.values():
        assert r["n"] == 4000 and r["ms_per_query"] > 0 and r["qps"] > 0 and r["memory_mb"] > 0
    assert rows["faiss"]["memory_mb"] == pytest.approx(4000 * 256 * 4 / 2 ** 20)
    assert "| 4,000 | faiss | dense 256-d |" in txt.read_text()


def test_readme_1m_table_is_the_committed_run():
    """Every row of the README's 1M-documents table is the committed benchmark JSON's (one source per number)."""
    rows = json.loads((SCRIPT.parent / "results_search_scale.json").read_text())["rows"]
    by = {(f"{r['n']:,}", r["backend"]): r for r in rows}
    readme = (SCRIPT.parents[1] / "README.md").read_text()
    section = readme.split("### At 1M documents", 1)[1].split("\n## ", 1)[0]
    lines = [ln for ln in section.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert len(lines) == len(rows)
    for ln in lines:
        n, backend, _, ms, qps, rec, mem, _ = [c.strip() for c in ln.strip("|").split("|")]
        r = by[(n, backend)]
        assert (ms, qps, rec, mem) == (f"{r['ms_per_query']:.3f}", f"{r['qps']:,.0f}", f"{r['recall_at_10']:.4f}",
                                       f"{r['memory_mb']:,.1f}"), ln
