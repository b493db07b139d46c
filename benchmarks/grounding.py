"""Issue 14, point 4: the bundled model's grounding recipe chosen on validation (jsdlib.experiments.grounding).

    python benchmarks/grounding.py --standin CKPT --only pec pec-words --threads 1 &     # lane 1
    python benchmarks/grounding.py --standin CKPT --only pec-floor ... --threads 1 &     # lane 2
    python benchmarks/grounding.py --standin CKPT --json benchmarks/results_grounding.json  # all, then the choice

(`--json` with `--only` writes the choice among the named candidates only; the JSON lists them.)

Runs resume from ``--run-root`` (default ``.cache/grounding/<stand-in digest>``); the last call trains what is
missing, measures every candidate on val and test, applies the rule and prints the table.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def table(res: dict) -> str:
    k = res["k"]
    lines = [f"| candidate | val sparse R@1 | val dense R@1 | val FLOPs | val readable@{k} | val specific@{k} | "
             f"seen | cross-style | unseen | test sparse R@1 | test FLOPs | test specific@{k} (seen / cross / unseen) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for n, r in res["rows"].items():
        v, t = r["val"], r["test"]
        vr, tr = v["readability"], t["readability"]
        mark = " **(chosen)**" if n == res.get("chosen") else ""
        lines.append(
            f"| {n}{mark} | {v['sparse_R@1']:.1f} | {v['dense_R@1']:.1f} | {v['flops']:.2f} | "
            f"{100 * vr['all']['readable']:.1f} | {100 * vr['all']['specific']:.1f} | "
            + " | ".join(f"{100 * vr[s]['specific']:.1f}" for s in ("seen", "cross-style", "unseen"))
            + f" | {t['sparse_R@1']:.1f} | {t['flops']:.2f} | {100 * tr['all']['specific']:.1f} ("
            + " / ".join(f"{100 * tr[s]['specific']:.1f}" for s in ("seen", "cross-style", "unseen")) + ") |")
    lines.append(f"\nrule: {res.get('why', '')}; chosen: {res.get('chosen')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--standin", type=Path, default=None, help="stand-in checkpoint (default: the committed one)")
    ap.add_argument("--only", nargs="+", default=None, help="train only these candidates (no choice)")
    ap.add_argument("--run-root", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from jsdlib.common.integrity import safetensors_digest
    from jsdlib.common.io import write_json
    from jsdlib.experiments.grounding import TRAIN_SET, candidates, grounding
    from jsdlib.jsd.features import emoji_features
    from jsdlib.jsd.presets import get_preset
    from jsdlib.vlp.standin import DEFAULT_STANDIN_CHECKPOINT

    ckpt = args.standin or DEFAULT_STANDIN_CHECKPOINT
    root = args.run_root or Path(".cache/grounding") / safetensors_digest(ckpt)[:12]
    start = time.perf_counter()
    fs = emoji_features(ckpt, progress=True)
    cfg = get_preset("cpu-emoji", seed=args.seed, pec=True, threads=args.threads)
    names = args.only or list(candidates(cfg))
    styles = any(candidates(cfg)[n].get(TRAIN_SET) == "styles" for n in names)
    styles_fs = emoji_features(ckpt, progress=True, train_set="styles") if styles else None
    res = grounding(fs, cfg, names, run_root=root, progress=True, styles_fs=styles_fs)
    res["standin"] = str(ckpt)
    res["seconds"] = round(time.perf_counter() - start, 1)
    print(table(res))
    if args.json:
        write_json(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
