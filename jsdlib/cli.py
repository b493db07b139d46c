"""``jsdlib`` command line: data building, stand-in training, evaluation (the headless main job).

    jsdlib data build-emoji            build the bundled emoji set from Debian packages
    jsdlib vlp train-standin           (re)train the stand-in VLP, resumable
    jsdlib eval dense                  dense text->image / image->text retrieval on a Karpathy-format split
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def _set_threads(n: int | None) -> None:
    import torch

    torch.set_num_threads(n or min(2, os.cpu_count() or 1))


def cmd_train_standin(args) -> int:
    from .standin import StandinConfig, train_standin

    _set_threads(args.threads)
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads}
    cfg = StandinConfig(seed=args.seed, **{k: v for k, v in given.items() if v is not None})
    result = train_standin(cfg, out=args.out, run_dir=args.run_dir, resume=not args.no_resume,
                           progress=not args.quiet)
    best = result["best"]
    print(f"best epoch {best['epoch']}: val t2i R@1 {best['val']['R@1']:.2f}  -> {result['out']}")
    return 0


def load_split(args):
    """The split named by ``--dataset/--images/--split`` (default: the bundled emoji set)."""
    from .data import load_emoji, load_karpathy

    if args.dataset:
        if not args.images:
            raise SystemExit("--dataset needs --images (the folder the JSON's filenames are relative to)")
        return load_karpathy(args.dataset, args.images, args.split)
    return load_emoji(args.split)


def cmd_eval_dense(args) -> int:
    from .metrics import evaluate_split, format_table, report_rows
    from .vlp import cached_features, encode_split, load_vlp

    _set_threads(args.threads)
    split = load_split(args)
    vlp = load_vlp(args.model, args.pretrained)
    progress = not args.quiet
    feats = (encode_split(vlp, split, batch_size=args.batch_size, progress=progress) if args.no_cache
             else cached_features(vlp, split, batch_size=args.batch_size, progress=progress))
    res = evaluate_split(feats.dense_scores().numpy(), split.caption_to_image, split.image_to_captions,
                         split.image_meta)
    res.update({"model": vlp.name, "weights": vlp.weights, "dataset": split.dataset, "split": split.split})
    rows = report_rows(res)
    print(f"dense retrieval: {vlp.name} ({vlp.weights}) on {split.dataset}/{split.split}: "
          f"{res['n_images']} images, {res['n_captions']} captions (recalls in %)")
    print(format_table(rows, name_header="queries", digits=2))
    if "unseen_concept" in res:
        u = res["unseen_concept"]
        print(f"unseen-concept queries: {u['n_captions']} captions of {u['n_images']} test images whose base "
              f"emoji has no variant in train, ranked against the full test corpus")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1))
        print(f"wrote {args.json}")
    return 0


def cmd_jsd_compare(args) -> int:
    from .experiments import compare, emoji_features, summary_rows, write_json
    from .jsd import METHODS
    from .metrics import format_table
    from .presets import get_preset

    _set_threads(args.threads)
    overrides = {k: v for k, v in {"epochs": args.epochs}.items() if v is not None}
    cfg = get_preset(args.preset, **overrides)
    if not args.preset.startswith("cpu"):
        raise SystemExit(f"preset {args.preset!r} runs on the paper's features (BLIP/ALBEF on COCO/Flickr30k); "
                         "load them with jsdlib.presets.load_released_features and call jsdlib.experiments.compare. "
                         "`jsdlib jsd compare` runs the CPU preset on the bundled emoji set.")
    names = args.methods or list(METHODS)
    fs = emoji_features(progress=not args.quiet)
    res = compare(fs, cfg, args.seeds, names, run_root=args.run_root, progress=not args.quiet,
                  log=(lambda *a: None) if args.quiet else print)
    print(f"JSD comparison, preset {cfg.name}, seeds {args.seeds}: text->image on the emoji test split "
          f"({res['data']['n_images']} images, {res['data']['n_captions']} captions); mean ± std over seeds; "
          "p: paired t-test on per-query RR@10, pooled over seeds")
    print(format_table(summary_rows(res)))
    if args.json:
        write_json(res, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_jsd_sweep(args) -> int:
    from .experiments import emoji_features, l1_sweep, write_json
    from .metrics import format_table
    from .presets import get_preset

    _set_threads(args.threads)
    cfg = get_preset(args.preset, **({"epochs": args.epochs} if args.epochs else {}))
    fs = emoji_features(progress=not args.quiet)
    log = (lambda *a: None) if args.quiet else print
    rows = []
    for method in args.methods:
        for pec in ([False, True] if (args.pec and method == "d2s") else [False]):
            rows += l1_sweep(fs, cfg.replace(pec=pec), method, args.scales, seed=args.seed, run_root=args.run_root,
                             log=log)
    table = {f"{r['method']}{' +PEC' if r['pec'] else ''} L1 x{r['scale']:g}":
             {k: r[k] for k in ("val_R@1", "val_flops", "test_R@1", "test_flops", "test_terms_q", "test_terms_d")}
             for r in rows}
    print(format_table(table, name_header="run", digits=2))
    if args.json:
        write_json({"rows": rows, "preset": cfg.name, "seed": args.seed}, args.json)
        print(f"wrote {args.json}")
    if args.png:
        from .viz import r1_vs_flops

        r1_vs_flops(rows).savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jsdlib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="group", required=True)

    data = sub.add_parser("data", help="bundled data sets").add_subparsers(dest="cmd", required=True)
    b = data.add_parser("build-emoji", add_help=False,
                        help="build data/emoji from Debian's Noto Color Emoji and CLDR packages (--help: options)")
    b.add_argument("options", nargs=argparse.REMAINDER)

    v = sub.add_parser("vlp", help="vision-language models").add_subparsers(dest="cmd", required=True)
    t = v.add_parser("train-standin", help="train the stand-in VLP (MiniLM + small ViT) on the emoji train split")
    t.add_argument("--out", help="checkpoint to write (default: the package's committed checkpoint)")
    t.add_argument("--run-dir", help="resumable state (default: under the jsdlib cache)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--batch-size", type=int, default=None)
    t.add_argument("--lr", type=float, default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=None)
    t.add_argument("--no-resume", action="store_true", help="start from scratch even if a run state exists")
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train_standin)

    e = sub.add_parser("eval", help="evaluation").add_subparsers(dest="cmd", required=True)
    d = e.add_parser("dense", help="dense retrieval metrics of a VLP on a Karpathy-format split")
    d.add_argument("--model", default="standin", help="'standin' or an open_clip architecture name")
    d.add_argument("--pretrained", help="open_clip tag or checkpoint file (stand-in: its checkpoint)")
    d.add_argument("--dataset", help="Karpathy-format JSON (default: the bundled emoji set)")
    d.add_argument("--images", help="image folder of --dataset")
    d.add_argument("--split", default="test", choices=["train", "val", "test"])
    d.add_argument("--json", help="write the metrics as JSON here")
    d.add_argument("--batch-size", type=int, default=128)
    d.add_argument("--threads", type=int, default=None)
    d.add_argument("--no-cache", action="store_true", help="encode without reading/writing the feature cache")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_eval_dense)
    j = sub.add_parser("jsd", help="JSD and its baselines").add_subparsers(dest="cmd", required=True)
    c = j.add_parser("compare", help="every method of the JSD table over several seeds, with paired tests")
    c.add_argument("--preset", default="cpu-emoji")
    c.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    c.add_argument("--methods", nargs="+", help="subset of the methods (default: all)")
    c.add_argument("--epochs", type=int, help="override the preset's maximum epochs")
    c.add_argument("--run-root", help="resumable per-method run folders (default: none)")
    c.add_argument("--json", help="write the results here")
    c.add_argument("--threads", type=int, default=None)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_jsd_compare)
    w = j.add_parser("sweep", help="R@1 vs FLOPs as the L1 weights change (the paper's Figure 2)")
    w.add_argument("--preset", default="cpu-emoji")
    w.add_argument("--methods", nargs="+", default=["jsd", "d2s"], choices=["jsd", "d2s"])
    w.add_argument("--scales", type=float, nargs="+", default=[0.3, 1.0, 3.0, 10.0],
                   help="multipliers of the preset's L1 weights (eta_t, eta_i)")
    w.add_argument("--pec", action="store_true", help="also run D2S with probabilistic expansion control")
    w.add_argument("--seed", type=int, default=0)
    w.add_argument("--epochs", type=int)
    w.add_argument("--run-root", help="resumable run folders")
    w.add_argument("--json")
    w.add_argument("--png", help="save the R@1-vs-FLOPs plot here")
    w.add_argument("--threads", type=int, default=None)
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=cmd_jsd_sweep)
    return p


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["data", "build-emoji"]:  # its own parser (python -m jsdlib.emoji_build), options passed through
        from .emoji_build import main as build_main

        return build_main(argv[2:])
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
