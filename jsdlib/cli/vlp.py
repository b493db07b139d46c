"""``jsdlib vlp train-standin``: (re)train the stand-in VLP (MiniLM + small ViT); defaults: the committed stand-in's
configuration (``jsdlib.vlp.train_standin.COMMITTED_STANDIN``: every training style of the multi-style emoji set)."""
from __future__ import annotations

from jsdlib.cli.options import command, group
from jsdlib.common.cliargs import check_output, positive_float, positive_int
from jsdlib.vlp.train_standin import COMMITTED_STANDIN, StandinConfig, train_standin


def cmd_train_standin(args) -> int:
    check_output(args.out, "file", "--out")
    check_output(args.run_dir, "folder", "--run-dir")
    given = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr, "threads": args.threads,
             "train_set": args.train_set, "patch_size": args.patch_size, "width": args.width, "layers": args.layers,
             "min_scale": args.min_scale, "max_shift": args.max_shift}
    cfg = StandinConfig(seed=args.seed, **COMMITTED_STANDIN | {k: v for k, v in given.items() if v is not None})
    result = train_standin(cfg, out=args.out, run_dir=args.run_dir, resume=not args.no_resume,
                           progress=not args.quiet)
    best = result["best"]
    print(f"best epoch {best['epoch']}: val t2i R@1 {best['val']['R@1']:.2f}  -> {result['out']}")
    return 0


def add(sub) -> None:
    v = group(sub, "vlp", "vision-language models")
    t = command(v, "train-standin", "train the stand-in VLP (MiniLM + small ViT) on the emoji train split",
                cmd_train_standin, shared=("seed", "threads", "quiet"))
    t.add_argument("--out", help="checkpoint to write (default: the package's committed checkpoint)")
    t.add_argument("--run-dir", help="resumable state (default: under the jsdlib cache)")
    t.add_argument("--epochs", type=positive_int, default=None, help="default 30 (the committed stand-in's)")
    t.add_argument("--batch-size", type=positive_int, default=None)
    t.add_argument("--lr", type=positive_float, default=None)
    t.add_argument("--train-set", choices=("noto", "styles"), default=None,
                   help="styles (default): every training style of data/emoji_styles (Noto, Twemoji, Fluent flat/modern); "
                        "noto: the bundled Noto train split; both validate on the Noto val split")
    t.add_argument("--patch-size", type=positive_int, default=None, help="ViT patch size (default 16; 64 px images)")
    t.add_argument("--width", type=positive_int, default=None, help="ViT width (default 192)")
    t.add_argument("--layers", type=positive_int, default=None, help="ViT depth (default 8, the committed stand-in's)")
    t.add_argument("--min-scale", type=positive_float, default=None,
                   help="augmentation: smallest crop area kept (default 0.7)")
    t.add_argument("--max-shift", type=float, default=None, help="augmentation: largest shift, image fraction (0.1)")
    t.add_argument("--no-resume", action="store_true", help="start from scratch even if a run state exists")
