"""The course's two architecture diagrams, drawn by code (matplotlib) and committed as SVG under
``notebooks/figures/`` (issue 18, point 2)::

    python -m jsdlib.apps.diagrams [--out notebooks/figures]

- :func:`jsd_architecture`: JSD (arXiv 2508.16707). Two towers of a vision-language model give pre-projection
  features ``h_t``, ``h_i``; their final projections ``W_t``, ``W_v`` (trained) give the dense vectors ``d``;
  one sparse head shared by both modalities gives ``z = log(1 + ReLU(E LN(W_p d)))``; three score matrices
  ``S_d = D_i D_t^T / tau``, ``S_s = Z_i Z_t^T``, ``S_x = w1 S_d + w2 S_s``; InfoNCE on each and self-KD from
  ``S_x`` into the dense and sparse scores: ``loss = (L + L') / 2 + (eta_t L1(Z_t) + eta_i L1(Z_i)) / 2`` with
  ``L = (lam1 L_d + lam2 L_s + L_x) / 2`` (InfoNCE) and ``L' = (lam1 L'_d + lam2 L'_s) / 2`` (self-KD).
- :func:`cmc_pipeline`: the reranking pipeline of CMC (arXiv 2405.12801). A bi-encoder (BE) retrieves the top
  ``K`` of the catalogue; CMC rescores all ``K`` candidates in one forward pass of a shallow transformer over
  ``[q; c_1 .. c_K]``; a cross-encoder (CE) reads the top ``K'`` (query, candidate) pairs one by one.

The SVGs keep text as text (``svg.fonttype = none``) and carry no date, so regenerating them gives the same bytes.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

from jsdlib.common.paths import REPO_ROOT  # noqa: E402

FIGURES = REPO_ROOT / "notebooks" / "figures"
COLORS = {"input": "#f3f3f3", "frozen": "#dfe7f2", "trained": "#fde3c8", "sparse": "#d9f0d3", "score": "#ede0f5",
          "loss": "#fbd5d5", "cheap": "#dfe7f2", "mid": "#d9f0d3", "costly": "#fde3c8"}


def _box(ax, x, y, w, h, text, kind, fontsize=9):
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                fc=COLORS[kind], ec="#555555", lw=1.0))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize, parse_math=False, wrap=True)


def _arrow(ax, a, b, style="-|>", ls="-", color="#333333", text=None, rad=0.0, fontsize=8):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, lw=1.1, ls=ls, color=color,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if text:
        ax.text((a[0] + b[0]) / 2, (a[1] + b[1]) / 2 + 0.12, text, ha="center", va="bottom", fontsize=fontsize,
                color=color, parse_math=False)


def _canvas(w, h, title):
    fig, ax = plt.subplots(figsize=(w, h))
    ax.set_xlim(0, w)
    ax.set_ylim(0, h)
    ax.axis("off")
    ax.set_title(title, fontsize=11, loc="left")
    return fig, ax


def jsd_architecture():
    """JSD's two towers, final projections, shared sparse head and three score matrices (module docstring)."""
    fig, ax = _canvas(15.0, 6.4, "JSD: dense and sparse retrievers trained together by self-distillation")
    dense, sparse, kd = "#1f5fa8", "#2e7d32", "#8e24aa"
    for y, name, enc, W, d, z, sd_y in ((5.2, "caption", "text encoder\n(frozen)", "W_t", "d_t", "z_t", 3.35),
                                        (0.7, "image", "image encoder\n(frozen)", "W_v", "d_i", "z_i", 2.45)):
        h = "h_t" if name == "caption" else "h_i"
        _box(ax, 0.8, y, 1.2, 0.7, name, "input")
        _box(ax, 2.65, y, 1.7, 0.9, enc, "frozen")
        _box(ax, 4.85, y, 1.8, 0.9, f"final projection\n{W}: {h} -> {d}", "trained")
        _box(ax, 7.4, y, 1.9, 0.9, "sparse head\n(one, shared)", "sparse")
        _arrow(ax, (1.4, y), (1.8, y))
        _arrow(ax, (3.5, y), (3.95, y), text=h)
        _arrow(ax, (5.75, y), (6.45, y), color=dense, text=d)
        _arrow(ax, (8.35, y), (12.4, y), style="-", color=sparse, text=f"{z}: |V| term weights, mostly 0")
        _arrow(ax, (12.4, y), (12.4, sd_y), color=sparse)
        _arrow(ax, (4.85, y - 0.45 if y > 3 else y + 0.45), (7.7, sd_y), color=dense, text=None)
    ax.text(5.2, 3.75, "d_t", color=dense, fontsize=8)
    ax.text(5.2, 2.0, "d_i", color=dense, fontsize=8)
    _box(ax, 8.7, 2.9, 2.1, 0.9, "S_d = D_i D_t^T / tau\n(dense)", "score", 8)
    _box(ax, 10.55, 2.9, 1.4, 0.9, "S_x = w1 S_d\n+ w2 S_s", "score", 8)
    _box(ax, 12.4, 2.9, 2.1, 0.9, "S_s = Z_i Z_t^T\n(sum over shared terms)", "score", 8)
    _arrow(ax, (9.75, 2.9), (9.85, 2.9))
    _arrow(ax, (11.35, 2.9), (11.25, 2.9))
    _box(ax, 10.3, 1.6, 4.9, 0.95, "loss = (L + L') / 2 + (eta_t L1(Z_t) + eta_i L1(Z_i)) / 2\n"
                                   "L = (lam1 L_d + lam2 L_s + L_x) / 2: InfoNCE on each score\n"
                                   "L' = (lam1 L'_d + lam2 L'_s) / 2: self-KD from softmax(S_x)", "loss", 7.5)
    _arrow(ax, (10.55, 2.45), (10.55, 2.08))
    _arrow(ax, (10.2, 2.45), (8.9, 2.45), ls="--", color=kd, rad=-0.4, text=None)
    _arrow(ax, (10.9, 2.45), (12.2, 2.45), ls="--", color=kd, rad=0.4, text=None)
    ax.text(10.55, 3.55, "teacher (purple dashes)", color=kd, fontsize=8, ha="center")
    _box(ax, 2.7, 2.9, 4.4, 1.3, "z = log(1 + ReLU(E LN(W_p d)))\nE: the text tower's word embeddings (|V| x e),\n"
                                 "one weight per vocabulary term:\nthe same head reads captions and images", "sparse", 8)
    ax.text(0.3, 0.05, "orange: trained   blue boxes: frozen   green: the sparse side   blue arrows: dense "
                       "vectors   purple dashes: self-distillation from the integrated score", fontsize=8,
            color="#444444")
    return fig


def cmc_pipeline(k: int = 512, k_ce: int = 16, catalogue: str = "M"):
    """BE -> CMC -> CE with the list sizes ``k`` (CMC) and ``k_ce`` (the CE's K') (module docstring)."""
    fig, ax = _canvas(13.0, 4.2, f"Reranking with CMC: bi-encoder top-{k} -> CMC -> cross-encoder top-{k_ce}")
    _box(ax, 0.9, 2.2, 1.3, 0.8, "query q", "input")
    _box(ax, 3.0, 2.2, 2.3, 1.4, f"bi-encoder (BE)\nscore = q . c\nover all {catalogue} candidates\n"
                                 "(one vector each, indexed)", "cheap", 8)
    _box(ax, 6.5, 2.2, 3.0, 1.6, f"CMC: shallow transformer over\n[q; c_1 .. c_{k}]\none forward pass for "
                                 f"all {k}\n(candidates compared together)", "mid", 8)
    _box(ax, 10.3, 2.2, 2.4, 1.4, f"cross-encoder (CE)\nreads (q, c) as text\n{k_ce} forward passes", "costly", 8)
    _box(ax, 3.0, 3.75, 2.8, 0.6, f"catalogue: {catalogue} candidates, encoded once", "input", 8)
    _arrow(ax, (3.0, 3.45), (3.0, 2.9))
    _arrow(ax, (4.4, 3.75), (6.5, 3.0), ls="--", color="#1f5fa8", text=None)
    ax.text(5.9, 3.55, "their vectors c_j", color="#1f5fa8", fontsize=8)
    _arrow(ax, (1.55, 2.2), (1.85, 2.2))
    _arrow(ax, (4.15, 2.2), (5.0, 2.2), text=f"top K = {k}")
    _arrow(ax, (8.0, 2.2), (9.1, 2.2), text=f"top K' = {k_ce}")
    _arrow(ax, (11.5, 2.2), (12.6, 2.2), text="ranking")
    ax.text(0.3, 0.35, "cost per query grows left to right; each stage sees fewer candidates: "
                       f"{catalogue} -> {k} -> {k_ce}. Pipelines: BE, BE-CE, BE-CMC, BE-CMC-CE, CMC-final",
            fontsize=8, color="#444444")
    return fig


def write_figures(out: str | Path = FIGURES) -> list[Path]:
    """Both diagrams as ``<out>/jsd_architecture.svg`` and ``<out>/cmc_pipeline.svg`` (reproducible bytes)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "jsdlib", "font.family": "DejaVu Sans"}):
        for name, fn in (("jsd_architecture", jsd_architecture), ("cmc_pipeline", cmc_pipeline)):
            fig = fn()
            path = out / f"{name}.svg"
            fig.savefig(path, format="svg", metadata={"Date": None, "Creator": "jsdlib.apps.diagrams"},
                        bbox_inches="tight")
            plt.close(fig)
            paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m jsdlib.apps.diagrams", description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=FIGURES)
    args = ap.parse_args(argv)
    for p in write_figures(args.out):
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["FIGURES", "jsd_architecture", "cmc_pipeline", "write_figures"]
