"""The GPU check: CMC / CE speed up to 10,000 candidates and one JSD epoch at COCO's size, on ``cuda``.

    python benchmarks/gpu_check.py [--out benchmarks/results_gpu_check.txt]    # on a machine with a GPU, ~5 min
    python benchmarks/gpu_check.py --dry-run                                  # tiny sizes on the CPU (CI, tests)

1. **CMC vs CE speed** (:func:`jsdlib.cmc.speed.speed_curve`) on the GPU, N = 16 ... 10,000 candidates, every CE value
   measured (none extrapolated), in the automatic precision (bf16 autocast where the GPU supports it) and in
   exact fp32; the roofline columns use a GEMM probe on the same GPU.
2. **One JSD epoch of the ``blip-coco`` preset** on synthetic features of COCO's size: 113,287 training images
   x 5 captions, 768-d text and image features, BLIP's 256-d projection, BERT's 30,522 x 768 word embeddings;
   the authors' epoch visits every caption pair (``sampling="captions"``, duplicate images dropped within a
   batch). Validation: 1,000 images x 5 captions. Prints seconds per epoch (optimisation alone and with
   validation) and the peak GPU memory.

The features are random (seeded): the timings and the memory depend on the sizes, not on the values.
``--dry-run`` runs both parts with tiny sizes on the CPU through the same code (a 2-layer BERT of width 32 for
the CE / query encoder, 200 images), so CI checks that the script works; its numbers mean nothing.
Until this script has run on a GPU the README says so; its output is committed with the date when it has.
"""
from __future__ import annotations

import argparse
import datetime
import resource
import sys
import time

import numpy as np
import torch

from jsdlib.common.io import write_json


def synthetic_features(n_img: int, caps_per_img: int, d: int, proj_dim: int, seed: int):
    """Random :class:`jsdlib.vlp.features.Features` of a given size (captions of image i: rows 5 i .. 5 i + 4)."""
    from jsdlib.vlp.features import Features

    g = torch.Generator().manual_seed(seed)
    n_cap = n_img * caps_per_img
    proj = {"W_t": torch.randn(proj_dim, d, generator=g) / d ** 0.5, "b_t": torch.zeros(proj_dim),
            "W_v": torch.randn(proj_dim, d, generator=g) / d ** 0.5, "b_v": torch.zeros(proj_dim)}
    c2i = np.repeat(np.arange(n_img), caps_per_img)
    i2c = [list(range(i * caps_per_img, (i + 1) * caps_per_img)) for i in range(n_img)]
    return Features(torch.randn(n_cap, d, generator=g), torch.randn(n_img, d, generator=g), proj, c2i, i2c,
                    key=f"synthetic-{n_img}x{caps_per_img}-{d}-seed{seed}")


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by torch (MB), or on a CPU this process's peak resident memory."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def jsd_epoch(device: torch.device, dry: bool, log=print) -> dict:
    """One epoch of the blip-coco preset over every caption pair of synthetic COCO-size features."""
    from jsdlib.jsd.train import train_jsd
    from jsdlib.jsd.presets import get_preset

    sz = (dict(n_img=200, n_val=40, d=64, proj=32, vocab=500, emb=16) if dry else
          dict(n_img=113_287, n_val=1_000, d=768, proj=256, vocab=30_522, emb=768))
    train = synthetic_features(sz["n_img"], 5, sz["d"], sz["proj"], seed=0)
    val = synthetic_features(sz["n_val"], 5, sz["d"], sz["proj"], seed=1)
    val.proj = train.proj
    cfg = get_preset("blip-coco", epochs=1, sampling="captions", device=str(device), vocab_size=sz["vocab"],
                     emb_dim=sz["emb"])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t = time.perf_counter()
    res = train_jsd(train, val, cfg, progress=False, log=lambda *a: None)
    wall = time.perf_counter() - t
    h = res["history"][0]
    out = {"images": sz["n_img"], "captions": sz["n_img"] * 5, "feature_dim": sz["d"], "vocab": sz["vocab"],
           "batch_size": cfg.batch_size, "steps": int(np.ceil(sz["n_img"] * 5 / cfg.batch_size)),
           "train_s": h["train_s"], "epoch_s": h["epoch_s"], "wall_s": round(wall, 2),
           "peak_mem_mb": round(peak_memory_mb(device), 1), "device": str(device),
           "amp": "fp16 autocast" if (cfg.amp and device.type == "cuda") else "fp32"}
    log(f"JSD blip-coco, one epoch over {out['captions']:,} caption pairs ({out['images']:,} images, "
        f"{out['feature_dim']}-d, |V| {out['vocab']:,}, batch {out['batch_size']}, {out['amp']}) on {device}: "
        f"{out['train_s']:.1f} s/epoch training, {out['epoch_s']:.1f} s with validation; "
        f"peak memory {out['peak_mem_mb']:,.0f} MB")
    return out


def readme_table(report: dict) -> str:
    """The README's GPU table (between ``<!-- gpu-check:begin -->`` and ``<!-- gpu-check:end -->``) from a
    ``--json`` report: CMC ms, CE ms and CE / CMC per candidate count, fp32 and the automatic precision."""
    rows = report["speed"]["fp32"]["rows"]
    lines = ["| candidates | " + " | ".join(f"{r['n']:,}" for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for key in ("fp32", "auto"):
        res = report["speed"][key]
        for label, fmt in (("CMC ms", lambda r: f"{r['cmc_ms']:.1f}"), ("CE ms", lambda r: f"{r['ce_ms']:,.1f}"),
                           ("CE / CMC", lambda r: f"{r['ce_over_cmc']:.1f}")):
            lines.append(f"| {label}, {res['precision']} | " + " | ".join(fmt(r) for r in res["rows"]) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU (CI): checks the script, not a GPU")
    p.add_argument("--ns", type=int, nargs="+", default=None, help="candidate counts (default 16 ... 10,000)")
    p.add_argument("--json", help="also write every number as JSON here")
    args = p.parse_args(argv)

    from jsdlib.common import hardware
    from jsdlib.cmc.speed import roofline_table, speed_curve, speed_table

    if args.dry_run:
        device = torch.device("cpu")
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("gpu_check: torch sees no GPU here; run it on a machine with CUDA, or use --dry-run to check the "
              "script on the CPU", file=sys.stderr)
        return 2
    ns = args.ns or ([16, 32] if args.dry_run else [16, 64, 256, 1000, 4000, 10000])
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"{hardware.cpu_model()}; {hardware.describe()}")
    print(f"# gpu_check{' --dry-run (tiny sizes, CPU: the numbers mean nothing)' if args.dry_run else ''}: {when}, "
          f"{where}, torch {torch.__version__}", flush=True)
    report = {"date": when, "device": where, "torch": torch.__version__, "dry_run": args.dry_run, "speed": {}}
    t0 = time.perf_counter()
    for precision in ("auto", "fp32"):
        res = speed_curve(ns, ce_max=max(ns), device=str(device), precision=precision, tiny=args.dry_run,
                          repeats=(1, 1, 1) if args.dry_run else (5, 3, 3), log=lambda m: print(m, flush=True))
        print(f"\nCMC vs CE, {res['precision']} (asked: {precision}), ms per query on {res['device']}")
        print(speed_table(res))
        print(roofline_table(res) + "\n", flush=True)
        report["speed"][precision] = res
    report["jsd_epoch"] = jsd_epoch(device, args.dry_run, log=lambda m: print(m, flush=True))
    report["total_s"] = round(time.perf_counter() - t0, 1)
    print(f"total {report['total_s']:.0f} s")
    if args.json:
        write_json(report, args.json)
    print("\nREADME table:\n" + readme_table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
