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
