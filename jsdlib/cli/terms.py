"""``jsdlib terms --image ID --k 20``: the top-k vocabulary terms of an emoji image under the bundled JSD model."""
from __future__ import annotations

from jsdlib.apps.explorer import image_terms_by_id
from jsdlib.apps.viz import image_terms, save_figure
from jsdlib.cli.options import command
from jsdlib.common.cliargs import UserError, check_output, positive_int
from jsdlib.jsd.io import load_jsd


def cmd_terms(args) -> int:
    check_output(args.png, "file", "--png")
    model = load_jsd(args.model)[0] if args.model else None
    try:
        info = image_terms_by_id(args.image, args.k, model=model, words_only=not args.all_terms)
    except KeyError as e:
        raise UserError(f"terms: {e.args[0]}") from None
    print(f"image {info['image_id']} ({info['split']} split, {info['file']}): {' | '.join(info['captions'])}")
    if info["words_only"]:
        print(f"{info['active']} active terms, {info['active_words']} of them words; top {len(info['terms'])} words "
              f"(--all-terms also lists punctuation, word pieces, digits and special tokens):")
    else:
        print(f"{info['active']} active terms; top {len(info['terms'])}:")
    for rank, (term, w) in enumerate(info["terms"], 1):
        print(f"{rank:3d}  {term:<20s} {w:.4f}")
    if args.png:
        fig = image_terms(info["image"], info["terms"], titles=[info["captions"][0]], panel=(5.5, 0.9 + 0.2 * args.k))
        save_figure(fig, args.png, dpi=120)
        print(f"wrote {args.png}")
    return 0


def add(sub) -> None:
    tm = command(sub, "terms", "the top-k vocabulary terms the bundled JSD model gives an emoji image", cmd_terms,
                 shared=("threads",))
    tm.add_argument("--image", required=True,
                    help='an image id (imgid), a file name or an exact caption of the bundled set, e.g. "dog face"')
    tm.add_argument("--k", type=positive_int, default=20, help="how many terms (default 20)")
    tm.add_argument("--png", help="also save the image beside a bar chart of its terms here")
    tm.add_argument("--all-terms", action="store_true",
                    help="list every active term, not only whole words (punctuation, word pieces, digits, specials)")
    tm.add_argument("--model", help="a JSD checkpoint written by `jsdlib jsd export` (default: the bundled one)")
