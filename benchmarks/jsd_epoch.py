"""Time of one JSD training epoch on the cached emoji features (the issue's goal: under 5 s on 2 CPU cores).

    python benchmarks/jsd_epoch.py [--epochs 6] [--threads 2] [--json out.json]

Trains the cpu-emoji preset for a few epochs with fp32 and, where the CPU has native bf16 (jsdlib.common.hardware), with
bf16 autocast, same run, same machine (elsewhere the trainer runs fp32 whatever is asked, so no bf16 row), and
prints the median training time per epoch (the optimisation steps) and per epoch including validation,
over the epochs after the first two (those are slower: before the L1 warm-up bites, most of the 30,522
vocabulary terms are active and the head's backward pass is dense).
"""
from __future__ import annotations

import argparse
import platform
import statistics

import torch

from jsdlib.common import hardware
from jsdlib.common.io import write_json
from jsdlib.jsd.features import emoji_features
from jsdlib.jsd.train import train_jsd
from jsdlib.jsd.presets import get_preset


def time_epochs(fs, epochs: int, bf16: bool, threads: int) -> dict:
    cfg = get_preset("cpu-emoji", epochs=epochs, cpu_bf16=bf16, threads=threads, patience=epochs)
    res = train_jsd(fs.train, fs.val, cfg, progress=False, log=lambda *a: None, E_init=fs.E_init)
    hist = res["history"]
    steady = hist[2:] if len(hist) > 2 else hist
    return {"precision": res["precision"], "epochs": len(hist),
            "train_s_median": statistics.median(h["train_s"] for h in steady),
            "epoch_s_median": statistics.median(h["epoch_s"] for h in steady),
            "first_epoch_s": hist[0]["epoch_s"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    fs = emoji_features()
    rows = [time_epochs(fs, args.epochs, bf16, args.threads) for bf16 in (False, True)[:1 + hardware.native_bf16()]]
    print(f"JSD epoch time, cpu-emoji preset, {fs.train.image.shape[0]} training images "
          f"(batch 128), {args.threads} threads, {platform.processor() or platform.machine()}, torch {torch.__version__}")
    print(f"CPU: {hardware.cpu_model()}, {hardware.describe()}" + ("" if hardware.native_bf16() else " (no bf16 row: jsdlib trains fp32 here)"))
    print("| precision | epochs | median train s/epoch | median s/epoch incl. validation | first epoch s | vs fp32 |")
    print("|---|---|---|---|---|---|")
    base = rows[0]["epoch_s_median"]
    for r in rows:
        print(f"| {r['precision']} | {r['epochs']} | {r['train_s_median']:.2f} | {r['epoch_s_median']:.2f} | "
              f"{r['first_epoch_s']:.2f} | {base / r['epoch_s_median']:.2f}x |")
    goal = min(r["epoch_s_median"] for r in rows)
    print(f"goal (< 5 s per epoch incl. validation): {'met' if goal < 5 else 'NOT met'} ({goal:.2f} s)")
    if args.json:
        write_json({"rows": rows, "threads": args.threads, "torch": torch.__version__, "cpu": hardware.describe()},
                   args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
