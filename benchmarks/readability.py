"""Readability of the bundled JSD model's image vectors on the Noto test split (issue 14, point 5).

    python benchmarks/readability.py [--ks 5 1] [--max-images 10]

For each k: the share of test images whose top-k terms contain one of their caption words (``readable``) and
a *specific* one (used by at most ``--max-images`` test images' captions; ``specific`` over the images that
have one, ``specific_all`` over every image), overall and per multi-style subset of the Noto test images (seen /
cross-style / unseen, :func:`jsdlib.data.emoji_styles.noto_subsets`; :func:`jsdlib.apps.readability.readability`).
Writes the table to stdout; no file.
"""
from __future__ import annotations

import argparse
import time

import torch


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[5, 1])
    parser.add_argument("--max-images", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    from jsdlib.apps import bundled
    from jsdlib.apps.readability import readability
    from jsdlib.data.emoji_styles import noto_subsets

    start = time.perf_counter()
    search = bundled.EmojiSearch("test")
    captions = [search.split.captions_of(i) for i in range(len(search))]
    subsets = noto_subsets("test")
    print("| k | images | n | readable % | specific % (n with one) | specific_all % |")
    print("|---|---|---|---|---|---|")
    for k in args.ks:
        terms = [search.image_terms(i, k) for i in range(len(search))]
        for group, row in readability(terms, captions, k=k, subsets=subsets, max_images=args.max_images).items():
            print(f"| {k} | {group} | {row['images']} | {100 * row['readable']:.1f} | {100 * row['specific']:.1f} "
                  f"({row['with_specific_word']}) | {100 * row['specific_all']:.1f} |")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
