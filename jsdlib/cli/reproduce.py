"""``jsdlib reproduce --out DIR``: every experiment of the course in one resumable run -> DIR/report.md, results.json."""
from __future__ import annotations

from pathlib import Path

import os

from jsdlib.cli.options import command
from jsdlib.common.cliargs import UserError, check_output, positive_int
from jsdlib.experiments.reproduce import CPU_STEPS, OPT_IN_STEPS, PAPER_DATA, check_paper_data, check_paper_inputs, run
from jsdlib.vlp.train_standin import COMMITTED_STANDIN, StandinConfig, train_standin


def cmd_reproduce(args) -> int:
    check_output(args.out, "folder", "--out")
    if args.preset != "cpu":  # the paper presets' inputs, before anything is loaded
        check_paper_data(args.preset, args.data)
        check_paper_inputs(args.projection, args.word_embeddings, args.random_projection)
    elif args.random_projection:
        raise UserError("--random-projection belongs to the paper presets")
    standin = None
    if args.retrain_standin:
        if args.preset != "cpu":
            raise UserError("--retrain-standin belongs to the cpu preset")
        standin = Path(args.out) / "standin_styles.safetensors"
        if not standin.is_file():
            train_standin(StandinConfig(**COMMITTED_STANDIN), out=standin, run_dir=Path(args.out) / "runs" / "standin",
                          progress=not args.quiet)
    run(args.out, preset=args.preset, only=args.only, seeds=args.seeds, data_dir=args.data, standin=standin,
        projection=args.projection, word_embeddings=args.word_embeddings, progress=not args.quiet,
        random_projection=args.random_projection, workers=args.workers)
    return 0


def default_workers() -> int:
    """Two lanes where there are at least two cores (jsdlib.experiments.lanes), else one."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1


def add(sub) -> None:
    rp = command(sub, "reproduce", "the headless main job: every experiment of the course, resumable, into "
                                   "OUT/report.md and OUT/results.json", cmd_reproduce,
                 shared=("seeds", "threads", "quiet"))
    rp.add_argument("--preset", default="cpu", choices=["cpu", *PAPER_DATA])
    rp.add_argument("--out", default="results", help="output folder (a second run reuses finished steps)")
    rp.add_argument("--only", nargs="+", help=f"run only these steps (cpu: {' '.join(CPU_STEPS)}; opt-in, run only when named: "
                                              f"{' '.join(OPT_IN_STEPS)})")
    rp.add_argument("--workers", type=positive_int, default=default_workers(),
                    help="cpu preset: run the training steps in this many parallel lanes, each with its share of "
                         "--threads (default: 2 where there are 2+ cores; 1 = one step after the other)")
    rp.add_argument("--retrain-standin", action="store_true", help="retrain the stand-in VLP instead of loading "
                                                                   "the committed checkpoint (~50 min on 2 cores)")
    rp.add_argument("--data", help="paper presets: folder with the released features and Karpathy JSON")
    rp.add_argument("--projection", help="paper presets: the VLP's final projection weights (W_t, b_t, W_v, b_v)")
    rp.add_argument("--word-embeddings", help="paper presets: the text tower's word embeddings (|V| x e)")
    rp.add_argument("--random-projection", action="store_true",
                    help="paper presets without --projection: start the dense branch from a RANDOM projection "
                         "(recorded in results.json; 'dense original' is then meaningless)")
