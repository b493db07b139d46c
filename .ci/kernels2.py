#!/usr/bin/env python3
"""KERNELS2: the "other kernels" setting of the second notebook pass (`make test-kernels`, `.ci/run`).

Committed notebook outputs must hold on any CPU (spec layout.md, nbval practice). CI checks this by running the
notebooks a second time with PyTorch / oneDNN told to use other CPU kernels than this machine's best:

    AVX512 / AMX machine:  ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2   (a laptop's kernels, fp32 training)
    AVX2 machine:          ATEN_CPU_CAPABILITY=default                        (ATen's scalar kernels)

    python .ci/kernels2.py env     # prints the setting, one VAR=value per word (for `env $(...) pytest ...`)
    python .ci/kernels2.py show    # proves it: hashes of a matmul, a LayerNorm and a MiniLM-sized encoder layer
                                   # under both settings; exits 1 if they are bit-identical (the pass checks nothing)

Each probe runs in a fresh interpreter because both variables are read once, when torch loads.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time

_PROBE = r"""
import hashlib, json, time, torch
torch.manual_seed(0)
torch.set_num_threads(1)
a, b = torch.randn(256, 384), torch.randn(384, 384)
ln = torch.nn.LayerNorm(384)
layer = torch.nn.TransformerEncoderLayer(384, 4, 1024, dropout=0.0, batch_first=True).eval()
x = torch.randn(8, 65, 384)
t0 = time.perf_counter()
with torch.no_grad():
    out = {"matmul": a @ b, "layernorm": ln(a), "encoder layer": layer(x)}
    for _ in range(4):
        layer(x)
ms = (time.perf_counter() - t0) * 1000
h = {k: hashlib.sha256(v.contiguous().numpy().tobytes()).hexdigest()[:12] for k, v in out.items()}
print(json.dumps({"capability": torch.backends.cpu.get_cpu_capability(), "hashes": h, "ms": round(ms, 1)}))
"""


def kernels2_env(capability: str | None = None) -> dict[str, str]:
    """The environment of the second pass for a machine whose ATen kernel level is ``capability``."""
    if capability is None:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()
    if capability.startswith("AVX512") or "AMX" in capability:
        return {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
    if capability == "AVX2":
        return {"ATEN_CPU_CAPABILITY": "default"}
    raise SystemExit(f"kernels2: no other kernel level known below {capability!r}; run the second pass by hand "
                     f"with ATEN_CPU_CAPABILITY=default or skip it on this machine")


def _probe(extra: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA")}
    env.update(extra)
    out = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def show() -> int:
    """Print both settings' hashes and times; 1 when the second setting computes the same bits (useless pass)."""
    k2 = kernels2_env()
    base, other = _probe({}), _probe(k2)
    setting = " ".join(f"{k}={v}" for k, v in k2.items())
    print(f"kernels2: this machine's kernels {base['capability']}; second pass under {setting} "
          f"(torch reports {other['capability']})")
    differ = []
    for name in base["hashes"]:
        h1, h2 = base["hashes"][name], other["hashes"][name]
        differ.append(h1 != h2)
        print(f"  {name:14s} sha256 {h1} vs {h2}  {'differ' if h1 != h2 else 'IDENTICAL'}")
    print(f"  probe time {base['ms']:.0f} ms vs {other['ms']:.0f} ms")
    if not any(differ):
        print("kernels2: the other setting computes bit-identical results here, so the second pass would check "
              "nothing; pick another setting in .ci/kernels2.py", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> int:
    if argv == ["env"]:
        print(" ".join(f"{k}={v}" for k, v in kernels2_env().items()))
        return 0
    if argv == ["show"]:
        return show()
    print("usage: python .ci/kernels2.py env|show", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
