"""Plots for the notebooks (matplotlib, explicit sizes, usable outside notebooks too).

Every function returns the matplotlib ``Figure`` and never calls ``plt.show()`` itself.
"""
from __future__ import annotations

import textwrap
from typing import Sequence

import numpy as np


def _plt():
    import matplotlib.pyplot as plt  # imported lazily: the library works without a display

    return plt


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)[:3])


def image_grid(split, indices: Sequence[int], ncols: int = 6, caption_kind: int = 0, size: float = 1.9,
               wrap: int = 22):
    """Images of ``split`` with one caption each (``caption_kind``: which of the image's captions)."""
    plt = _plt()
    indices = list(indices)
    nrows = max(1, int(np.ceil(len(indices) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * 1.25), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, indices):
        ax.imshow(split.load_image(i))
        caps = split.image_to_captions[i]
        ax.set_title(_wrap(split.captions[caps[min(caption_kind, len(caps) - 1)]], wrap), fontsize=8)
    fig.tight_layout()
    return fig


def query_results(split, scores, queries: Sequence[int], k: int = 5, size: float = 1.7, wrap: int = 28):
    """For each caption index in ``queries``: the query text, then its top-``k`` images (gold framed green)."""
    plt = _plt()
    scores = np.asarray(scores)
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(size * (k + 1), size * len(queries) * 1.1),
                             squeeze=False)
    for row, q in zip(axes, queries):
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].text(0.5, 0.5, _wrap(f'"{split.captions[q]}"', 18), ha="center", va="center", fontsize=9,
                    wrap=True)
        row[0].axis("off")
        gold = int(split.caption_to_image[q])
        top = np.argsort(-scores[q], kind="stable")[:k]
        for ax, j in zip(row[1:], top):
            ax.imshow(split.load_image(int(j)))
            color = "tab:green" if j == gold else "lightgray"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(3 if j == gold else 1)
            ax.set_title(f"{scores[q, j]:.2f}", fontsize=8)
    fig.tight_layout()
    return fig


def training_curve(history: Sequence[dict], metric: str = "R@1", figsize=(7, 3)):
    """Loss and validation ``metric`` per epoch from a training history (list of dicts)."""
    plt = _plt()
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=figsize)
    a.plot(epochs, [h["loss"] for h in history], marker=".")
    a.set_xlabel("epoch")
    a.set_ylabel("training loss")
    b.plot(epochs, [h["val"][metric] for h in history], marker=".", color="tab:orange")
    b.set_xlabel("epoch")
    b.set_ylabel(f"val t2i {metric} (%)")
    fig.tight_layout()
    return fig


def r1_vs_flops(rows, split: str = "test", figsize=(6, 4)):
    """R@1 against FLOPs for each method of an L1 sweep (the paper's Figure 2 trade-off), log-scaled FLOPs.

    ``rows``: :func:`jsdlib.experiments.l1_sweep` rows (keys ``method``, ``pec``, ``{split}_R@1``, ``{split}_flops``).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=figsize)
    groups: dict[str, list] = {}
    for r in rows:
        label = r["method"].upper() + (" + PEC" if r.get("pec") else "")
        groups.setdefault(label, []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r[f"{split}_flops"])
        ax.plot([r[f"{split}_flops"] for r in rs], [r[f"{split}_R@1"] for r in rs], marker="o", label=label)
        for r in rs:
            ax.annotate(f"x{r['scale']:g}", (r[f"{split}_flops"], r[f"{split}_R@1"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
    ax.set_xscale("log")
    ax.set_xlabel("FLOPs per query-document pair (D2S definition, log scale)")
    ax.set_ylabel(f"{split} t2i R@1 (%)")
    ax.set_title("Effectiveness vs efficiency as the L1 weight changes")
    ax.legend()
    fig.tight_layout()
    return fig


def score_heatmaps(mats: dict, labels: Sequence[str] | None = None, figsize=(12, 3.8)):
    """Side-by-side heat maps of in-batch score matrices (rows = images, columns = captions)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(mats), figsize=figsize, squeeze=False)
    for ax, (title, m) in zip(axes[0], mats.items()):
        m = np.asarray(m.detach().cpu() if hasattr(m, "detach") else m)
        im = ax.imshow(m, cmap="viridis")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("caption")
        ax.set_ylabel("image")
        if labels is not None:
            ax.set_xticks(range(len(labels)))
            ax.set_xticklabels(labels, rotation=90, fontsize=6)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig
