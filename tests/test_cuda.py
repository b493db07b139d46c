"""The trainers on a GPU: CMC, the cross-encoder and JSD run on ``cuda`` through the same code as on the CPU, end
on the device and follow the CPU's losses. Skipped where torch sees no GPU (CI, laptops); run on a GPU machine
with ``python -m pytest tests/test_cuda.py`` (the run of 2026-12-04 on an H200: ``benchmarks/results_cuda_tests.txt``).

Tolerances: in fp32 the GPU's kernels sum in other orders (and attention may take another fused path), so a few
optimiser steps drift by about 1e-5 relative; 1e-3 leaves room and still fails on a wrong device path (a missed
``.to(device)`` raises; a label or teacher left on the wrong scale moves the loss by far more). Dropout is off in
the compared runs: its masks come from each device's own random generator. JSD's CUDA default is fp16 autocast,
checked separately against the same run in fp32 at 2e-2.
"""
from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (torch.cuda.is_available())")

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _module(relpath: str):
    """A helper file loaded once: tests/test_cmc.py (its synthetic data, tiny configs and BERT) or
    benchmarks/gpu_check.py (its synthetic features)."""
    spec = importlib.util.spec_from_file_location(Path(relpath).stem + "_helpers", ROOT / relpath)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _test_cmc():
    return _module("tests/test_cmc.py")


def _quiet(*_a, **_k):
    return None


def test_cmc_trains_on_cuda_like_on_the_cpu():
    from jsdlib.cmc.train import train_cmc
    t = _test_cmc()
    tr, va = t.synthetic(n=40, seed=0, noise=1.5), t.synthetic(n=20, seed=5, noise=1.5)
    cpu = train_cmc(tr, va, t.tiny_cfg(epochs=2, device="cpu"), progress=False, log=_quiet)
    gpu = train_cmc(tr, va, t.tiny_cfg(epochs=2, device="cuda"), progress=False, log=_quiet)
    assert all(p.device.type == "cuda" for p in gpu["model"].parameters())
    assert [h["loss"] for h in gpu["history"]] == pytest.approx([h["loss"] for h in cpu["history"]], rel=1e-3)


def test_cross_encoder_trains_on_cuda_like_on_the_cpu():
    from jsdlib.cmc.cross_encoder import CEConfig, CrossEncoder, train_ce
    t = _test_cmc()
    d = t.synthetic(n=4, m=60, k=32, texts=True)
    runs = {}
    for dev in ("cpu", "cuda"):
        bert, tok = t.tiny_bert()                        # same seeded weights for both
        ce = CrossEncoder(bert, tok, max_len=16)
        for m in ce.modules():                           # dropout draws from each device's own generator
            if isinstance(m, torch.nn.Dropout):
                m.p = 0.0
        runs[dev] = train_ce(d, CEConfig(max_train_queries=4, n_candidates=4, max_len=16, device=dev),
                             ce=ce, progress=False, log=_quiet)
    assert next(runs["cuda"]["model"].parameters()).device.type == "cuda"
    assert runs["cuda"]["losses"] == pytest.approx(runs["cpu"]["losses"], rel=1e-3)


def _jsd_run(device: str, amp: bool):
    from jsdlib.jsd.presets import get_preset
    from jsdlib.jsd.train import train_jsd
    g = _module("benchmarks/gpu_check.py")
    tr, va = g.synthetic_features(200, 5, 64, 32, seed=0), g.synthetic_features(40, 5, 64, 32, seed=1)
    va.proj = tr.proj
    cfg = get_preset("blip-coco", epochs=2, sampling="captions", device=device, vocab_size=500, emb_dim=16, amp=amp)
    return train_jsd(tr, va, cfg, progress=False, log=_quiet)


def test_jsd_trains_on_cuda_like_on_the_cpu():
    cpu, gpu = _jsd_run("cpu", amp=False), _jsd_run("cuda", amp=False)
    assert all(p.device.type == "cuda" for p in gpu["model"].parameters())
    for key in ("loss", "L_dense", "L_sparse", "L_inter"):
        assert [h[key] for h in gpu["history"]] == pytest.approx([h[key] for h in cpu["history"]], rel=1e-3), key
    amp = _jsd_run("cuda", amp=True)                     # the preset's CUDA default: fp16 autocast
    assert amp["precision"] != gpu["precision"]
    assert [h["loss"] for h in amp["history"]] == pytest.approx([h["loss"] for h in gpu["history"]], rel=2e-2)


def test_cmc_speed_curve_runs_on_cuda():
    from jsdlib.cmc.speed import speed_curve
    res = speed_curve([16, 64], ce_max=64, device="cuda", tiny=True, repeats=(1, 1, 1), log=_quiet)
    assert res["device"] == "cuda" and all(r["cmc_ms"] > 0 and r["ce_measured"] for r in res["rows"])
