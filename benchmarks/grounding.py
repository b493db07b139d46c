"""Issue 14, point 4: the bundled model's grounding recipe chosen on validation (jsdlib.experiments.grounding).

    python benchmarks/grounding.py --standin CKPT --only pec pec-words --threads 1 &     # lane 1
    python benchmarks/grounding.py --standin CKPT --only pec-floor ... --threads 1 &     # lane 2
    python benchmarks/grounding.py --standin CKPT --json benchmarks/results_grounding.json --standin-metrics
                                                                                        # all, then the choice

(`--json` with `--only` writes the choice among the named candidates only; the JSON lists them.)

Candidates added later are measured without retraining the others: ``--merge benchmarks/results_grounding.json``
keeps that file's rows, trains only the candidates it lacks (or ``--only``) and applies the rule to all of them;
it refuses unless this stand-in's t2i R@1 per subset (val and test) equals the one recorded there::

    python benchmarks/grounding.py --standin CKPT --merge benchmarks/results_grounding.json \
        --json benchmarks/results_grounding.json

Other seeds of a candidate: ``--seed N --only NAME --json seedN.json`` trains it (its own ``--run-root``), and
``--merge FILE --seed-runs seed1.json seed2.json --json FILE`` adds their rows as ``NAME-seedN`` (refused unless
they ran on the merged file's stand-in, by digest; nothing is trained unless ``--only`` names candidates), applies
the rule to every row and prints the recipe over seeds
(:func:`jsdlib.experiments.grounding.seed_summary`).

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
    lines += ["", f"test, the issue's acceptance columns (readable@{k} = any caption word in the top {k}, specific@{k} = "
              "a word at most 10 test captions use)",
              f"| candidate | seen readable@{k} (>= 98) | seen specific@{k} (>= 85) | cross-style specific@{k} (>= 60) "
              f"| unseen readable@{k} (>= 30) | sparse R@1 | dense R@1 | sparse - dense (>= -1) | FLOPs (<= 5) |",
              "|---|---|---|---|---|---|---|---|---|"]
    for n, r in res["rows"].items():
        t = r["test"]
        rd = t["readability"]
        lines.append(f"| {n} | {100 * rd['seen']['readable']:.1f} | {100 * rd['seen']['specific']:.1f} | "
                     f"{100 * rd['cross-style']['specific']:.1f} | {100 * rd['unseen']['readable']:.1f} | "
                     f"{t['sparse_R@1']:.1f} | {t['dense_R@1']:.1f} | {t['sparse_R@1'] - t['dense_R@1']:+.1f} | "
                     f"{t['flops']:.2f} |")
    for base, summ in res.get("seed_summary", {}).items():
        lines += ["", f"{base} over seeds {summ['seeds']} (mean ± std; each seed's value in brackets)",
                  "| split | sparse R@1 | dense R@1 | sparse - dense | FLOPs |", "|---|---|---|---|---|"]
        lines += [f"| {split} | " + " | ".join(_seed_cell(summ[split][k], k) for k in ("sparse_R@1", "dense_R@1", "gap",
                                                                                   "flops")) + " |"
                  for split in ("val", "test")]
    chosen = res["rows"].get(res.get("chosen"), {}).get("pinned")
    if chosen:
        lines += ["", f"the chosen model's top terms of the pinned images ({res['chosen']}):"]
        lines += [f"- {n} ({p['split']}): {', '.join(p['terms'])}" for n, p in chosen.items()]
    return "\n".join(lines)


def _seed_cell(c: dict, key: str) -> str:
    fmt = {"gap": "+.1f", "flops": ".2f"}.get(key, ".1f")
    return (f"{c['mean']:{fmt}} ± {c['std']:{fmt.lstrip('+')}} ("
            + ", ".join(f"{v:{fmt}}" for v in c["values"]) + ")")


def standin_metrics(ckpt: Path, threads: int) -> dict:
    """The stand-in's own t2i R@1 per subset of the val and test splits (:mod:`jsdlib.vlp.standin_eval`)."""
    from jsdlib.vlp.standin_eval import standin_subset_metrics
    res = {s: standin_subset_metrics(ckpt, s, threads=threads) for s in ("val", "test")}
    for s, rows in res.items():
        print(f"stand-in t2i R@1 ({s}): " + ", ".join(f"{g} {r['R@1']:.1f}" for g, r in rows.items()))
    return res


def merge_base(path: Path, standin: dict) -> dict:
    """An earlier ``--json`` whose rows may be kept: only if it was measured on a stand-in with the same t2i
    metrics per subset as this one (the checkpoint's digest covers its metadata, timings included)."""
    import json
    old = json.loads(Path(path).read_text())
    if old.get("standin_subsets") != standin:
        raise SystemExit(f"--merge {path}: its stand-in's t2i metrics differ from this stand-in's; "
                         f"recorded {old.get('standin_subsets')}, now {standin}")
    return old


def seed_rows(paths, digest) -> dict:
    """The rows of ``--json`` files written by runs with ``--seed N`` (N > 0), named ``NAME-seedN``; refused unless
    each ran on the stand-in with ``digest`` (the merged file's)."""
    import json

    from jsdlib.experiments.grounding import seed_row_name, split_seed
    rows = {}
    for p in paths:
        doc = json.loads(Path(p).read_text())
        if doc.get("seed", 0) == 0:
            raise SystemExit(f"--seed-runs {p}: a seed-0 run; its rows belong in the merged file itself")
        if doc.get("standin_digest") != digest:
            raise SystemExit(f"--seed-runs {p}: trained on another stand-in (digest {doc.get('standin_digest')}, "
                             f"the merged file's {digest})")
        # runs since 2026-12-04 name their rows NAME-seedN themselves; earlier files hold the bare NAME
        rows.update({seed_row_name(split_seed(n)[0], doc["seed"]): r for n, r in doc["rows"].items()})
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--standin", type=Path, default=None, help="stand-in checkpoint (default: the committed one)")
    ap.add_argument("--only", nargs="+", default=None, help="train only these candidates (no choice)")
    ap.add_argument("--run-root", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--merge", type=Path, default=None,
                    help="keep this earlier --json's rows (same stand-in) and train only the candidates it lacks")
    ap.add_argument("--standin-metrics", action="store_true",
                    help="also record the stand-in's own t2i R@1 per subset (val and test; jsdlib.vlp.standin_eval)")
    ap.add_argument("--seed-runs", type=Path, nargs="+", default=[],
                    help="with --merge: --json files of runs with another --seed; their rows join as NAME-seedN "
                         "(trains only --only's candidates)")
    args = ap.parse_args(argv)
    if args.seed_runs and not args.merge:
        ap.error("--seed-runs needs --merge (the file whose rows they join)")
    torch.set_num_threads(args.threads)
    from jsdlib.common.integrity import safetensors_digest
    from jsdlib.common.io import write_json
    from jsdlib.experiments.grounding import (TRAIN_SET, candidates, choose, grounding, seed_row_name,
                                              seed_summary)
    from jsdlib.jsd.features import emoji_features
    from jsdlib.jsd.presets import get_preset
    from jsdlib.vlp.standin import DEFAULT_STANDIN_CHECKPOINT

    ckpt = args.standin or DEFAULT_STANDIN_CHECKPOINT
    root = args.run_root or Path(".cache/grounding") / safetensors_digest(ckpt)[:12]
    start = time.perf_counter()
    standin = standin_metrics(ckpt, args.threads) if (args.standin_metrics or args.merge) else None
    cfg = get_preset("cpu-emoji", seed=args.seed, pec=True, threads=args.threads)
    old = merge_base(args.merge, standin) if args.merge else {"rows": {}}
    extra = seed_rows(args.seed_runs, old.get("standin_digest"))
    # --seed-runs only joins rows: it trains nothing unless --only names candidates
    names = args.only or ([] if args.seed_runs else
                          [n for n in candidates(cfg) if seed_row_name(n, args.seed) not in old["rows"]])
    if names:
        fs = emoji_features(ckpt, progress=True)
        styles = any(candidates(cfg)[n].get(TRAIN_SET) == "styles" for n in names)
        styles_fs = emoji_features(ckpt, progress=True, train_set="styles") if styles else None
        res = grounding(fs, cfg, names, run_root=root, progress=True, styles_fs=styles_fs)
        res["rows"] = {seed_row_name(n, args.seed): r for n, r in res["rows"].items()}
    else:
        res = {"rows": {}, "seed": args.seed}
    if args.merge:
        rows = {**old["rows"], **extra, **res["rows"]}
        kept = [n for n in old["rows"] if n not in res["rows"]]
        res.update({k: old[k] for k in ("k", "flops_max", "r1_slack", "preset") if k in old})
        res.update(rows=rows, **choose(rows), merged={"file": str(args.merge), "kept_rows": kept,
                                                      "seed_runs": [str(p) for p in args.seed_runs]})
    summary = seed_summary(res["rows"])
    if summary:
        res["seed_summary"] = summary
    res["standin"], res["standin_digest"] = str(ckpt), safetensors_digest(ckpt)
    if standin is not None:
        res["standin_subsets"] = standin
    res["seconds"] = round(time.perf_counter() - start, 1)
    print(table(res))
    if args.json:
        write_json(res, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
