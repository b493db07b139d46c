"""Issue 14, point 2: a stronger stand-in trained on every training style of the multi-style emoji set.

Trains a few stand-in configurations on ``train_set="styles"`` (Noto + Twemoji + Fluent flat/modern, 11,475
images), each selected per epoch on the Noto val split's t2i R@1 (as the committed stand-in was), then reports,
for each of them and for the committed Noto-only stand-in, dense t2i retrieval per subset of the multi-style
val and test splits (:func:`jsdlib.vlp.standin_eval.subset_metrics`: seen / cross-style / unseen Noto images,
ranked against all 500 Noto images, and the OpenMoji unseen-style gallery). The configuration is chosen on the
**val** rows; test rows are printed beside them for the README.

Runs resume (each training's ``last.pt`` under ``--work``); ``--only NAME`` trains one configuration, so two
shells train two at once (one thread each, ``--threads 1``); the report step (``--report``) trains nothing and
needs every checkpoint::

    python benchmarks/standin_styles.py --only base --threads 1 &   # lane 1
    python benchmarks/standin_styles.py --only aug --threads 1 &    # lane 2
    python benchmarks/standin_styles.py --report --json benchmarks/results_standin_styles.json

``--merge FILE`` keeps an earlier ``--json``'s rows for the configurations without a checkpoint under ``--work``
(they were trained in another session, on another machine); their rows take part in the choice as they stand.
``--also LABEL=PATH`` evaluates another checkpoint beside them (e.g. a stand-in committed before), outside the
choice.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from jsdlib.common.integrity import file_sha256
from jsdlib.common.io import write_json
from jsdlib.vlp.standin import NOTO_STANDIN_CHECKPOINT
from jsdlib.experiments.grounding import PINNED_NAMES
from jsdlib.vlp.standin_eval import standin_pinned_ranks, standin_subset_metrics
from jsdlib.vlp.train_standin import StandinConfig, train_standin

EPOCHS = 30     # 4.4x the Noto images per epoch: 30 epochs are 1.6x the committed stand-in's 80-epoch steps
CONFIGS = {
    "base": {},                                       # the committed stand-in's architecture and augmentation
    "aug": {"min_scale": 0.5, "max_shift": 0.15},     # stronger crops and shifts
    "deep": {"layers": 8},                            # two more ViT blocks
    "wide": {"width": 256},                           # wider ViT (8 heads of 32)
    "deep-long": {"layers": 8, "epochs": 60},         # deep for twice the epochs (its best epoch was 29 of 30)
    "deep-xlong": {"layers": 8, "epochs": 120},       # deep-long for twice the epochs (val R@1 rose to its end)
}


def config(name: str, threads: int) -> StandinConfig:
    return StandinConfig(train_set="styles", threads=threads, **{"epochs": EPOCHS, **CONFIGS[name]})


def train(name: str, work: Path, threads: int) -> dict:
    cfg = config(name, threads)
    start = time.perf_counter()
    res = train_standin(cfg, out=work / f"standin_styles_{name}.safetensors", run_dir=work / f"run_{name}",
                        progress=True)
    return {"name": name, "seconds": round(time.perf_counter() - start, 1), "best": res["best"]}


def _row(name: str, ckpt: Path, threads: int, info: dict) -> dict:
    val = standin_subset_metrics(ckpt, "val", threads)
    test = standin_subset_metrics(ckpt, "test", threads)
    pinned = standin_pinned_ranks(ckpt, PINNED_NAMES, threads)   # read beside the rows, not used to choose
    return {"name": name, "checkpoint": str(ckpt), "sha256": file_sha256(ckpt), **info, "val": val, "test": test, "pinned": pinned}


def report(work: Path, threads: int, merge: Path | None = None, also: dict[str, Path] | None = None) -> dict:
    """Rows for the Noto-only stand-in, every configuration trained under ``work`` (else its row in ``merge``) and
    each ``also`` checkpoint (outside the choice); the configuration chosen on val Noto t2i R@1."""
    from safetensors import safe_open
    earlier = {r["name"]: r for r in json.loads(merge.read_text())["rows"]} if merge else {}
    rows = []
    committed = json.loads(safe_open(str(NOTO_STANDIN_CHECKPOINT), "pt").metadata()["info"])
    rows.append(_row("committed (Noto only)", NOTO_STANDIN_CHECKPOINT, threads,
                     {"config": committed["config"], "best_epoch": committed["best_epoch"]}))
    missing = []
    for name in CONFIGS:
        ckpt = work / f"standin_styles_{name}.safetensors"
        if not ckpt.is_file():
            if name in earlier:
                rows.append(earlier[name] | {"from": str(merge)})
            else:
                missing.append(name)
            continue
        info = json.loads(safe_open(str(ckpt), "pt").metadata()["info"])
        minutes = sum(r.get("epoch_s", 0.0) for r in info["history"]) / 60
        rows.append(_row(name, ckpt, threads, {"config": info["config"], "best_epoch": info["best_epoch"],
                                               "epochs_run": len(info["history"]), "train_min": round(minutes, 1)}))
    if len(rows) < 2:
        raise SystemExit("standin_styles: no configuration is trained yet (run with --only NAME first)")
    chosen = max(rows[1:], key=lambda r: r["val"]["noto"]["R@1"])
    for label, ckpt in (also or {}).items():
        info = json.loads(safe_open(str(ckpt), "pt").metadata()["info"])
        rows.append(_row(label, ckpt, threads, {"config": info["config"], "best_epoch": info["best_epoch"],
                                                "outside_choice": True}))
    return {"epochs": EPOCHS, "configs": CONFIGS, "rows": rows, "chosen_on_val_noto_R@1": chosen["name"],
            "not_trained": missing}


def table(res: dict) -> str:
    cols = ("noto", "seen", "cross-style", "unseen", "unseen-style")
    lines = []
    for split in ("val", "test"):
        lines.append(f"t2i R@1 on the multi-style {split} split (Noto subsets ranked against all 500 Noto images)")
        lines.append("| stand-in | best epoch | " + " | ".join(cols) + " |")
        lines.append("|---|---|" + "---|" * len(cols))
        for r in res["rows"]:
            mark = (" (chosen on val)" if r["name"] == res["chosen_on_val_noto_R@1"]
                    else " (earlier run)" if r.get("from") else " (outside the choice)" if r.get("outside_choice")
                    else "")
            lines.append(f"| {r['name']}{mark} | {r['best_epoch']} | "
                         + " | ".join(f"{r[split][c]['R@1']:.1f}" for c in cols) + " |")
        lines.append("")
    pinned = [r for r in res["rows"] if "pinned" in r]
    if pinned:
        names = list(pinned[0]["pinned"])
        lines.append("Noto images of its split the tower scores above each pinned image for its own name (0 = first)")
        lines.append("| stand-in | " + " | ".join(f"{n} ({pinned[0]['pinned'][n]['split']})" for n in names) + " |")
        lines.append("|---|" + "---|" * len(names))
        lines += [f"| {r['name']} | " + " | ".join(str(r["pinned"][n]["above"]) for n in names) + " |" for r in pinned]
        lines.append("")
    if res["not_trained"]:
        lines.append(f"not trained in this run (left out of the choice): {', '.join(res['not_trained'])}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", type=Path, default=Path(".cache/standin_styles"))
    ap.add_argument("--only", choices=sorted(CONFIGS), action="append", help="train these configurations")
    ap.add_argument("--report", action="store_true", help="evaluate every trained configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--merge", type=Path, default=None,
                    help="an earlier --json: its rows stand in for configurations without a checkpoint in --work")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=PATH",
                    help="also evaluate this checkpoint (outside the choice)")
    args = ap.parse_args(argv)
    also = {}
    for item in args.also:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_file():
            ap.error(f"--also wants LABEL=PATH to an existing checkpoint, got {item!r}")
        also[label] = Path(path)
    args.work.mkdir(parents=True, exist_ok=True)
    for name in args.only or ([] if args.report else list(CONFIGS)):
        print(json.dumps(train(name, args.work, args.threads)))
    if args.report:
        res = report(args.work, args.threads, merge=args.merge, also=also)
        print(table(res))
        if args.json:
            write_json(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
