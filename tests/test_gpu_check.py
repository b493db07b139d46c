"""benchmarks/gpu_check.py runs end to end in its --dry-run mode (tiny sizes, CPU), so CI keeps the GPU script
working between the rare runs on a GPU machine."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(autouse=True)
def _threads(one_thread):
    yield


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_dry_run(tmp_path, capsys):
    out = tmp_path / "gpu.json"
    assert _load().main(["--dry-run", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "--dry-run" in text and "fraction of the GEMM probe" in text and "s/epoch training" in text
    assert "README table:\n| candidates | 16 | 32 |" in text
    rep = json.loads(out.read_text())
    assert rep["dry_run"] and set(rep["speed"]) == {"auto", "fp32"}
    for res in rep["speed"].values():
        assert res["device"] == "cpu" and [r["n"] for r in res["rows"]] == [16, 32]
        assert all(r["ce_measured"] and r["cmc_ms"] > 0 and r["cmc_gflop"] > 0 for r in res["rows"])
    assert rep["speed"]["fp32"]["precision"] == "fp32"
    j = rep["jsd_epoch"]
    assert j["captions"] == 5 * j["images"] == 1000 and j["train_s"] > 0 and j["peak_mem_mb"] > 0


def test_gpu_check_without_a_gpu_says_so(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _load().main([]) == 2
    assert "no GPU" in capsys.readouterr().err


def test_committed_gpu_run_is_the_readme_table():
    """benchmarks/results_gpu_check.json is the one GPU run (2026-12-04, H200): a real cuda run at the full sizes,
    its claims read off its own rows, and the README's GPU table printed from it (not typed)."""
    mod = _load()
    root = SCRIPT.parents[1]
    rep = json.loads((root / "benchmarks" / "results_gpu_check.json").read_text())
    assert not rep["dry_run"] and "H200" in rep["device"]
    for res in rep["speed"].values():
        assert res["device"] == "cuda" and [r["n"] for r in res["rows"]] == [16, 64, 256, 1000, 4000, 10000]
        assert all(r["ce_measured"] for r in res["rows"])                      # no CE extrapolated on the GPU
        from jsdlib.cmc.speed import speed_claims
        assert speed_claims(res["rows"]) == res["claims"]
    assert rep["jsd_epoch"]["captions"] == 566_435 and rep["jsd_epoch"]["device"] == "cuda"
    readme = (root / "README.md").read_text()
    block = readme.split("<!-- gpu-check:begin -->\n")[1].split("<!-- gpu-check:end -->")[0]
    assert block == mod.readme_table(rep) + "\n"
    txt = (root / "benchmarks" / "results_gpu_check.txt").read_text()
    assert "RANDOM weights" in txt and f"{rep['jsd_epoch']['train_s']:.1f} s/epoch training" in txt
