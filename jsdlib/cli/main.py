"""``jsdlib`` command line: data building, stand-in training, evaluation (the headless main job).

    jsdlib data build-emoji            build the bundled emoji set from Debian packages
    jsdlib data build-wordnet          build the bundled WordNet sense-linking set (ZeSHEL format) from wordnet-base
    jsdlib vlp train-standin           (re)train the stand-in VLP, resumable
    jsdlib eval dense                  dense text->image / image->text retrieval on a Karpathy-format split
    jsdlib cmc compare --task T        the CMC pipelines (BE, BE-CE, BE-CMC, BE-CMC-CE, CMC final) over seeds
    jsdlib terms --image ID --k 20     the top-k vocabulary terms of an emoji image under the bundled JSD model
    jsdlib index build|search          exact / faiss / Seismic / Milvus search over the emoji images
    jsdlib jsd compare|sweep|export    the JSD table over seeds, the L1 trade-off, the bundled JSD model
    jsdlib reproduce --out DIR         everything above in one resumable run -> DIR/report.md, DIR/results.json

Errors: a user error (a missing or corrupted file, a bad argument) prints one line ``jsdlib: <message>`` and exits
with code 2; any other failure prints one line and exits with code 1. ``JSDLIB_DEBUG=1`` shows the traceback.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


from jsdlib.common.cliargs import (OneLineParser, UserError, check_output, nonneg_int, positive_float,
                                    positive_int)


def _set_threads(n: int | None) -> None:
    import torch

    torch.set_num_threads(n or min(2, os.cpu_count() or 1))


def cmd_train_standin(args) -> int:
    from jsdlib.vlp.standin import StandinConfig, train_standin

    check_output(args.out, "file", "--out")
    check_output(args.run_dir, "folder", "--run-dir")

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
    from jsdlib.data.datasets import load_emoji, load_karpathy

    if args.dataset:
        if not args.images:
            raise UserError("--dataset needs --images (the folder the JSON's filenames are relative to)")
        return load_karpathy(args.dataset, args.images, args.split)
    return load_emoji(args.split)


def cmd_eval_dense(args) -> int:
    from jsdlib.common.metrics import evaluate_split, format_table, report_rows
    from jsdlib.vlp.models import PretrainedUnavailableError, cached_features, encode_split, load_vlp

    check_output(args.json, "file", "--json")
    _set_threads(args.threads)
    split = load_split(args)
    try:
        vlp = load_vlp(args.model, args.pretrained)
    except PretrainedUnavailableError as e:
        raise UserError(str(e)) from e
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
    from jsdlib.experiments.jsd_compare import compare, emoji_features, summary_rows, write_json
    from jsdlib.jsd.core import METHODS
    from jsdlib.common.metrics import format_table
    from jsdlib.jsd.presets import get_preset

    check_output(args.json, "file", "--json")
    check_output(args.run_root, "folder", "--run-root")
    _set_threads(args.threads)
    overrides = {k: v for k, v in {"epochs": args.epochs}.items() if v is not None}
    cfg = get_preset(args.preset, **overrides)
    if not args.preset.startswith("cpu"):
        raise UserError(f"preset {args.preset!r} runs on the paper's features (BLIP/ALBEF on COCO/Flickr30k); "
                         "load them with jsdlib.jsd.presets.load_released_features and call jsdlib.experiments.jsd_compare.compare. "
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


def cmd_jsd_export(args) -> int:
    from jsdlib.apps.bundled import train_bundled_jsd

    check_output(args.out, "file", "--out")
    check_output(args.run_dir, "folder", "--run-dir")
    _set_threads(args.threads)
    train_bundled_jsd(args.out, preset=args.preset, seed=args.seed, pec=not args.no_pec, run_dir=args.run_dir,
                      progress=not args.quiet)
    return 0


def cmd_jsd_sweep(args) -> int:
    from jsdlib.experiments.jsd_compare import emoji_features, l1_sweep, write_json
    from jsdlib.common.metrics import format_table
    from jsdlib.jsd.presets import get_preset

    check_output(args.json, "file", "--json")
    check_output(args.png, "file", "--png")
    check_output(args.run_root, "folder", "--run-root")
    _set_threads(args.threads)
    cfg = get_preset(args.preset, **({"epochs": args.epochs} if args.epochs else {}))
    fs = emoji_features(progress=not args.quiet)
    log = (lambda *a: None) if args.quiet else print
    rows = []
    for method in args.methods:
        pecs = [True] if (args.pec_only and method == "d2s") else [False, True] if (args.pec and method == "d2s") \
            else [False]
        for pec in pecs:
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
        from jsdlib.apps.viz import r1_vs_flops

        r1_vs_flops(rows).savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


# ---- CMC (jsdlib.cmc.core) -------------------------------------------------------------------------
def cmd_cmc_compare(args) -> int:
    from jsdlib.cmc.core import PIPELINES, compare, summary_table
    from jsdlib.experiments.jsd_compare import write_json
    from jsdlib.common.metrics import format_table

    check_output(args.json, "file", "--json")
    check_output(args.run_root, "folder", "--run-root")
    _set_threads(args.threads)
    res = compare(args.task, args.seeds, preset=args.preset, run_root=args.run_root,
                  names=PIPELINES if args.with_ce else None,
                  n_eval=None if args.n_eval == 0 else (args.n_eval if args.n_eval is not None else -1),
                  progress=not args.quiet, log=(lambda *a: None) if args.quiet else print)
    print(f"CMC pipelines on {args.task} ({res['data']}): {res['n_test_queries']} of {res['n_test_total']} test "
          f"queries, K = {res['k']}, K' (CE) = {res['k_ce']}, CMC encoders {res['variant']} (preset "
          f"{res['preset']['name']}); mean ± std over seeds {res['seeds']}; accuracies macro over domains")
    print(format_table(summary_table(res), name_header="pipeline"))
    if args.json:
        write_json(res, args.json)
        print(f"wrote {args.json}")
    return 0


def cmd_cmc_export(args) -> int:
    from jsdlib.cmc.core import export_wordnet_head

    check_output(args.out, "file", "--out")
    _set_threads(args.threads)
    export_wordnet_head(args.out, preset=args.preset, seed=args.seed, progress=not args.quiet)
    return 0


# ---- terms (jsdlib.apps.explorer) ------------------------------------------------------------------
def cmd_terms(args) -> int:
    from jsdlib.jsd.io import load_jsd
    from jsdlib.apps.explorer import image_terms_by_id

    check_output(args.png, "file", "--png")
    _set_threads(args.threads)
    model = load_jsd(args.model)[0] if args.model else None
    try:
        info = image_terms_by_id(args.image, args.k, model=model)
    except KeyError as e:
        raise UserError(f"terms: {e.args[0]}") from None
    print(f"image {info['image_id']} ({info['split']} split, {info['file']}): {' | '.join(info['captions'])}")
    print(f"{info['active']} active terms; top {len(info['terms'])}:")
    for rank, (term, w) in enumerate(info["terms"], 1):
        print(f"{rank:3d}  {term:<20s} {w:.4f}")
    if args.png:
        from jsdlib.apps.viz import image_terms

        fig = image_terms(info["image"], info["terms"], titles=[info["captions"][0]], panel=(5.5, 0.9 + 0.2 * args.k))
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


# ---- index (jsdlib.index.core) ---------------------------------------------------------------------
def _jsd_digest() -> str:
    """What the emoji index vectors come from: the bundled JSD model's file digest."""
    from jsdlib.jsd.io import JSD_ASSET
    from jsdlib.vlp.models import file_sha256

    return file_sha256(JSD_ASSET)[:16]


def cmd_index_build(args) -> int:
    from jsdlib.index.core import build_backend, emoji_vectors

    if not str(args.path).startswith(("http://", "https://", "tcp://", "unix:")):  # not a Milvus server
        check_output(args.path, "store" if args.backend == "milvus" else "folder", "--path")
    _set_threads(args.threads)
    docs, _, _, es = emoji_vectors(args.split)
    build_backend(args.backend, docs, args.path, provenance={"split": args.split, "model": _jsd_digest()})
    print(f"{args.backend}: indexed {len(docs)} emoji {args.split} images ({docs.dim}-d dense, "
          f"{docs.sparse.nnz / len(docs):.1f} active terms each) -> {args.path}")
    return 0


def cmd_index_search(args) -> int:
    from jsdlib.index.core import HybridWeights, Vectors, open_backend
    from jsdlib.apps.bundled import EmojiSearch

    _set_threads(args.threads)
    b = open_backend(args.backend, args.path, expect={"split": args.split, "model": _jsd_digest()})  # before encoding
    es = EmojiSearch(args.split)
    if b.n_docs != len(es):
        raise UserError(f"index {args.path} holds {b.n_docs} documents but the emoji {args.split} split has {len(es)} "
                        "images; rebuild it with `jsdlib index build`")
    d, z = es.encode_query(args.query)
    res = b.search(Vectors(d, z), args.k, args.mode, hybrid=HybridWeights(es.w1, es.w2, es.tau))
    print(f"{args.backend} {args.mode} search of {args.query!r} over the emoji {args.split} images:")
    for rank, (i, s) in enumerate(zip(res.ids[0], res.scores[0]), 1):
        if i >= 0:
            print(f"{rank:3d}  image {int(i):4d}  {float(s):9.4f}  {' | '.join(es.split.captions_of(int(i)))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="jsdlib", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="group", required=True)

    data = sub.add_parser("data", help="bundled data sets").add_subparsers(dest="cmd", required=True)
    b = data.add_parser("build-emoji", add_help=False,
                        help="build data/emoji from Debian's Noto Color Emoji and CLDR packages (--help: options)")
    b.add_argument("options", nargs=argparse.REMAINDER)
    bw = data.add_parser("build-wordnet", add_help=False,
                         help="build data/wordnet_zeshel from Debian's wordnet-base package (--help: options)")
    bw.add_argument("options", nargs=argparse.REMAINDER)

    v = sub.add_parser("vlp", help="vision-language models").add_subparsers(dest="cmd", required=True)
    t = v.add_parser("train-standin", help="train the stand-in VLP (MiniLM + small ViT) on the emoji train split")
    t.add_argument("--out", help="checkpoint to write (default: the package's committed checkpoint)")
    t.add_argument("--run-dir", help="resumable state (default: under the jsdlib cache)")
    t.add_argument("--epochs", type=positive_int, default=None)
    t.add_argument("--batch-size", type=positive_int, default=None)
    t.add_argument("--lr", type=positive_float, default=None)
    t.add_argument("--seed", type=nonneg_int, default=0)
    t.add_argument("--threads", type=positive_int, default=None)
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
    d.add_argument("--batch-size", type=positive_int, default=128)
    d.add_argument("--threads", type=positive_int, default=None)
    d.add_argument("--no-cache", action="store_true", help="encode without reading/writing the feature cache")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=cmd_eval_dense)
    j = sub.add_parser("jsd", help="JSD and its baselines").add_subparsers(dest="cmd", required=True)
    c = j.add_parser("compare", help="every method of the JSD table over several seeds, with paired tests")
    c.add_argument("--preset", default="cpu-emoji")
    c.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2])
    c.add_argument("--methods", nargs="+", help="subset of the methods (default: all)")
    c.add_argument("--epochs", type=positive_int, help="override the preset's maximum epochs")
    c.add_argument("--run-root", help="resumable per-method run folders (default: none)")
    c.add_argument("--json", help="write the results here")
    c.add_argument("--threads", type=positive_int, default=None)
    c.add_argument("--quiet", action="store_true")
    c.set_defaults(func=cmd_jsd_compare)
    w = j.add_parser("sweep", help="R@1 vs FLOPs as the L1 weights change (the paper's Figure 2)")
    w.add_argument("--preset", default="cpu-emoji")
    w.add_argument("--methods", nargs="+", default=["jsd", "d2s"], choices=["jsd", "d2s"])
    w.add_argument("--scales", type=positive_float, nargs="+", default=[0.3, 1.0, 3.0, 10.0],
                   help="multipliers of the preset's L1 weights (eta_t, eta_i)")
    w.add_argument("--pec", action="store_true", help="also run D2S with probabilistic expansion control")
    w.add_argument("--pec-only", action="store_true",
                   help="run D2S with probabilistic expansion control only (not plain D2S again)")
    w.add_argument("--seed", type=nonneg_int, default=0)
    w.add_argument("--epochs", type=positive_int)
    w.add_argument("--run-root", help="resumable run folders")
    w.add_argument("--json")
    w.add_argument("--png", help="save the R@1-vs-FLOPs plot here")
    w.add_argument("--threads", type=positive_int, default=None)
    w.add_argument("--quiet", action="store_true")
    w.set_defaults(func=cmd_jsd_sweep)
    x = j.add_parser("export", help="train the bundled JSD model (cpu-emoji, seed 0) and write its checkpoint")
    x.add_argument("--out", default=None, help="default: jsdlib/assets/jsd_cpu_emoji.safetensors (the committed one)")
    x.add_argument("--preset", default="cpu-emoji")
    x.add_argument("--seed", type=nonneg_int, default=0)
    x.add_argument("--no-pec", action="store_true",
                   help="train without probabilistic expansion control (terms become a latent code; see notebook 03)")
    x.add_argument("--run-dir", help="resumable run folder")
    x.add_argument("--threads", type=positive_int, default=None)
    x.add_argument("--quiet", action="store_true")
    x.set_defaults(func=cmd_jsd_export)
    cm = sub.add_parser("cmc", help="the CMC reranker and its pipelines").add_subparsers(dest="cmd", required=True)
    cc = cm.add_parser("compare", help="BE, BE-CE, BE-CMC, BE-CMC-CE and CMC-final over several seeds")
    cc.add_argument("--task", required=True, choices=["wordnet", "emoji"])
    cc.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2])
    cc.add_argument("--preset", default="cpu-frozen", help="CMC training preset (jsdlib.cmc.core.PRESETS)")
    cc.add_argument("--n-eval", type=nonneg_int, default=None,
                    help="test queries to evaluate (default: the task's documented subset; 0 = all)")
    cc.add_argument("--with-ce", action="store_true",
                    help="run every pipeline, the cross-encoder ones included (emoji leaves them out by default: "
                         "no image CE trainable on a CPU reranks above chance; see jsdlib.cmc.core.TASKS)")
    cc.add_argument("--run-root", help="resumable CMC run folders")
    cc.add_argument("--json", help="write the results here")
    cc.add_argument("--threads", type=positive_int, default=None)
    cc.add_argument("--quiet", action="store_true")
    cc.set_defaults(func=cmd_cmc_compare)
    ce_ = cm.add_parser("export", help="train the frozen-encoder CMC head for WordNet and write its checkpoint")
    ce_.add_argument("--out", default=None, help="default: jsdlib/assets/cmc_wordnet.safetensors (the committed one)")
    ce_.add_argument("--preset", default="cpu-frozen")
    ce_.add_argument("--seed", type=nonneg_int, default=0)
    ce_.add_argument("--threads", type=positive_int, default=None)
    ce_.add_argument("--quiet", action="store_true")
    ce_.set_defaults(func=cmd_cmc_export)
    tm = sub.add_parser("terms", help="the top-k vocabulary terms the bundled JSD model gives an emoji image")
    tm.add_argument("--image", required=True,
                    help='an image id (imgid), a file name or an exact caption of the bundled set, e.g. "dog face"')
    tm.add_argument("--k", type=positive_int, default=20, help="how many terms (default 20)")
    tm.add_argument("--png", help="also save the image beside a bar chart of its terms here")
    tm.add_argument("--model", help="a JSD checkpoint written by `jsdlib jsd export` (default: the bundled one)")
    tm.add_argument("--threads", type=positive_int, default=None)
    tm.set_defaults(func=cmd_terms)
    ix = sub.add_parser("index", help="search back ends over the emoji images (jsdlib.index.core)").add_subparsers(
        dest="cmd", required=True)
    for name, helptext, func in (("build", "index the bundled JSD model's vectors of an emoji split", cmd_index_build),
                                 ("search", "search a saved index with a caption", cmd_index_search)):
        a = ix.add_parser(name, help=helptext)
        a.add_argument("--backend", default="exact", choices=["exact", "brute", "faiss", "seismic", "milvus"])
        a.add_argument("--path", required=True,
                       help="index folder (milvus: a Milvus Lite file ending in .db, or a server URI)")
        a.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
        a.add_argument("--threads", type=positive_int, default=None)
        if name == "search":
            a.add_argument("--query", required=True)
            a.add_argument("--mode", default="sparse", choices=["sparse", "dense", "hybrid"])
            a.add_argument("--k", type=positive_int, default=10)
        a.set_defaults(func=func)
    rp = sub.add_parser("reproduce", help="the headless main job: every experiment of the course, resumable, "
                                          "into OUT/report.md and OUT/results.json")
    rp.add_argument("--preset", default="cpu", choices=["cpu", "blip-coco", "blip-flickr", "albef-coco", "albef-flickr"])
    rp.add_argument("--out", default="results", help="output folder (a second run reuses finished steps)")
    rp.add_argument("--only", nargs="+", help="run only these steps (cpu: dense jsd_compare jsd_sweep search "
                                              "cmc_wordnet cmc_emoji cmc_speed)")
    rp.add_argument("--seeds", type=nonneg_int, nargs="+", default=[0, 1, 2])
    rp.add_argument("--retrain-standin", action="store_true", help="retrain the stand-in VLP instead of loading "
                                                                   "the committed checkpoint (~10 min)")
    rp.add_argument("--data", help="paper presets: folder with the released features and Karpathy JSON")
    rp.add_argument("--projection", help="paper presets: the VLP's final projection weights (W_t, b_t, W_v, b_v)")
    rp.add_argument("--word-embeddings", help="paper presets: the text tower's word embeddings (|V| x e)")
    rp.add_argument("--random-projection", action="store_true",
                    help="paper presets without --projection: start the dense branch from a RANDOM projection "
                         "(recorded in results.json; 'dense original' is then meaningless)")
    rp.add_argument("--threads", type=positive_int, default=None)
    rp.add_argument("--quiet", action="store_true")
    rp.set_defaults(func=cmd_reproduce)
    return p


def cmd_reproduce(args) -> int:
    from jsdlib.experiments.reproduce import check_paper_data, check_paper_inputs, run

    check_output(args.out, "folder", "--out")
    if args.preset != "cpu":  # the paper presets' inputs, before anything is loaded
        check_paper_data(args.preset, args.data)
        check_paper_inputs(args.projection, args.word_embeddings, args.random_projection)
    elif args.random_projection:
        raise UserError("--random-projection belongs to the paper presets")
    _set_threads(args.threads)
    standin = None
    if args.retrain_standin:
        if args.preset != "cpu":
            raise UserError("--retrain-standin belongs to the cpu preset")
        from jsdlib.vlp.standin import StandinConfig, train_standin

        standin = Path(args.out) / "standin_vlp.safetensors"
        if not standin.is_file():
            train_standin(StandinConfig(), out=standin, run_dir=Path(args.out) / "runs" / "standin",
                          progress=not args.quiet)
    run(args.out, preset=args.preset, only=args.only, seeds=args.seeds, data_dir=args.data, standin=standin,
        projection=args.projection, word_embeddings=args.word_embeddings, progress=not args.quiet,
        random_projection=args.random_projection)
    return 0


USER_ERRORS = (UserError, OSError, ValueError, LookupError, ImportError)  # OSError: missing / unreadable files


def _one_line(e: BaseException) -> str:
    text = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
    return " ".join(str(text).split()) or type(e).__name__


def _run(fn, *args) -> int:
    """Run a command: a user error becomes one line ``jsdlib: <message>`` and exit code 2 (any other failure: one
    line and exit code 1); ``JSDLIB_DEBUG=1`` re-raises for the full traceback."""
    if os.environ.get("JSDLIB_DEBUG", "") not in ("", "0"):
        return fn(*args)
    try:
        return fn(*args)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(f"jsdlib: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jsdlib: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        print(f"jsdlib: {_one_line(e)}", file=sys.stderr)
        return 2
    except BaseException as e:  # noqa: BLE001 - also Rust panics (pyo3's PanicException is a BaseException)
        if isinstance(e, GeneratorExit):
            raise
        print(f"jsdlib: internal error ({type(e).__name__}: {_one_line(e)}); rerun with JSDLIB_DEBUG=1 for the "
              "traceback and report it", file=sys.stderr)
        return 1


def main(argv=None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:2] == ["data", "build-emoji"]:  # its own parser (python -m jsdlib.data.build_emoji), options passed through
        from jsdlib.data.build_emoji import main as build_main

        return _run(build_main, argv[2:])
    if argv[:2] == ["data", "build-wordnet"]:  # its own parser (python -m jsdlib.data.build_wordnet)
        from jsdlib.data.build_wordnet import main as build_wordnet_main

        return _run(build_wordnet_main, argv[2:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a one-line usage error (2)
        return e.code if isinstance(e.code, int) else 2
    return _run(args.func, args)


if __name__ == "__main__":
    sys.exit(main())
