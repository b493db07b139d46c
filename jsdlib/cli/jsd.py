"""``jsdlib jsd compare|sweep|export``: the JSD table over seeds, the L1 trade-off, the bundled JSD model."""
from __future__ import annotations

from jsdlib.apps.bundled import train_bundled_jsd
from jsdlib.apps.viz import r1_vs_flops, save_figure
from jsdlib.cli.options import command, group, log_of, write_results
from jsdlib.common.cliargs import UserError, check_output, positive_float, positive_int
from jsdlib.common.metrics import format_table
from jsdlib.experiments.jsd_compare import SWEEP_METHODS, compare, l1_sweep, summary_rows
from jsdlib.jsd.features import emoji_features
from jsdlib.jsd.methods import METHODS
from jsdlib.jsd.presets import VOCAB_MASKS, get_preset

VOCAB_MASK_HELP = ("mask non-word terms in the sparse head: words (punctuation, symbols, word pieces, digits, special "
                   "tokens) or content (also stop words and words under 3 letters); default: the preset's (none)")


def cmd_jsd_compare(args) -> int:
    check_output(args.json, "file", "--json")
    check_output(args.run_root, "folder", "--run-root")
    overrides = {k: v for k, v in {"epochs": args.epochs, "vocab_mask": args.vocab_mask}.items() if v is not None}
    cfg = get_preset(args.preset, **overrides)
    if not args.preset.startswith("cpu"):
        raise UserError(f"preset {args.preset!r} runs on the paper's features (BLIP/ALBEF on COCO/Flickr30k); "
                        "load them with jsdlib.data.released.load_released_features and call "
                        "jsdlib.experiments.jsd_compare.compare. "
                        "`jsdlib jsd compare` runs the CPU preset on the bundled emoji set.")
    names = args.methods or list(METHODS)
    fs = emoji_features(progress=not args.quiet)
    res = compare(fs, cfg, args.seeds, names, run_root=args.run_root, progress=not args.quiet, log=log_of(args))
    print(f"JSD comparison, preset {cfg.name}, seeds {args.seeds}: text->image on the emoji test split "
          f"({res['data']['n_images']} images, {res['data']['n_captions']} captions); mean ± std over seeds; "
          "p: paired t-test on per-query RR@10, pooled over seeds")
    print(format_table(summary_rows(res)))
    write_results(res, args.json)
    return 0


def cmd_jsd_export(args) -> int:
    check_output(args.out, "file", "--out")
    check_output(args.run_dir, "folder", "--run-dir")
    given = {"vocab_mask": args.vocab_mask, "caption_words_weight": args.caption_words, "epochs": args.epochs,
             "patience": args.patience, "train_set": args.train_set}
    train_bundled_jsd(args.out, preset=args.preset, seed=args.seed, pec=args.pec, run_dir=args.run_dir,
                      progress=not args.quiet, standin=args.standin,
                      **{k: v for k, v in given.items() if v is not None})
    return 0


def cmd_jsd_sweep(args) -> int:
    check_output(args.json, "file", "--json")
    check_output(args.png, "file", "--png")
    check_output(args.run_root, "folder", "--run-root")
    cfg = get_preset(args.preset, **{k: v for k, v in {"epochs": args.epochs, "vocab_mask": args.vocab_mask}.items()
                                     if v is not None})
    fs = emoji_features(progress=not args.quiet)
    rows = []
    for method in args.methods:
        pecs = [True] if (args.pec_only and method == "d2s") else [False, True] if (args.pec and method == "d2s") \
            else [False]
        for pec in pecs:
            rows += l1_sweep(fs, cfg.replace(pec=pec), method, args.scales, seed=args.seed, run_root=args.run_root,
                             log=log_of(args))
    table = {f"{r['method']}{' +PEC' if r['pec'] else ''} L1 x{r['scale']:g}":
             {k: r[k] for k in ("val_R@1", "val_flops", "test_R@1", "test_flops", "test_terms_q", "test_terms_d")}
             for r in rows}
    print(format_table(table, name_header="run", digits=2))
    write_results({"rows": rows, "preset": cfg.name, "seed": args.seed}, args.json)
    if args.png:
        save_figure(r1_vs_flops(rows), args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


def add(sub) -> None:
    j = group(sub, "jsd", "JSD and its baselines")
    c = command(j, "compare", "every method of the JSD table over several seeds, with paired tests", cmd_jsd_compare,
                shared=("seeds", "run_root", "json", "threads", "quiet"))
    c.add_argument("--preset", default="cpu-emoji")
    c.add_argument("--methods", nargs="+", help="subset of the methods (default: the table's rows, "
                   "jsdlib.jsd.methods.METHODS; extra named rows: jsdlib.jsd.methods.EXTRA_METHODS)")
    c.add_argument("--epochs", type=positive_int, help="override the preset's maximum epochs")
    c.add_argument("--vocab-mask", choices=VOCAB_MASKS, help=VOCAB_MASK_HELP)
    w = command(j, "sweep", "R@1 vs FLOPs as the L1 weights change (the paper's Figure 2)", cmd_jsd_sweep,
                shared=("seed", "run_root", "json", "threads", "quiet"))
    w.add_argument("--preset", default="cpu-emoji")
    w.add_argument("--methods", nargs="+", default=["jsd", "d2s"], choices=list(SWEEP_METHODS),
                   help="d2s_own: D2S in its own recipe (jsdlib.jsd.presets.D2SRecipe)")
    w.add_argument("--scales", type=positive_float, nargs="+", default=[0.3, 1.0, 3.0, 10.0],
                   help="multipliers of the preset's L1 weights (eta_t, eta_i)")
    w.add_argument("--pec", action="store_true", help="also run D2S with probabilistic expansion control")
    w.add_argument("--pec-only", action="store_true",
                   help="run D2S with probabilistic expansion control only (not plain D2S again)")
    w.add_argument("--epochs", type=positive_int)
    w.add_argument("--vocab-mask", choices=VOCAB_MASKS, help=VOCAB_MASK_HELP)
    w.add_argument("--png", help="save the R@1-vs-FLOPs plot here")
    x = command(j, "export", "train the bundled JSD model (cpu-emoji and jsdlib.apps.bundled.BUNDLED_RECIPE, "
                             "seed 0) and write its checkpoint",
                cmd_jsd_export, shared=("seed", "threads", "quiet"))
    x.add_argument("--out", default=None, help="default: jsdlib/assets/jsd_cpu_emoji.safetensors (the committed one)")
    x.add_argument("--preset", default="cpu-emoji")
    pec = x.add_mutually_exclusive_group()
    pec.add_argument("--pec", dest="pec", action="store_const", const=True, default=None,
                     help="train with probabilistic expansion control (the bundled recipe: without; notebook 03)")
    pec.add_argument("--no-pec", dest="pec", action="store_const", const=False,
                     help="train without probabilistic expansion control (the bundled recipe's setting)")
    x.add_argument("--run-dir", help="resumable run folder")
    x.add_argument("--vocab-mask", choices=VOCAB_MASKS, help="mask non-word terms in the sparse head: none, words "
                   "(punctuation, symbols, word pieces, digits, special tokens; the bundled recipe's) or content")
    x.add_argument("--caption-words", type=float, default=None, metavar="WEIGHT",
                   help="weight of the caption-word loss (jsdlib.jsd.caption_words; the bundled recipe's: 1, 0: off)")
    x.add_argument("--train-set", choices=("noto", "styles"), default=None,
                   help="train on every training style's images (the bundled recipe's) or the Noto training split")
    x.add_argument("--standin", default=None, help="stand-in VLP checkpoint (default: the committed one)")
    x.add_argument("--epochs", type=positive_int, default=None, help="default: the bundled recipe's, 160")
    x.add_argument("--patience", type=positive_int, default=None,
                   help="early-stopping patience in epochs (default: the bundled recipe's, 40)")
