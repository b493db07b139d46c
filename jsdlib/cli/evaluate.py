"""``jsdlib eval dense``: dense text->image / image->text retrieval of a VLP on a Karpathy-format split."""
from __future__ import annotations

from jsdlib.cli.options import command, group, write_results
from jsdlib.common.cliargs import UserError, check_output, positive_int
from jsdlib.common.metrics import evaluate_split, format_table, report_rows
from jsdlib.data.karpathy import load_emoji, load_karpathy
from jsdlib.vlp.openclip import PretrainedUnavailableError
from jsdlib.vlp.features import cached_features, encode_split
from jsdlib.vlp.load import load_vlp


def load_split(args):
    """The split named by ``--dataset/--images/--split`` (default: the bundled emoji set)."""
    if args.dataset:
        if not args.images:
            raise UserError("--dataset needs --images (the folder the JSON's filenames are relative to)")
        return load_karpathy(args.dataset, args.images, args.split)
    return load_emoji(args.split)


def cmd_eval_dense(args) -> int:
    check_output(args.json, "file", "--json")
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
    print(f"dense retrieval: {vlp.name} ({vlp.weights}) on {split.dataset}/{split.split}: "
          f"{res['n_images']} images, {res['n_captions']} captions (recalls in %)")
    print(format_table(report_rows(res), name_header="queries", digits=2))
    if "unseen_concept" in res:
        u = res["unseen_concept"]
        print(f"unseen-concept queries: {u['n_captions']} captions of {u['n_images']} test images whose base "
              f"emoji has no variant in train, ranked against the full test corpus")
    write_results(res, args.json)
    return 0


def add(sub) -> None:
    e = group(sub, "eval", "evaluation")
    d = command(e, "dense", "dense retrieval metrics of a VLP on a Karpathy-format split", cmd_eval_dense,
                shared=("json", "threads", "quiet"))
    d.add_argument("--model", default="standin", help="'standin' or an open_clip architecture name")
    d.add_argument("--pretrained", help="open_clip tag or checkpoint file (stand-in: its checkpoint)")
    d.add_argument("--dataset", help="Karpathy-format JSON (default: the bundled emoji set)")
    d.add_argument("--images", help="image folder of --dataset")
    d.add_argument("--split", default="test", choices=["train", "val", "test"])
    d.add_argument("--batch-size", type=positive_int, default=128)
    d.add_argument("--no-cache", action="store_true", help="encode without reading/writing the feature cache")
