"""Where the bundled JSD model's sparse R@1 falls behind its dense R@1 (issue 14's gap), per Noto subset.

    python benchmarks/sparse_dense_gap.py

For the val and test splits: text -> image R@1 of the sparse score ``z_t . z_i`` and of the dense score
``d_t . d_i`` (the ranking of ``d_t . d_i / tau``), over all captions and over the captions of each multi-style
subset (seen / cross-style / unseen, :func:`jsdlib.data.emoji_styles.noto_subsets`), every caption still ranked
against all 500 images of its split, with a 95 % interval of the difference (paired per caption; a cluster
bootstrap that resamples images, whose two captions are not independent: :func:`jsdlib.common.stats.bootstrap_ci`).
Writes the table to stdout; no file.
"""
from __future__ import annotations

import time

import numpy as np
import torch

SUBSETS = ("all", "seen", "cross-style", "unseen")


def gap_rows(model, fs, splits=("val", "test")) -> list[dict]:
    """One row per (split, subset): images, sparse R@1, dense R@1, their difference and its 95 % interval."""
    from jsdlib.common.metrics import ranks
    from jsdlib.common.stats import bootstrap_ci
    from jsdlib.data.emoji_styles import noto_subsets
    from jsdlib.data.karpathy import load_emoji
    from jsdlib.jsd.evaluate import encode

    rows = []
    for split in splits:
        enc = encode(model, getattr(fs, split))
        scores = {"sparse": (enc["Z_t"] @ enc["Z_i"].T).float().numpy(),
                  "dense": (enc["D_t"] @ enc["D_i"].T).float().numpy()}
        c2i, subset_of = np.asarray(load_emoji(split).caption_to_image), noto_subsets(split)
        for name in SUBSETS:
            caps = [c for c, i in enumerate(c2i) if name == "all" or subset_of[i] == name]
            hit = {k: 100.0 * (ranks(s[caps], c2i[caps]) == 0) for k, s in scores.items()}   # R@1 per caption
            r1 = {k: float(h.mean()) for k, h in hit.items()}
            ci = bootstrap_ci(hit["sparse"] - hit["dense"], c2i[caps])
            rows.append({"split": split, "subset": name, "images": len(set(c2i[caps].tolist())), **r1,
                         "gap": r1["sparse"] - r1["dense"], "ci": ci})
    return rows


def main() -> int:
    torch.set_num_threads(1)
    from jsdlib.apps import bundled
    from jsdlib.jsd.features import emoji_features

    start = time.perf_counter()
    model, _ = bundled.load_jsd()
    print("| split | subset | images | sparse R@1 | dense R@1 | sparse - dense | 95 % interval (images resampled) |")
    print("|---|---|---|---|---|---|---|")
    for r in gap_rows(model, emoji_features(progress=False)):
        print(f"| {r['split']} | {r['subset']} | {r['images']} | {r['sparse']:.1f} | {r['dense']:.1f} | "
              f"{r['gap']:+.1f} | "
              f"[{r['ci'][0]:+.1f}, {r['ci'][1]:+.1f}] |")
    print(f"({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
