"""Reading sparse vectors: an interactive explorer (ipywidgets), its static twin, and term look-ups.

A JSD sparse vector ``z = log(1 + ReLU(E LayerNorm(W_p d + b_p)))`` (arXiv 2508.16707) has one weight per
vocabulary token, so an image *is* a weighted bag of words and a sparse match *is* a sum over shared words::

    S_s(q, i) = z_q . z_i = sum_j z_q[j] z_i[j]          (each term j contributes z_q[j] z_i[j])

:class:`Explorer` shows that over an :class:`jsdlib.apps.bundled.EmojiSearch`: pick an image and see its terms; type a
query and see the top images with the terms they share with it (and how much each adds to the score); a
control for ``k`` and a "words only" switch (on by default: punctuation, pieces, digits and special tokens are
hidden from the lists, while the scores stay the full sums). It is a widget in JupyterLab / Notebook 7 / VS Code, and it also carries a PNG of its current
state in the same output, which front ends without a widget manager (nbviewer, GitHub, a plain nbconvert)
show instead; :meth:`Explorer.static` returns that figure, :meth:`Explorer.image_view` /
:meth:`Explorer.query_view` return the data behind it (for printing and testing).

Term kinds (:func:`term_kind`): ``special`` (``[CLS]``, ``[SEP]``, ... -- masked when
``JSDConfig.mask_special_tokens=True``), ``unused`` (BERT's ``[unusedN]`` slots, never seen in pre-training),
``piece`` (a WordPiece continuation such as ``-ing``) and ``word``.
"""
from __future__ import annotations

import base64
import html
import io
import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
import numpy as np
import torch
from PIL import Image

from jsdlib.apps import viz
from jsdlib.data.karpathy import load_emoji
from jsdlib.jsd.vocab import Vocabulary, caption_token_ids, top_terms
from jsdlib.jsd.words import is_alpha_word
from jsdlib.vlp.minilm import minilm_tokenizer
from jsdlib.jsd.io import load_jsd
from jsdlib.vlp.features import cached_features
from jsdlib.vlp.standin import load_standin

_UNUSED = re.compile(r"^\[unused\d+\]$")
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------
# Terms: kinds, caption words, expansion
# ----------------------------------------------------------------------------------------------
def special_terms(vocab) -> frozenset:
    """The printed form of the vocabulary's special tokens (``[CLS]``, ``[SEP]``, ``[PAD]``, ...)."""
    return frozenset(vocab.term(i) for i in vocab.special_ids)


def term_kind(term: str, vocab=None) -> str:
    """``"special"``, ``"unused"``, ``"piece"`` (a sub-word continuation, printed ``-xx`` or ``xx-``) or ``"word"``."""
    if vocab is not None and term in special_terms(vocab):
        return "special"
    if _UNUSED.match(term):
        return "unused"
    if len(term) > 1 and (term.startswith("-") or term.endswith("-")):
        return "piece"
    return "word"


@lru_cache(maxsize=1)
def _tokenizer():
    return minilm_tokenizer()


def caption_terms(captions: Sequence[str] | str, vocab, tokenizer=None) -> set[str]:
    """The terms (printed as :meth:`Vocabulary.term` prints them) of the tokens of ``captions``.

    A top term of an image that is *not* in this set is an **expansion** term: a word the head adds that
    none of the image's captions contains. ``tokenizer``: a Hugging Face tokenizer (default: MiniLM's).
    """
    captions = [captions] if isinstance(captions, str) else list(captions)
    ids = caption_token_ids(captions, tokenizer if tokenizer is not None else _tokenizer())
    return {vocab.term(int(j)) for row in ids for j in row}


def expansion_share(terms, caption_words: set[str]) -> float:
    """Share of ``[(term, weight)]`` whose term is not one of the ``caption_words`` (0 for no terms)."""
    terms = list(terms)
    return sum(t not in caption_words for t, _ in terms) / len(terms) if terms else 0.0


# ----------------------------------------------------------------------------------------------
# Look-ups by image id or caption (the `jsdlib terms` command)
# ----------------------------------------------------------------------------------------------
def find_image(ident) -> tuple[str, int]:
    """``(split, row)`` of a bundled emoji image named by its image id (``imgid``), file name or an exact caption.

    Raises ``KeyError`` with the nearest captions when nothing matches.
    """
    ident = str(ident).strip()
    if not ident:
        raise KeyError("an image id, file name or caption is needed, got an empty string")
    splits = {s: load_emoji(s, check_images=False) for s in SPLITS}
    for s, sp in splits.items():
        if ident.isdigit() and int(ident) in sp.image_ids:
            return s, sp.image_ids.index(int(ident))
        names = [Path(p).name for p in sp.image_paths]
        if ident in names:
            return s, names.index(ident)
    low = ident.lower()
    for s, sp in splits.items():
        for c, cap in enumerate(sp.captions):
            if cap.lower() == low:
                return s, int(sp.caption_to_image[c])
    if ident.isdigit():
        n = sum(sp.n_images for sp in splits.values())
        raise KeyError(f"no emoji image with id {ident} (ids run from 0 to {n - 1})")
    near = sorted({cap for sp in splits.values() for cap in sp.captions if low in cap.lower()}, key=len)[:5]
    hint = f"; captions containing it: {near}" if near else ""
    raise KeyError(f"no emoji image with the id, file name or exact caption {ident!r}{hint}")


def image_terms_by_id(ident, k: int = 20, model=None, words_only: bool = True) -> dict:
    """Top-``k`` terms of a bundled emoji image under the bundled JSD model (or ``model``).

    ``words_only``: list only whole words (:func:`jsdlib.jsd.words.is_alpha_word`; no punctuation, pieces, digits
    or special tokens); ``False`` lists every term. Returns ``{"image_id", "split", "row", "file", "captions",
    "terms": [(term, weight)], "active", "active_words", "words_only"}`` (``active_words``: how many of the
    ``active`` terms are words). Uses
    the cached stand-in features of the image's split (computed once, see :func:`jsdlib.vlp.features.cached_features`).
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    split_name, row = find_image(ident)
    if model is None:
        model, _ = load_jsd()
    split = load_emoji(split_name)
    feats = cached_features(load_standin(), split, progress=False)
    with torch.no_grad():
        z = model.head(model.dense_image(feats.image[row:row + 1].float()))[0]
    vocab = Vocabulary.from_hf(_tokenizer())
    active = [vocab.term(int(j)) for j in z.nonzero().squeeze(1)]
    return {"image_id": int(split.image_ids[row]), "split": split_name, "row": row,
            "file": Path(split.image_paths[row]).name, "captions": split.captions_of(row),
            "terms": top_terms(z, int(k), vocab, is_alpha_word if words_only else None), "active": len(active),
            "active_words": sum(map(is_alpha_word, active)), "words_only": bool(words_only),
            "image": split.load_image(row)}


# ----------------------------------------------------------------------------------------------
# The explorer
# ----------------------------------------------------------------------------------------------
_CSS = """<style>
.jsd-explorer {line-height: 1.35}
.jsd-explorer table.jsd-terms {border-collapse: collapse; font-size: 12px; line-height: 1.2}
.jsd-explorer table.jsd-terms td {padding: 1px 6px}
.jsd-explorer .jsd-bar {background: #1f77b4; height: 10px}
.jsd-explorer .jsd-bar.caption {background: #ff7f0e}
.jsd-explorer .jsd-kind-special, .jsd-explorer .jsd-kind-unused {color: #c0392b; font-weight: bold}
.jsd-explorer .jsd-kind-piece {font-style: italic; color: #555}
.jsd-explorer .jsd-results {display: flex; flex-wrap: wrap; gap: 8px}
.jsd-explorer .jsd-card {border: 1px solid #ccc; border-radius: 4px; padding: 4px; width: 150px; font-size: 11px}
.jsd-explorer .jsd-card img {display: block; margin: 0 auto}
.jsd-explorer mark.jsd-match {background: #ffe08a; padding: 0 2px; border-radius: 2px}
</style>"""


def _png(image, size: int | None = None) -> bytes:
    im = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    if size:
        im = im.resize((size, size), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class Explorer:
    """Interactive view of what a sparse retriever sees, over an :class:`~jsdlib.apps.bundled.EmojiSearch`.

    Controls: an image slider and a caption drop-down (kept in step), ``k`` (terms shown), a query box, the
    score to rank by (sparse / dense / integrated) and the number of images returned. ``widget`` is the
    ipywidgets box; displaying the Explorer shows it (with a static PNG for front ends without widgets).

    ``search`` needs ``split``, ``z_i``, ``vocab``, ``encode_query(texts) -> (d, z)`` and
    ``search(query, k, score)``, as :class:`~jsdlib.apps.bundled.EmojiSearch` has.
    """

    def __init__(self, search, image: int = 0, query: str = "dog face", k: int = 10, n_results: int = 5,
                 score: str = "sparse", k_max: int = 40, words_only: bool = True):
        self.search = search
        self.n_images = int(search.z_i.shape[0])
        if not 0 <= int(image) < self.n_images:
            raise IndexError(f"Explorer: image {image} outside [0, {self.n_images})")
        if int(k) != k or not 1 <= k <= k_max:
            raise ValueError(f"Explorer: k must be an integer in [1, {k_max}], got {k!r}")
        if int(n_results) != n_results or not 1 <= n_results <= self.n_images:
            raise ValueError(f"Explorer: n_results must be an integer in [1, {self.n_images}], got {n_results!r}")
        scores = getattr(search, "SCORES", ("sparse",))
        if score not in scores:
            raise ValueError(f"Explorer: score must be one of {tuple(scores)}, got {score!r}")
        self.state = {"image": int(image), "query": str(query), "k": int(k), "n": int(n_results), "score": score,
                      "words_only": bool(words_only)}
        self._scores, self._k_max = tuple(scores), int(k_max)
        self._caption_words: dict[int, set] = {}
        self._thumbs: dict[tuple, str] = {}
        self._widget = None

    # -- data ------------------------------------------------------------------------------------
    def caption_words(self, i: int) -> set[str]:
        """Terms of image ``i``'s captions (to tell caption words from expansion terms)."""
        if i not in self._caption_words:
            self._caption_words[i] = caption_terms(self.search.split.captions_of(i), self.search.vocab)
        return self._caption_words[i]

    def _keep(self):
        """The term filter of the current state: whole words only (default) or every term."""
        return is_alpha_word if self.state["words_only"] else None

    def image_view(self, i: int | None = None, k: int | None = None) -> dict:
        """``{"index", "captions", "active", "terms": [(term, weight, kind, in_caption)]}`` for image ``i``
        (only whole words while ``state["words_only"]``; ``active`` counts every active term)."""
        i = self.state["image"] if i is None else int(i)
        k = self.state["k"] if k is None else int(k)
        if not 0 <= i < self.n_images:
            raise IndexError(f"image {i} outside [0, {self.n_images})")
        words = self.caption_words(i)
        z = self.search.z_i[i]
        terms = top_terms(z, k, self.search.vocab, self._keep())
        return {"index": i, "captions": self.search.split.captions_of(i), "active": int((z != 0).sum()),
                "terms": [(t, w, term_kind(t, self.search.vocab), t in words) for t, w in terms]}

    def query_view(self, query: str | None = None, k: int | None = None, n: int | None = None,
                   score: str | None = None) -> dict:
        """The top-``n`` images for ``query`` and, for each, the shared terms with their contributions.

        ``{"query", "score", "query_terms": [(term, weight)], "results": [{"index", "score", "captions",
        "sparse_score", "matched": [(term, z_q, z_i, z_q * z_i)]}]}``; ``matched`` lists at most ``k`` terms;
        ``sparse_score`` is the full ``z_q . z_i`` (what all shared terms sum to).
        """
        query = self.state["query"] if query is None else str(query)
        k = self.state["k"] if k is None else int(k)
        n = self.state["n"] if n is None else int(n)
        score = self.state["score"] if score is None else score
        _, z = self.search.encode_query(query)
        z = z[0]
        hits = self.search.search(query, k=n, score=score)
        results = []
        for i, s in hits:
            zi = self.search.z_i[i]
            results.append({"index": int(i), "score": float(s), "captions": self.search.split.captions_of(i),
                            "sparse_score": float(z @ zi),
                            "matched": viz.term_contributions(z, zi, self.search.vocab, k, self._keep())})
        return {"query": query, "score": score, "query_terms": top_terms(z, k, self.search.vocab, self._keep()),
                "results": results}

    # -- static figure -----------------------------------------------------------------------------
    def static(self, image: int | None = None, query: str | None = None, k: int | None = None,
               n: int | None = None, score: str | None = None, width: float = 12.0):
        """The explorer's current (or given) state as one matplotlib figure: image + terms, query + results."""
        iv = self.image_view(image, k)
        qv = self.query_view(query, k, n, score)
        n_res = max(1, len(qv["results"]))
        fig = plt.figure(figsize=(width, 6.4), layout="constrained")
        top, bottom = fig.subfigures(2, 1, height_ratios=[1, 1.15])
        g = top.add_gridspec(1, 3, width_ratios=[1, 2.2, 2.2])
        viz._show_image(top.add_subplot(g[0, 0]), self.search.split.load_image(iv["index"]),
                        f"image {iv['index']}: {iv['captions'][0]}")
        viz.term_bars(top.add_subplot(g[0, 1]), [(t, w) for t, w, *_ in iv["terms"]],
                      highlight={t for t, _, _, c in iv["terms"] if c},
                      title=f"top {len(iv['terms'])} of {iv['active']} active terms (orange: in a caption)")
        viz.term_bars(top.add_subplot(g[0, 2]), qv["query_terms"], title=f'query "{qv["query"]}": its terms',
                      color="tab:gray")
        gb = bottom.add_gridspec(2, n_res, height_ratios=[1, 1.1])
        for c, r in enumerate(qv["results"]):
            viz._show_image(bottom.add_subplot(gb[0, c]), self.search.split.load_image(r["index"]),
                            f"#{c + 1} {qv['score']} {r['score']:.2f}\n{r['captions'][0]}")
            ax = bottom.add_subplot(gb[1, c])
            ax.axis("off")
            lines = [f"{viz.term_label(t, 14)}: {q:.2f}×{d:.2f}" for t, q, d, _ in r["matched"][:8]] or ["no shared term"]
            ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=7, family="monospace",
                    transform=ax.transAxes, parse_math=False)
        bottom.suptitle(f'top {len(qv["results"])} images for "{qv["query"]}" by the {qv["score"]} score, with the '
                        "terms they share with the query (z_q × z_i)", fontsize=9)
        return fig

    def static_png(self, dpi: int = 80, **kw) -> bytes:
        """:meth:`static` rendered to PNG bytes (the figure is closed, so nothing else is displayed)."""
        fig = self.static(**kw)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=dpi)
        plt.close(fig)
        return buf.getvalue()

    # -- HTML pieces of the widget -------------------------------------------------------------------
    def _thumb(self, i: int, size: int = 64) -> str:
        if (i, size) not in self._thumbs:
            data = base64.b64encode(_png(self.search.split.load_image(i), size)).decode()
            self._thumbs[(i, size)] = f'<img src="data:image/png;base64,{data}" width="{size}" height="{size}">'
        return self._thumbs[(i, size)]

    def image_html(self, view: dict) -> str:
        """The term table of :meth:`image_view` as HTML (bars; caption words orange; special/piece tokens styled)."""
        top = max([w for _, w, *_ in view["terms"]] or [1.0])
        rows = []
        for t, w, kind, in_cap in view["terms"]:
            bar = f'<div class="jsd-bar{" caption" if in_cap else ""}" style="width:{int(160 * w / top)}px"></div>'
            rows.append(f'<tr><td class="jsd-kind-{kind}">{html.escape(t)}</td><td>{bar}</td><td>{w:.2f}</td></tr>')
        caps = " | ".join(html.escape(c) for c in view["captions"])
        return (f'{_CSS}<div class="jsd-explorer"><b>image {view["index"]}</b>: {caps}<br>'
                f'{view["active"]} active terms; top {len(view["terms"])}{" words" if self.state["words_only"] else ""} (orange bar: a word of its captions, '
                f'otherwise an expansion term; red: special token, italic: sub-word piece)'
                f'<table class="jsd-terms">{"".join(rows)}</table></div>')

    def results_html(self, view: dict) -> str:
        """The results of :meth:`query_view` as HTML cards, matched terms highlighted with their contributions."""
        qterms = ", ".join(f"{html.escape(t)} {w:.2f}" for t, w in view["query_terms"])
        cards = []
        for rank, r in enumerate(view["results"], 1):
            matched = " ".join(f'<mark class="jsd-match">{html.escape(t)} {q:.2f}×{d:.2f}</mark>'
                               for t, q, d, _ in r["matched"]) or "<i>no shared term</i>"
            extra = "" if view["score"] == "sparse" else f' (sparse {r["sparse_score"]:.2f})'
            cards.append(f'<div class="jsd-card">{self._thumb(r["index"])}<b>#{rank}</b> image {r["index"]}: '
                         f'{html.escape(r["captions"][0])}<br>{view["score"]} {r["score"]:.2f}{extra}'
                         f'<br>{matched}</div>')
        return (f'{_CSS}<div class="jsd-explorer"><b>query terms</b>: {qterms or "<i>none active</i>"}'
                f'<div class="jsd-results">{"".join(cards)}</div></div>')

    # -- the widget ----------------------------------------------------------------------------------
    @property
    def widget(self):
        """The ipywidgets box (built on first use)."""
        if self._widget is None:
            self._widget = self._build()
        return self._widget

    def _build(self):
        st = self.state
        caps = [(f"{i}: {self.search.split.captions_of(i)[0]}", i) for i in range(self.n_images)]
        self.w_image = W.IntSlider(value=st["image"], min=0, max=self.n_images - 1, description="image",
                                   continuous_update=False)
        self.w_pick = W.Dropdown(options=caps, value=st["image"], description="or pick",
                                 layout=W.Layout(width="320px"))
        self.w_k = W.IntSlider(value=st["k"], min=1, max=self._k_max, description="k terms", continuous_update=False)
        self.w_words = W.Checkbox(value=st["words_only"], description="words only", indent=False,
                                  layout=W.Layout(width="110px"))
        self.w_query = W.Text(value=st["query"], description="query", continuous_update=False,
                              placeholder="type a query and press Enter")
        self.w_score = W.Dropdown(options=list(self._scores), value=st["score"], description="rank by",
                                  layout=W.Layout(width="220px"))
        self.w_n = W.IntSlider(value=st["n"], min=1, max=min(12, self.n_images), description="images",
                               continuous_update=False)
        self.w_thumb = W.Image(format="png", layout=W.Layout(width="128px", height="128px", min_width="128px",
                                                             object_fit="contain"))
        self.w_terms = W.HTML()
        self.w_results = W.HTML()
        W.link((self.w_image, "value"), (self.w_pick, "value"))
        self.w_image.observe(self._on_image, names="value")
        self.w_k.observe(self._on_k, names="value")
        self.w_words.observe(self._on_words, names="value")
        for w in (self.w_query, self.w_score, self.w_n):
            w.observe(self._on_query, names="value")
        self._render_image()
        self._render_query()
        box = W.VBox([W.HTML("<b>What the sparse retriever sees</b> (JSD head over the emoji images)"),
                      W.HBox([self.w_image, self.w_pick, self.w_k, self.w_words]),
                      W.HBox([self.w_thumb, self.w_terms], layout=W.Layout(align_items="flex-start")),
                      W.HBox([self.w_query, self.w_score, self.w_n]),
                      self.w_results])
        box.add_class("jsd-explorer-widget")
        return box

    def _render_image(self):
        try:
            view = self.image_view()
            self.w_thumb.value = _png(self.search.split.load_image(view["index"]), 128)
            self.w_terms.value = self.image_html(view)
        except Exception as e:  # shown in the widget: a callback's exception would otherwise vanish in a log
            self.w_terms.value = f"<pre>{html.escape(type(e).__name__ + ': ' + str(e))}</pre>"

    def _render_query(self):
        try:
            self.w_results.value = self.results_html(self.query_view())
        except Exception as e:
            self.w_results.value = f"<pre>{html.escape(type(e).__name__ + ': ' + str(e))}</pre>"

    def _on_image(self, change):
        self.state["image"] = int(change["new"])
        self._render_image()

    def _on_k(self, change):
        self.state["k"] = int(change["new"])
        self._render_image()
        self._render_query()

    def _on_words(self, change):
        self.state["words_only"] = bool(change["new"])
        self._render_image()
        self._render_query()

    def _on_query(self, change):
        self.state.update(query=self.w_query.value, score=self.w_score.value, n=int(self.w_n.value))
        self._render_query()

    def _repr_mimebundle_(self, **kwargs):
        """The widget, plus a PNG of the current state for front ends that cannot render widgets."""
        bundle = dict(self.widget._repr_mimebundle_(**kwargs) or {})
        bundle["text/plain"] = (f"Explorer over {self.n_images} images (image {self.state['image']}, "
                                f"query {self.state['query']!r}, k={self.state['k']})")
        try:
            bundle["image/png"] = base64.b64encode(self.static_png()).decode()
        except Exception as e:  # a repr must not raise: say why there is no picture instead
            bundle["text/plain"] += f"; no static view: {type(e).__name__}: {e}"
        return bundle


__all__ = ["Explorer", "caption_terms", "expansion_share", "find_image", "image_terms_by_id", "special_terms",
           "term_kind"]
