"""The committed, ready-to-use models of the CPU course, and a small search object over the emoji set.

``jsdlib/assets/jsd_cpu_emoji.safetensors`` is a JSD model (:class:`jsdlib.jsd.model.JSDModel`: the two final
projections, the shared sparse head and tau) trained by :func:`train_bundled_jsd` on the four-style stand-in VLP's
features, preset ``cpu-emoji`` with :data:`BUNDLED_RECIPE`, seed 0, model selection on the Noto validation split:

- a **whole-word vocabulary** (``vocab_mask="words"``, :mod:`jsdlib.jsd.words`: no punctuation, symbols, word
  pieces, digits or special tokens among the terms);
- the **caption-word loss** (:mod:`jsdlib.jsd.caption_words`, weight 1: each image's head output ranks the content
  words of its captions first) and training on **every training style's images** (Noto, Twemoji, Fluent flat and
  modern), for 160 epochs (patience 40; it stopped after 101, best epoch 61);
- **half the preset's L1 weights** (``eta_t, eta_i`` = 0.005, 0.0015) and **no probabilistic expansion control**
  (PEC, as in D2S: captions masked to their own tokens with a probability decaying 1 -> 0). Before the word mask and
  the caption-word loss, PEC was what kept the terms words (without it a dog face got "lucky", "staff", "hail");
  with them, the recipe without PEC reads as well and its sparse score is closer to its dense one
  (:func:`write_pec_report` trains the same recipe with PEC for notebooks 02 and 03).

The recipe is the one issue 14's grounding search chose on validation (``benchmarks/grounding.py``,
``benchmarks/results_grounding_styles.txt``: ``pec-words-cw1-styles-e4x-nopec-l1x0.5``).
Later notebooks and the quickstart load it instead of training (``load_jsd``). The head's ``E`` (|V| x e =
30,522 x 384) is stored in float16 to halve the file; everything else in float32. The file *is* the model: the
numbers in its metadata are computed from the saved (float16-``E``) weights after saving.

    jsdlib jsd export --out jsdlib/assets/jsd_cpu_emoji.safetensors      # retrain and overwrite (~45 min)

:class:`EmojiSearch` wires the stand-in VLP and the bundled JSD model into text -> image search over one emoji
split: ``search`` ranks by the sparse score ``z_t . z_i``, the dense score ``d_t . d_i / tau`` or the integrated
score ``w1 S_d + w2 S_s`` (arXiv 2508.16707), and ``explain`` splits a sparse score into its per-term products
``z_t[j] * z_i[j]`` (the answer to "why did this image match").
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from jsdlib.apps.readability import readability_of_vectors
from jsdlib.common.io import write_json
from jsdlib.common.paths import REPO_ROOT
from jsdlib.data.emoji_styles import noto_subsets
from jsdlib.data.split import concat_splits
from jsdlib.data.karpathy import load_emoji
from jsdlib.jsd.features import emoji_features
from jsdlib.jsd.evaluate import encode, evaluate_model
from jsdlib.jsd.io import JSD_ASSET, load_jsd, save_jsd
from jsdlib.jsd.presets import get_preset
from jsdlib.jsd.train import train_jsd
from jsdlib.jsd.vocab import Vocabulary, top_terms
from jsdlib.vlp.features import cached_features
from jsdlib.vlp.projection import pre_projection, tokenize
from jsdlib.vlp.standin import load_standin


# The committed model's recipe on top of the ``cpu-emoji`` preset (the module docstring): L1 weights half the
# preset's (0.01, 0.003); ``train_set`` is not a preset field (the features it trains on)
BUNDLED_RECIPE = {"train_set": "styles", "pec": False, "vocab_mask": "words", "caption_words_weight": 1.0,
                  "epochs": 160, "patience": 40, "eta_t": 0.005, "eta_i": 0.0015}


def train_bundled_jsd(out=None, preset: str = "cpu-emoji", seed: int = 0, pec: bool | None = None, run_dir=None,
                      progress: bool = True, log=print, standin=None, **overrides) -> dict:
    """Train JSD on the emoji features (``preset``, ``seed``), save it to ``out`` and record its metrics.

    The validation and test metrics stored in the metadata are measured on the *saved* model (reloaded), so a
    later ``load_jsd`` reproduces them exactly (``tests/test_bundled.py`` checks). ``overrides``: other preset fields
    replacing :data:`BUNDLED_RECIPE`'s (e.g. ``vocab_mask=None``, ``epochs=40``); ``pec``: PEC on or off (default:
    the recipe's, off); ``standin``: the stand-in
    checkpoint whose features it trains on (default: the committed one); ``train_set``: ``"styles"`` (every
    training style's images, :func:`jsdlib.jsd.features.emoji_features`) or ``"noto"``, validated and tested on the
    Noto splits as always.
    """
    overrides = BUNDLED_RECIPE | overrides | ({} if pec is None else {"pec": bool(pec)})
    train_set = overrides.pop("train_set")
    cfg = get_preset(preset, seed=seed, **overrides)
    fs = emoji_features(standin, progress=progress, train_set=train_set)
    res = train_jsd(fs.train, fs.val, cfg, run_dir=run_dir, progress=progress, E_init=fs.E_init,
                    special_ids=fs.special_ids, caption_token_ids=fs.caption_token_ids, log=log, vocab=fs.vocab)
    out = Path(out) if out is not None else JSD_ASSET
    meta = {"preset": cfg.name, "seed": seed, "best_epoch": res["best"]["epoch"], "epochs_run": res["epoch"],
            "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
            "vlp": fs.test.meta.get("model"), "vlp_weights": _in_repo(fs.test.meta.get("weights")),
            "train_set": train_set,
            "trained_on": (f"emoji {'multi-style ' if train_set == 'styles' else ''}train split (stand-in VLP "
                           "pre-projection features); selected on val sparse R@1")}
    save_jsd(res["model"], out, meta)
    model, _ = load_jsd(out)
    w1, w2 = cfg.w1, cfg.w2
    for name, feats in (("val", fs.val), ("test", fs.test)):
        meta[name] = _summary(evaluate_model(model, feats, w1, w2))
        meta[name]["readability"] = _readability(model, feats, name, fs.vocab)
    save_jsd(model, out, meta)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): test sparse R@1 {meta['test']['sparse']['R@1']:.1f}, "
        f"dense {meta['test']['dense']['R@1']:.1f}, integrated {meta['test']['integrated']['R@1']:.1f}; "
        f"terms q/d {meta['test']['terms_q']:.0f}/{meta['test']['terms_d']:.0f}")
    return meta


def _in_repo(path):
    """``path`` relative to the repository when it lies inside it (the metadata then reads the same on any
    checkout), else as given."""
    if path is None:
        return None
    try:
        return Path(path).resolve().relative_to(REPO_ROOT.resolve()).as_posix()
    except ValueError:
        return str(path)


def _readability(model, feats, split: str, vocab, k: int = 5) -> dict:
    """``readable@k`` / ``specific@k`` of the split's image vectors, overall and per multi-style subset
    (:func:`jsdlib.apps.readability.readability`; subsets: :func:`jsdlib.data.emoji_styles.noto_subsets`)."""
    data = load_emoji(split)
    read = readability_of_vectors(encode(model, feats)["Z_i"], vocab, [data.captions_of(i) for i in range(len(data))],
                                  k=k, subsets=noto_subsets(split))
    return {"k": k, **{g: {m: round(float(r[m]), 4) for m in ("readable", "specific")} for g, r in read.items()}}


def _summary(ev: dict) -> dict:
    out = {k: {m: round(float(v), 4) for m, v in ev[k].items()} for k in ("sparse", "dense", "integrated")}
    out.update({k: round(float(ev[k]), 4) for k in ("terms_q", "terms_d", "flops")})
    return out


class EmojiSearch:
    """Text -> image search over a bundled emoji split (or ``"all"`` 3,635 images) with the stand-in VLP and JSD.

    ``split``: ``"train"``, ``"val"``, ``"test"`` (default; the images JSD never saw) or ``"all"`` (the three
    concatenated, as one :class:`~jsdlib.data.split.ImageTextSplit` whose ``image_meta[i]["split"]`` names the origin).

    ``enc`` holds the split's encodings (``D_t, Z_t`` of its captions, ``D_i, Z_i`` of its images; see
    :func:`jsdlib.jsd.evaluate.encode`); ``d_i`` / ``z_i`` are the image sides. Scores (arXiv 2508.16707)::

        sparse      S_s = z_t . z_i
        dense       S_d = d_t . d_i / tau
        integrated  S_x = w1 S_d + w2 S_s          (w1, w2 of the model's preset)
    """

    SCORES = ("sparse", "dense", "integrated")

    def __init__(self, split: str = "test", model=None, meta: dict | None = None, vlp=None, progress: bool = False):
        if model is None:
            model, meta = load_jsd()
        self.model, self.meta = model.eval(), meta or {}
        cfg = get_preset(self.meta.get("preset", "cpu-emoji"))
        self.w1, self.w2 = cfg.w1, cfg.w2
        self.tau = float(model.tau.detach())
        self.vlp = vlp if vlp is not None else load_standin()
        names = ("train", "val", "test") if split == "all" else (split,)
        parts = [load_emoji(s) for s in names]
        self.split = parts[0] if len(parts) == 1 else concat_splits(parts, "all")
        encs = [encode(model, cached_features(self.vlp, p, progress=progress)) for p in parts]
        self.enc = {k: torch.cat([e[k] for e in encs]) for k in encs[0]}
        self.d_i, self.z_i = self.enc["D_i"], self.enc["Z_i"]
        self.vocab = Vocabulary.from_minilm()

    def __len__(self) -> int:
        return len(self.split.image_paths)

    @torch.no_grad()
    def encode_query(self, texts: Sequence[str] | str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(d_t, z_t)`` for raw caption strings: VLP text tower -> pre-projection h_t -> JSD projection and head."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts or any(not isinstance(t, str) or not t.strip() for t in texts):
            raise ValueError(f"encode_query needs non-empty strings, got {texts!r}")
        m = self.vlp.model.eval()
        with pre_projection(m):
            h = m.encode_text(tokenize(m, self.vlp.tokenizer, texts)).float()
        d = self.model.dense_text(h)
        return d, self.model.head(d)

    def scores(self, query: str, score: str = "sparse") -> torch.Tensor:
        """Scores of every image of the split for one query string."""
        if score not in self.SCORES:
            raise ValueError(f"score must be one of {self.SCORES}, got {score!r}")
        d, z = self.encode_query(query)
        S_s = (z @ self.z_i.T)[0]
        if score == "sparse":
            return S_s
        S_d = (d @ self.d_i.T)[0] / self.tau
        return S_d if score == "dense" else self.w1 * S_d + self.w2 * S_s

    def search(self, query: str, k: int = 10, score: str = "sparse") -> list[tuple[int, float]]:
        """Top-``k`` ``(image_index, score)``, best first; ties broken by the lower index."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        s = self.scores(query, score)
        order = sorted(range(len(s)), key=lambda i: (-float(s[i]), i))[:k]
        return [(i, float(s[i])) for i in order]

    def image_index(self, ident) -> int:
        """An image's row from its index (int), its file name, or one of its exact captions (e.g. ``"dog face"``)."""
        if isinstance(ident, int) or (isinstance(ident, str) and ident.isdigit()):
            i = int(ident)
            if not 0 <= i < len(self):
                raise IndexError(f"image index {i} outside [0, {len(self)})")
            return i
        names = [Path(p).name for p in self.split.image_paths]
        if ident in names:
            return names.index(ident)
        for i in range(len(self)):
            if ident in self.split.captions_of(i):
                return i
        raise KeyError(f"no image in the emoji {self.split.split} images with file name or caption {ident!r}")

    def image_terms(self, i: int, k: int = 20) -> list[tuple[str, float]]:
        """The ``k`` highest-weighted vocabulary terms of image ``i``."""
        return top_terms(self.z_i[i], k, self.vocab)

    def explain(self, query: str, i: int, k: int = 10) -> list[tuple[str, float, float, float]]:
        """``[(term, z_t[j], z_i[j], z_t[j] * z_i[j])]`` for the ``k`` terms contributing most to ``S_s(query, i)``.

        The contributions of *all* shared terms sum to the sparse score (only the top ``k`` are returned).
        """
        _, z = self.encode_query(query)
        prod = z[0] * self.z_i[i]
        nz = prod.nonzero().squeeze(1)
        order = nz[torch.argsort(prod[nz], descending=True, stable=True)][:k]
        return [(self.vocab.term(int(j)), float(z[0, j]), float(self.z_i[i, j]), float(prod[j])) for j in order]


def term_report(search: "EmojiSearch", captions: Sequence[str], k: int = 12) -> dict:
    """``{caption: {"image_terms": [[term, weight], ...], "query_terms": [...]}}``: the top-``k`` terms of the
    image with that exact caption and of the caption typed as a query (weights rounded to 3 decimals)."""
    out = {}
    for c in captions:
        i = search.image_index(c)
        _, z = search.encode_query(c)
        out[c] = {"image_terms": [[t, round(w, 3)] for t, w in search.image_terms(i, k)],
                  "query_terms": [[t, round(w, 3)] for t, w in top_terms(z[0], k, search.vocab)]}
    return out


def write_pec_report(path, model_path=None, captions: Sequence[str] = ("dog face", "red apple", "airplane",
                     "pig face", "rocket", "umbrella"), k: int = 12, progress: bool = True, run_dir=None) -> dict:
    """The bundled recipe trained with the *other* PEC setting (PEC on: the recipe has it off), summarised for
    notebooks 02 and 03 (a 24 MB second checkpoint is not committed): its recorded metrics and the top terms of a few
    emoji. ``model_path``: a checkpoint from ``jsdlib jsd export --pec --out PATH``; without it one is trained first
    (up to 160 epochs, about 50 minutes on 2 cores; ``run_dir`` makes that training resumable)."""
    with tempfile.TemporaryDirectory() as tmp:
        if model_path is None:
            model_path = Path(tmp) / "jsd_other_pec.safetensors"
            train_bundled_jsd(model_path, pec=not BUNDLED_RECIPE["pec"], progress=progress, run_dir=run_dir)
        model, meta = load_jsd(model_path)
        report = {"model": {k: meta[k] for k in ("preset", "seed", "best_epoch", "val", "test")},
                  "pec": meta["config"]["pec"], "terms": term_report(EmojiSearch("all", model, meta), captions, k)}
    write_json(report, path)
    return report
