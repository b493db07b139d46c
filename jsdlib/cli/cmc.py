"""``jsdlib cmc compare|sweep|export``: the CMC pipelines over seeds, validation sweeps, the bundled WordNet CMC head."""
from __future__ import annotations

from jsdlib.cli.options import command, group, log_of, write_results
from jsdlib.cmc.pipelines import EXTRA_PIPELINES, PIPELINES, summary_table
from jsdlib.cmc.tasks import TASKS
from jsdlib.cmc.config import INPUT_SCALES, TASK_PRESETS
from jsdlib.experiments.cmc_compare import compare, export_wordnet_head, reranker_sweep, validation_sweep
from jsdlib.common.cliargs import check_output, nonneg_int, positive_int
from jsdlib.common.metrics import format_table


def cmd_cmc_compare(args) -> int:
    check_output(args.json, "file", "--json")
    check_output(args.run_root, "folder", "--run-root")
    res = compare(args.task, args.seeds, preset=args.preset or TASK_PRESETS[args.task], run_root=args.run_root,
                  names=_names(args),
                  n_eval=None if args.n_eval == 0 else (args.n_eval if args.n_eval is not None else -1),
                  progress=not args.quiet, log=log_of(args),
                  reranker_overrides=_extra_lr(args.extra_lr), k_extra=args.k_extra,
                  train_folds=args.crossfit)
    print(f"CMC pipelines on {args.task} ({res['data']}): {res['n_test_queries']} of {res['n_test_total']} test "
          f"queries, K = {res['k']}, K' (CE) = {res['k_ce']}, CMC encoders {res['variant']} (preset "
          f"{res['preset']['name']}); mean ± std over seeds {res['seeds']}; accuracies macro over domains")
    print(format_table(summary_table(res), name_header="pipeline"))
    write_results(res, args.json)
    return 0


def _extra_lr(values) -> dict | None:
    """``--extra-lr``: one lr for every comparison reranker (``1e-3``) or one per kind (``poly=1e-3
    sum_of_max=3e-4``, as ``jsdlib cmc sweep --rerankers`` chose them on validation)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        return {"lr": float(values[0])}
    out = {}
    for v in values:
        kind, eq, lr = v.partition("=")
        if not eq or kind not in EXTRA_PIPELINES.values():
            raise SystemExit(f"--extra-lr: give one lr, or KIND=LR for each of {sorted(EXTRA_PIPELINES.values())}; "
                             f"got {v!r}")
        out[kind] = {"lr": float(lr)}
    return out


def _names(args) -> tuple | None:
    """The pipelines to run: the task's default (or every one with ``--with-ce``), plus ``--extra`` ones."""
    if not args.extra:
        return PIPELINES if args.with_ce else None
    return tuple(PIPELINES if args.with_ce else TASKS[args.task].get("names", PIPELINES)) + tuple(args.extra)


def cmd_cmc_sweep(args) -> int:
    check_output(args.json, "file", "--json")
    if args.rerankers:
        res = reranker_sweep(args.task, args.rerankers, args.lrs, preset=args.preset, seed=args.seed,
                             progress=not args.quiet, log=log_of(args))
        rows = {f"{r['kind']} lr {r['lr']:g}": {"val acc": r["val_acc"], "best epoch": r["best_epoch"],
                                                "per epoch": " ".join(f"{v:.1f}" for v in r["history"]),
                                                "train s": round(r["train_time_s"])} for r in res["rows"]}
        print(f"comparison rerankers' validation accuracy on {args.task} (preset {args.preset}, seed {args.seed}, "
              f"{res['n_val_queries']} val queries, selection {res['select_on']}):")
        print(format_table(rows, name_header="reranker, lr", digits=2))
        write_results(res, args.json)
        return 0
    res = validation_sweep(args.task, args.lrs, args.input_scales, preset=args.preset, seed=args.seed,
                           progress=not args.quiet, log=log_of(args))
    rows = {f"{r['input_scale']} lr {r['lr']:g}": {"val acc": r["val_acc"], "best epoch": r["best_epoch"],
                                                   "per epoch": " ".join(f"{v:.1f}" for v in r["history"])}
            for r in res["rows"]}
    print(f"CMC validation accuracy on {args.task} (preset {args.preset}, seed {args.seed}, "
          f"{res['n_val_queries']} val queries, selection {res['select_on']}):")
    print(format_table(rows, name_header="input scale, lr", digits=2))
    write_results(res, args.json)
    return 0


def cmd_cmc_export(args) -> int:
    check_output(args.out, "file", "--out")
    export_wordnet_head(args.out, preset=args.preset, seed=args.seed, progress=not args.quiet)
    return 0


def add(sub) -> None:
    cm = group(sub, "cmc", "the CMC reranker and its pipelines")
    cc = command(cm, "compare", "BE, BE-CE, BE-CMC, BE-CMC-CE and CMC-final over several seeds", cmd_cmc_compare,
                 shared=("seeds", "run_root", "json", "threads", "quiet"))
    cc.add_argument("--task", required=True, choices=["wordnet", "emoji"])
    cc.add_argument("--preset", default=None, help="CMC training preset (jsdlib.cmc.config.PRESETS; default: the "
                    "main job's for the task, jsdlib.cmc.config.TASK_PRESETS)")
    cc.add_argument("--n-eval", type=nonneg_int, default=None,
                    help="test queries to evaluate (default: the task's documented subset; 0 = all)")
    cc.add_argument("--with-ce", action="store_true",
                    help="run every pipeline, the cross-encoder ones included (emoji leaves them out by default: "
                         "no image CE trainable on a CPU reranks above chance; see jsdlib.cmc.tasks.TASKS)")
    cc.add_argument("--crossfit", type=positive_int, default=None, metavar="K",
                    help="emoji: CMC's training lists from K JSD models, each ranking captions it never saw "
                         "(default: the bundled model's own lists)")
    cc.add_argument("--extra", nargs="+", default=[], choices=sorted(EXTRA_PIPELINES),
                    help="add the reranker comparison rows (poly-encoder, sum-of-max; trained per seed as CMC is)")
    cc.add_argument("--extra-lr", nargs="+", default=None, metavar="LR|KIND=LR",
                    help="learning rate of the --extra rerankers: one for all, or poly=LR sum_of_max=LR (default: "
                         "the CMC preset's; choose it on validation with `jsdlib cmc sweep --rerankers`)")
    cc.add_argument("--k-extra", type=int, default=None,
                    help="candidates the --extra rerankers rerank (default: the task's K, as BE-CMC)")
    sw = command(cm, "sweep", "CMC's validation accuracy over learning rates and input scales (validation only)",
                 cmd_cmc_sweep, shared=("seed", "json", "threads", "quiet"))
    sw.add_argument("--task", required=True, choices=["wordnet", "emoji"])
    sw.add_argument("--preset", default="cpu-frozen", help="CMC training preset (jsdlib.cmc.config.PRESETS)")
    sw.add_argument("--lrs", type=float, nargs="+", required=True, help="learning rates to try")
    sw.add_argument("--input-scales", nargs="+", default=["unit"], choices=list(INPUT_SCALES),
                    help="CMC's input vectors: unit (as the retriever gives them) or layernorm (norm sqrt(d))")
    sw.add_argument("--rerankers", nargs="+", default=[], choices=sorted(EXTRA_PIPELINES.values()),
                    help="sweep these comparison rerankers' learning rate instead of CMC's (poly-encoder, "
                         "sum-of-max; --input-scales does not apply)")
    ce = command(cm, "export", "train the frozen-encoder CMC head for WordNet and write its checkpoint",
                 cmd_cmc_export, shared=("seed", "threads", "quiet"))
    ce.add_argument("--out", default=None, help="default: jsdlib/assets/cmc_wordnet.safetensors (the committed one)")
    ce.add_argument("--preset", default="cpu-frozen")
