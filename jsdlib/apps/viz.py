"""Plots for the notebooks (matplotlib, explicit sizes, usable outside notebooks too).

Every function returns the matplotlib ``Figure`` and never calls ``plt.show()`` itself.
"""
from __future__ import annotations

import textwrap
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib import font_manager, ft2font

from jsdlib.common.io import atomic_path
from jsdlib.jsd.vocab import Vocabulary
from jsdlib.jsd.efficiency import term_shares


def save_figure(fig, path, dpi: int = 120) -> Path:
    """``fig.savefig(path)`` as a PNG, written atomically (a kill never leaves half an image)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def _wrap(text: str, width: int) -> str:
    return "\n".join(textwrap.wrap(text, width)[:3])


def image_grid(split, indices: Sequence[int], ncols: int = 6, caption_kind: int = 0, size: float = 1.9,
               wrap: int = 22):
    """Images of ``split`` with one caption each (``caption_kind``: which of the image's captions)."""
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


def style_renderings(splits: Sequence, emojis: Sequence[str], styles: Sequence[str]) -> dict:
    """``{(emoji, style): (split, index, subset)}``: where each emoji's rendering in each style sits among
    ``splits`` (multi-style splits, :func:`jsdlib.data.emoji_styles.load`); missing pairs are left out."""
    found = {}
    for split in splits:
        for i, m in enumerate(split.image_meta):
            key = (m.get("emoji"), m.get("style"))
            if key[0] in emojis and key[1] in styles and key not in found:
                found[key] = (split, i, m.get("subset", split.split))
    return found


def styles_side_by_side(splits: Sequence, emojis: Sequence[str], styles: Sequence[str], size: float = 1.5):
    """One row per emoji, one column per art style: the same concept as each style draws it (blank where a
    style has no rendering); each picture is titled with the split it sits in (train / val / test)."""
    found = style_renderings(splits, emojis, styles)
    fig, axes = plt.subplots(len(emojis), len(styles), figsize=(size * len(styles), size * len(emojis) * 1.2),
                             squeeze=False)
    for r, e in enumerate(emojis):
        for c, st in enumerate(styles):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if (e, st) in found:
                split, i, _ = found[(e, st)]
                ax.imshow(split.load_image(i))
                ax.set_title(f"{st} ({split.split})", fontsize=8)
            if c == 0:
                first = [sp for sp in splits for j, m in enumerate(sp.image_meta) if m.get("emoji") == e]
                name = first[0].captions[first[0].image_to_captions[
                    [m.get("emoji") for m in first[0].image_meta].index(e)][0]] if first else e
                ax.set_ylabel(_wrap(name, 14), fontsize=8)
    fig.tight_layout()
    return fig


def query_results(split, scores, queries: Sequence[int], k: int = 5, size: float = 1.7, wrap: int = 28):
    """For each caption index in ``queries``: the query text, then its top-``k`` images (gold framed green)."""
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


def jsd_training_curves(history: Sequence[dict], best_epoch: int | None = None, figsize=(13, 3.4)):
    """A JSD (or D2S) run's history in three panels: the loss and its parts, the active terms and FLOPs on
    validation, and validation R@1 of the sparse / dense / integrated scores; ``best_epoch`` (the selected
    epoch) is marked. Loss parts shown when present: ``L_dense``, ``L_sparse``, ``L_inter`` (InfoNCE on
    ``S_d``, ``S_s``, ``S_x``), ``Lp`` (self-KD) and ``reg`` (the weighted regulariser)."""
    if not history:
        raise ValueError("jsd_training_curves: empty history")
    epochs = [h["epoch"] for h in history]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=figsize)
    for key in ("loss", "L_dense", "L_sparse", "L_inter", "Lp", "reg"):
        if key in history[0]:
            a.plot(epochs, [h[key] for h in history], marker="." if key == "loss" else None,
                   lw=2 if key == "loss" else 1, label=key)
    a.set_xlabel("epoch")
    a.set_title("training loss and its parts", fontsize=9)
    a.legend(fontsize=7)
    b.plot(epochs, [h["val"]["terms_q"] for h in history], label="terms per caption")
    b.plot(epochs, [h["val"]["terms_d"] for h in history], label="terms per image")
    b.plot(epochs, [h["val"]["flops"] for h in history], label="FLOPs", color="black")
    b.set_yscale("log")
    b.set_xlabel("epoch")
    b.set_title("validation sparsity", fontsize=9)
    b.legend(fontsize=7)
    for key in ("sparse", "dense", "integrated"):
        c.plot(epochs, [h["val"][key]["R@1"] for h in history], label=key)
    c.set_xlabel("epoch")
    c.set_ylabel("val t2i R@1 (%)")
    c.set_title("validation R@1", fontsize=9)
    c.legend(fontsize=7)
    if best_epoch is not None:
        for ax in (a, b, c):
            ax.axvline(best_epoch, color="grey", ls=":", lw=1)
    fig.tight_layout()
    return fig


def cmc_training_curves(history: Sequence[dict], best_epoch: int | None = None, figsize=(9, 3.2)):
    """A CMC (or comparison reranker's) run: the training loss (``0.2 CE + 0.8 KL``) and the validation
    selection key (``val_acc``: top-1 accuracy over the validation lists) per epoch; ``best_epoch`` marked."""
    if not history:
        raise ValueError("cmc_training_curves: empty history")
    epochs = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=figsize)
    a.plot(epochs, [h["loss"] for h in history], marker=".")
    a.set_xlabel("epoch")
    a.set_title("training loss (0.2 CE + 0.8 KL)", fontsize=9)
    b.plot(epochs, [h["val_acc"] for h in history], marker=".", color="tab:orange")
    b.set_xlabel("epoch")
    b.set_ylabel("val top-1 accuracy (%)")
    b.set_title("validation (the selection key)", fontsize=9)
    if best_epoch is not None:
        for ax in (a, b):
            ax.axvline(best_epoch, color="grey", ls=":", lw=1)
    fig.tight_layout()
    return fig


def r1_vs_flops(rows, split: str = "test", figsize=(6, 4)):
    """R@1 against FLOPs for each method of an L1 sweep (the paper's Figure 2 trade-off), log-scaled FLOPs.

    ``rows``: :func:`jsdlib.experiments.jsd_compare.l1_sweep` rows (keys ``method``, ``pec``, ``{split}_R@1``, ``{split}_flops``).
    """
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


# ----------------------------------------------------------------------------------------------
# Reading sparse vectors (notebook 03): terms, matches, sparsity, models side by side
# ----------------------------------------------------------------------------------------------
# A sparse vector z (arXiv 2508.16707) has one non-negative weight per vocabulary token; :func:`jsdlib.jsd.vocab.top_terms`
# decodes its heaviest entries into ``[(term, weight)]``. The plots below take such lists (or the vectors) so
# that they work for any model: the bundled JSD head, its initialisation, a D2S head, an open_clip BPE head.
TERM_COLOR = "tab:blue"
HIGHLIGHT_COLOR = "tab:orange"


@lru_cache(maxsize=None)
def _glyphs() -> frozenset:
    """Code points the default matplotlib font can draw (to avoid "Glyph missing" warnings on rare tokens)."""
    path = font_manager.findfont(font_manager.FontProperties(family=matplotlib.rcParams["font.family"]))
    return frozenset(ft2font.FT2Font(path).get_charmap())


def term_label(term: str, width: int = 18) -> str:
    """A term as a plot label: characters the font lacks written ``U+XXXX``, long terms cut with an ellipsis."""
    glyphs = _glyphs()
    s = "".join(c if (ord(c) in glyphs or c in " \t") else f"U+{ord(c):04X}" for c in str(term))
    return s if len(s) <= width else s[:width - 1] + "…"


def _check_terms(terms, what: str) -> list[tuple[str, float]]:
    try:
        out = [(str(t), float(w)) for t, w in terms]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what}: expected a list of (term, weight) pairs, got {terms!r:.80}") from e
    return out


def term_bars(ax, terms, highlight=(), title: str | None = None, xlabel: str = "weight", color: str = TERM_COLOR,
              highlight_color: str = HIGHLIGHT_COLOR, values: bool = True):
    """Horizontal bars of ``[(term, weight)]`` on ``ax``, heaviest on top; terms in ``highlight`` coloured.

    Returns ``ax``. An empty list draws an empty panel that says so (an all-zero vector has no terms).
    """
    terms = _check_terms(terms, "term_bars")
    highlight = set(highlight or ())
    if not terms:
        ax.text(0.5, 0.5, "no active terms", ha="center", va="center", transform=ax.transAxes, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    else:
        y = np.arange(len(terms))[::-1]
        weights = [w for _, w in terms]
        ax.barh(y, weights, color=[highlight_color if t in highlight else color for t, _ in terms], height=0.75)
        ax.set_yticks(y, [term_label(t) for t, _ in terms], parse_math=False, fontsize=8)
        ax.set_ylim(-0.6, len(terms) - 0.4)
        ax.set_xlim(0, max(weights) * (1.25 if values else 1.05))
        if values:
            for yy, w in zip(y, weights):
                ax.text(w, yy, f" {w:.2f}", va="center", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel(xlabel, fontsize=8)
    if title is not None:
        ax.set_title(title, fontsize=9, parse_math=False)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    return ax


def _show_image(ax, image, title=None, wrap: int = 22):
    ax.imshow(np.asarray(image))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(_wrap(str(title), wrap), fontsize=8, parse_math=False)


def image_terms(images, terms, titles=None, highlight=None, ncols: int = 2, panel=(5.2, 2.8)):
    """Each image beside a horizontal bar chart of its top-k terms (one image, or a grid of several).

    ``images``: one image (PIL or array) or a list; ``terms``: its ``[(term, weight)]`` list (e.g. from
    :func:`jsdlib.jsd.vocab.top_terms`) or one list per image; ``titles``: a caption per image; ``highlight``: a
    set of terms per image to colour (e.g. the words of its captions, so expansion terms stand out).
    ``panel``: (width, height) in inches of one image + bars pair; the figure is ``ncols`` pairs wide.
    """
    single = not isinstance(images, (list, tuple))
    images = [images] if single else list(images)
    if single or (terms and isinstance(terms[0], tuple) and len(terms[0]) == 2 and isinstance(terms[0][0], str)):
        terms = [terms]
    terms = list(terms)
    if len(terms) != len(images):
        raise ValueError(f"image_terms: {len(images)} images but {len(terms)} term lists")
    if not images:
        raise ValueError("image_terms: no images given")
    titles = [None] * len(images) if titles is None else list(titles)
    highlight = [()] * len(images) if highlight is None else list(highlight)
    if len(titles) != len(images) or len(highlight) != len(images):
        raise ValueError(f"image_terms: titles ({len(titles)}) and highlight ({len(highlight)}) need one entry "
                         f"per image ({len(images)})")
    ncols = max(1, min(int(ncols), len(images)))
    nrows = int(np.ceil(len(images) / ncols))
    fig = plt.figure(figsize=(panel[0] * ncols, panel[1] * nrows), layout="constrained")
    grid = fig.add_gridspec(nrows, 2 * ncols, width_ratios=[1, 1.6] * ncols)
    for n, (img, ts, title, hl) in enumerate(zip(images, terms, titles, highlight)):
        r, c = divmod(n, ncols)
        _show_image(fig.add_subplot(grid[r, 2 * c]), img, title)
        term_bars(fig.add_subplot(grid[r, 2 * c + 1]), ts, hl)
    return fig


def term_contributions(z_q, z_d, vocab, k: int | None = 10, keep=None) -> list[tuple[str, float, float, float]]:
    """The sparse score ``S_s(q, d) = sum_j z_q[j] z_d[j]`` split by term (arXiv 2508.16707).

    Returns ``[(term, z_q[j], z_d[j], z_q[j] * z_d[j])]`` for the terms active in both vectors, largest
    contribution first (ties by token id), at most ``k`` of them (``None``: all; then the contributions sum to
    the score). ``keep``: a predicate on the printed term; terms failing it are left out before the ``k`` cut.
    """
    vocab = Vocabulary.coerce(vocab)
    z_q, z_d = torch.as_tensor(z_q).detach().float().cpu(), torch.as_tensor(z_d).detach().float().cpu()
    if z_q.dim() != 1 or z_q.shape != z_d.shape or z_q.shape[0] != len(vocab):
        raise ValueError(f"term_contributions: need two (|V|,) vectors over a vocabulary of {len(vocab)}, got "
                         f"{tuple(z_q.shape)} and {tuple(z_d.shape)}")
    if k is not None and (int(k) != k or k < 1):
        raise ValueError(f"term_contributions: k must be a positive integer or None, got {k!r}")
    prod = z_q * z_d
    nz = prod.nonzero().squeeze(1)
    order = nz[torch.argsort(prod[nz], descending=True, stable=True)]
    if keep is not None:
        order = [j for j in order if keep(vocab.term(int(j)))]
    if k is not None:
        order = order[:int(k)]
    return [(vocab.term(int(j)), float(z_q[j]), float(z_d[j]), float(prod[j])) for j in order]


def match_explanation(query: str, image, explanation, score: float | None = None, title: str | None = None,
                      figsize=(9.0, 3.2)):
    """Why did this image match: the query, the image, and each shared term's share of the sparse score.

    ``explanation``: ``[(term, query_weight, image_weight, contribution)]`` as from
    :meth:`jsdlib.apps.bundled.EmojiSearch.explain` or :func:`term_contributions`; bars show the contributions
    ``z_q[j] z_d[j]`` and are labelled ``q x d``. ``score``: the full sparse score, to say how much of it the
    shown terms explain.
    """
    rows = list(explanation)
    if any(len(r) != 4 for r in rows):
        raise ValueError("match_explanation: explanation rows must be (term, query_weight, image_weight, contribution)")
    fig = plt.figure(figsize=figsize, layout="constrained")
    grid = fig.add_gridspec(1, 2, width_ratios=[1, 2.6])
    _show_image(fig.add_subplot(grid[0, 0]), image, title)
    ax = fig.add_subplot(grid[0, 1])
    term_bars(ax, [(t, c) for t, _, _, c in rows], xlabel="contribution z_q[j] · z_d[j]", values=False)
    shown = sum(c for *_, c in rows)
    for yy, (t, q, d, c) in zip(range(len(rows) - 1, -1, -1), rows):
        ax.text(c, yy, f" {q:.2f} × {d:.2f} = {c:.2f}", va="center", fontsize=7)
    if rows:
        ax.set_xlim(0, max(c for *_, c in rows) * 1.9)
    head = f'query "{query}"'
    if score is not None:
        head += f": sparse score {score:.2f}, the {len(rows)} terms shown give {shown:.2f}"
    ax.set_title(_wrap(head, 90), fontsize=9, parse_math=False)
    return fig


def sparsity_summary(Z_i, Z_t, vocab, top: int = 20) -> dict:
    """Active terms per image and per caption, and the vocabulary's most used terms over the images.

    Returns ``{"terms_per_image": int array, "terms_per_caption": int array, "top_terms": [(term, share)]}``
    where ``share`` = the fraction of images whose vector uses the term (``p_j`` of D2S's FLOPs).
    """
    vocab = Vocabulary.coerce(vocab)
    Z_i, Z_t = torch.as_tensor(Z_i), torch.as_tensor(Z_t)
    for name, Z in (("Z_i", Z_i), ("Z_t", Z_t)):
        if Z.dim() != 2 or Z.shape[0] == 0 or Z.shape[1] != len(vocab):
            raise ValueError(f"sparsity_summary: {name} must be a non-empty (n, {len(vocab)}) matrix, "
                             f"got {tuple(Z.shape)}")
    if int(top) != top or top < 1:
        raise ValueError(f"sparsity_summary: top must be a positive integer, got {top!r}")
    p = term_shares(Z_i)
    n = min(int(top), int((p > 0).sum()))
    share, idx = torch.topk(p, n) if n else (p[:0], p[:0].long())
    return {"terms_per_image": (Z_i != 0).sum(1).numpy(), "terms_per_caption": (Z_t != 0).sum(1).numpy(),
            "top_terms": [(vocab.term(int(j)), float(s)) for s, j in zip(share, idx)]}


def sparsity_overview(Z_i, Z_t, vocab, top: int = 20, bins: int = 30, figsize=(13.0, 3.8)):
    """Sparsity at a glance: histograms of active terms per image and per caption, and the most used terms."""
    s = sparsity_summary(Z_i, Z_t, vocab, top)
    fig, axes = plt.subplots(1, 3, figsize=figsize, layout="constrained", width_ratios=[1, 1, 1.1])
    for ax, key, what, color in ((axes[0], "terms_per_image", "image", "tab:green"),
                                 (axes[1], "terms_per_caption", "caption", "tab:purple")):
        v = s[key]
        ax.hist(v, bins=bins, color=color)
        ax.axvline(float(np.mean(v)), color="black", linestyle="--", linewidth=1)
        ax.set_xlabel(f"active terms per {what}", fontsize=8)
        ax.set_ylabel(f"{what}s", fontsize=8)
        ax.set_title(f"{len(v)} {what}s: mean {np.mean(v):.1f}, median {np.median(v):.0f}", fontsize=9)
        ax.tick_params(labelsize=7)
    term_bars(axes[2], s["top_terms"], title=f"the {len(s['top_terms'])} terms most images use",
              xlabel="share of images using the term")
    return fig


def term_comparison(image, term_lists: dict, title: str | None = None, highlight=(), panel=(2.9, 3.2)):
    """One image and its top terms under several models side by side (before vs after JSD, JSD vs D2S, ...).

    ``term_lists``: ``{model name: [(term, weight)]}``; ``highlight``: terms to colour in every column (e.g.
    the caption's words). Terms every model agrees on are marked with a bullet.
    """
    if not isinstance(term_lists, dict) or not term_lists:
        raise ValueError("term_comparison: term_lists must be a non-empty {model name: [(term, weight)]} dict")
    lists = {name: _check_terms(ts, f"term_comparison[{name!r}]") for name, ts in term_lists.items()}
    common = set.intersection(*({t for t, _ in ts} for ts in lists.values())) if len(lists) > 1 else set()
    fig = plt.figure(figsize=(panel[0] * (len(lists) + 0.7), panel[1]), layout="constrained")
    grid = fig.add_gridspec(1, len(lists) + 1, width_ratios=[0.7] + [1] * len(lists))
    _show_image(fig.add_subplot(grid[0, 0]), image, title)
    for n, (name, ts) in enumerate(lists.items()):
        ax = fig.add_subplot(grid[0, n + 1])
        term_bars(ax, [(("• " if t in common else "") + t, w) for t, w in ts],
                  highlight={("• " if t in common else "") + t for t in highlight}, title=name)
    return fig
