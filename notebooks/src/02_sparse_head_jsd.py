# %% [markdown]
# # 02 — The sparse head and joint training (JSD)
#
# **What you will learn.** How a dense embedding becomes a vocabulary-sized, non-negative, sparse vector
# (`z = log(1 + ReLU(E LayerNorm(W d + b)))`) and why `E` starts from the word embeddings; the three score
# matrices of JSD (dense, sparse, integrated) and its loss — InfoNCE on each, self-distillation from the
# integrated score into both, L1 with a quadratic warm-up; one training step computed by hand and by the
# library; how SPLADE's max pooling over tokens differs from JSD's one-vector head; training and its curves;
# D2S's expansion control (PEC) and what it does to terms and FLOPs (the model that notebooks 00 and 03-05 load
# is trained without it: section 6 shows the same recipe with and without PEC); and the comparison
# with the dense original, D2S and the two ablations, seed by seed.
#
# **Time:** about 2 minutes on a 2-core laptop CPU (one short JSD training run; the 40-epoch runs and the
# three-seed table are read from the committed result of the course's main job, `jsdlib reproduce`, in
# `results/reproduce_cpu/` (the same file notebook 06 reads); `JSDLIB_FULL=1` trains JSD and D2S for 40 epochs
# here, as long as the main job's `jsd_compare` step, whose time notebook 06 prints).
# **Needs:** notebook 01's stand-in VLP (committed; its features are cached on first use).
#
# Paper: Song et al., *Sparse and Dense Retrievers Learn Better Together: Joint Sparse-Dense Optimization
# for Text-Image Retrieval*, CIKM 2025, [arXiv 2508.16707](https://arxiv.org/abs/2508.16707). Where jsdlib
# departs from the authors' code: [docs/fidelity.md](../docs/fidelity.md); terms: [glossary](../docs/glossary.md).
# <!-- claim-checked: "Better" is a word of the paper's title -->

# %%
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt

from jsdlib import jsd
from jsdlib.apps import bundled, viz
from jsdlib.apps.exercises import Exercises
from jsdlib.common import hardware, metrics
from jsdlib.experiments import jsd_compare, reproduce, tables
from jsdlib.jsd.presets import get_preset
from jsdlib.jsd.splade import max_pooled_terms, tied_mlm_logits
from jsdlib.jsd.train import pec_probability

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"
MAIN_JOB = Path("results") / "reproduce_cpu" / "results.json"   # `jsdlib reproduce --preset cpu` (notebook 06)
torch.manual_seed(SEED)
torch.set_num_threads(2)
ex = Exercises(solutions=True)   # False: hide the solutions and try the exercises yourself
cfg = get_preset("cpu-emoji")
print("preset:", cfg.name, {k: getattr(cfg, k) for k in ("lr", "w1", "w2", "lam1", "lam2", "eta_t", "eta_i",
                                                         "batch_size", "epochs", "max_terms_q", "max_terms_d")})

# %% [markdown]
# ## 1. Inputs: cached pre-projection features
#
# JSD never runs the encoders: it trains on the features notebook 01 cached, starting from the stand-in's
# final projections `W_t, W_v`. The sparse head's `E` starts from MiniLM's word-embedding matrix
# (30,522 WordPiece tokens x 384), so every output dimension *is* a vocabulary term from the first step.

# %%
fs = jsd.emoji_features()
for name in ("train", "val", "test"):
    f = getattr(fs, name)
    print(f"{name:5s}: captions {tuple(f.text.shape)}, images {tuple(f.image.shape)}")
print("E init:", tuple(fs.E_init.shape), "| vocabulary:", len(fs.vocab), fs.vocab.kind)

# %% [markdown]
# ## 2. The sparse head on one image
#
# ![JSD: two frozen towers, their final projections, one shared sparse head and the three score matrices](figures/jsd_architecture.svg)
#
# The picture (drawn by `jsdlib.apps.diagrams`) is the whole model: the frozen towers give pre-projection
# features `h_t`, `h_i`; the trainable projections give the dense vectors `d_t`, `d_i`; **one** sparse head,
# shared by captions and images, turns each `d` into `z`; the three score matrices of section 3 compare them.
#
# $$u = \mathrm{LayerNorm}(W_p d + b_p), \qquad z = \log(1 + \mathrm{ReLU}(E u)).$$
#
# ReLU makes `z` non-negative and (after training with L1) sparse; the log damps large weights. Before
# training, `W_p` is random, so more than half of the 30,522 terms are active (the next cell prints the share)
# and they mean nothing yet.

# %%
torch.manual_seed(SEED)
model0 = jsd.build_model(fs.train, cfg, fs.E_init, fs.special_ids)
with torch.no_grad():
    d = model0.dense_image(fs.test.image[:1])
    z = model0.head(d)[0]
# the share, not the count: a pre-activation within ~1e-6 of zero can flip sign on another CPU's kernels
print(f"untrained head: {100 * float((z > 0).float().mean()):.0f} % of {z.numel()} terms active, "
      f"all weights >= 0: {bool((z >= 0).all())}")
print("top terms:", [t for t, _ in jsd.top_terms(z, 8, fs.vocab)])
assert (z >= 0).all() and float((z > 0).float().mean()) > 0.5     # more than half active, as the text says

# %% [markdown]
# ### One vector, not one per token: SPLADE's max pooling
#
# SPLADE, the best-known learned sparse retriever for text, applies its vocabulary head to **every token
# position** $i$ of a text and keeps, per term $j$, the largest weight over the positions:
#
# $$w_{ij} = \mathrm{MLM}(h_i)_j, \qquad z_j = \max_i \log(1 + \mathrm{ReLU}(w_{ij})).$$
#
# So each active term can be traced to the token that fired it. JSD's head reads **one** vector per caption or
# image (the dense embedding `d`), which is what lets the same head serve images: an image has no tokens of the
# vocabulary to pool over. The next cell runs SPLADE's pooling on MiniLM's token states of one caption, with
# MiniLM's own word embeddings as the (untrained) MLM decoder, `jsdlib.jsd.splade.tied_mlm_logits`, and prints
# which position each top term comes from. Nothing here is trained: it shows the *shape* of the computation.

# %%
from jsdlib import vlp
from jsdlib.vlp.minilm import minilm_tokenizer

standin, tok = vlp.load_standin(vlp.DEFAULT_STANDIN_CHECKPOINT), minilm_tokenizer()
CAPTION = "a sleepy cat face"
enc_tok = tok([CAPTION], return_tensors="pt")
with torch.no_grad():
    h_tok = standin.model.text.transformer(**enc_tok).last_hidden_state[0]        # (positions, 384)
w_pos = tied_mlm_logits(h_tok, fs.E_init)                                       # (positions, 30,522)
z_splade = max_pooled_terms(w_pos, enc_tok["attention_mask"][0])
tokens = tok.convert_ids_to_tokens(enc_tok["input_ids"][0].tolist())
source = torch.log1p(torch.relu(w_pos)).argmax(0)                               # the winning position per term
top_j = z_splade.topk(8).indices
print("tokens:", tokens)
print("SPLADE-style top terms (term <- position that fired it):",
      ", ".join(f"{fs.vocab.term(int(j))} <- {tokens[int(source[j])]}" for j in top_j))
print(f"SPLADE pools {h_tok.shape[0]} position vectors (384 numbers each) into one z; JSD's head reads one "
      f"vector, the dense embedding d ({d.shape[1]} numbers), for a caption and for an image alike")
assert torch.equal(z_splade, torch.log1p(torch.relu(w_pos)).max(0).values)      # max pooling, nothing else

# %% [markdown]
# ## 3. Three score matrices for one batch
#
# For a batch of B image-caption pairs (rows images, columns captions; the diagonal holds the matches):
#
# $$S_d = D_i D_t^\top / \tau, \qquad S_s = Z_i Z_t^\top, \qquad S_x = w_1 S_d + w_2 S_s.$$

# %%
B = 8
idx = torch.arange(B)
caps = torch.tensor([fs.test.image_to_captions[i][0] for i in idx.tolist()])
with torch.no_grad():
    d_t, d_i, z_t, z_i = model0(fs.test.text[caps], fs.test.image[idx])
S_d = jsd.dense_score(d_i, d_t, model0.tau)
S_s = jsd.sparse_score(z_i, z_t)
S_x = jsd.integrated_score(S_d, S_s, cfg.w1, cfg.w2)
fig = viz.score_heatmaps({"dense S_d": S_d, "sparse S_s (untrained)": S_s, "integrated S_x": S_x})
plt.show()
print("dense diagonal is the row maximum for", int((S_d.argmax(1) == idx).sum()), "of", B, "images")

# %% [markdown]
# ## 4. The loss, by hand and by the library
#
# $$\mathrm{InfoNCE}(S) = \tfrac12[\mathrm{CE}(S, y) + \mathrm{CE}(S^\top, y)], \qquad
# \mathrm{KD}(S, P) = -\tfrac1B\sum_{rows}\sum_{cols} P \log\mathrm{softmax}(S)$$
#
# $$P_{it} = \mathrm{softmax}(S_x), \quad P_{ti} = \mathrm{softmax}(S_x^\top), \quad
# L = \tfrac12(\lambda_1 L_{dense} + \lambda_2 L_{sparse} + L_{inter}), \quad
# L' = \tfrac12(\lambda_1 L'_{dense} + \lambda_2 L'_{sparse})$$
#
# $$\text{loss} = \tfrac12(L + L') + \tfrac12[\eta_t(t) L_1(Z_t) + \eta_i(t) L_1(Z_i)].$$
#
# The teacher $S_x$ is *not* detached (as in the authors' code), so the distillation also shapes the teacher.

# %%
y = torch.arange(B)
ce = lambda S: F.cross_entropy(S, y)
nce = lambda S: 0.5 * (ce(S) + ce(S.T))
kd = lambda S, P: -(P * S.log_softmax(1)).sum(1).mean()
P_it, P_ti = S_x.softmax(1), S_x.T.softmax(1)
L = (cfg.lam1 * nce(S_d) + cfg.lam2 * nce(S_s) + nce(S_x)) / 2
Lp = (cfg.lam1 * 0.5 * (kd(S_d, P_it) + kd(S_d.T, P_ti)) + cfg.lam2 * 0.5 * (kd(S_s, P_it) + kd(S_s.T, P_ti))) / 2
eta_t, eta_i = cfg.eta_t, cfg.eta_i          # the warm-up is over: eta(t) = eta_max
l1 = lambda Z: Z.abs().sum(1).mean()
by_hand = 0.5 * (L + Lp) + 0.5 * (eta_t * l1(z_t) + eta_i * l1(z_i))
lib, parts = jsd.jsd_loss(S_d, S_s, z_t, z_i, w1=cfg.w1, w2=cfg.w2, lam1=cfg.lam1, lam2=cfg.lam2,
                          eta_t=eta_t, eta_i=eta_i)
# printed to 4 digits: the 6th differs between CPUs (AVX2 vs AVX-512 kernels sum in another order)
same = torch.allclose(by_hand, lib, rtol=1e-5)
print(f"by hand {by_hand.item():.2f} | library {lib.item():.2f} | equal to 1e-5 (relative): {same}")
assert same
print("its parts:", ", ".join(f"{k} {float(parts[k].detach()):.2f}" for k in ("L_dense", "L_sparse", "L_inter", "L",
                                                                     "Lp_dense", "Lp_sparse", "Lp", "reg")))
for k, mine in (("L", L), ("Lp", Lp)):
    assert torch.allclose(parts[k], mine, rtol=1e-5), k
assert torch.allclose(0.5 * (parts["L"] + parts["Lp"]) + parts["reg"], lib, rtol=1e-5)
print("warm-up eta(t)/eta_max at 0, 10, 20, 50 % of the steps:",
      [round(jsd.reg_weight(s, 100, 1.0), 3) for s in (0, 10, 20, 50)])

# %% [markdown]
# ## 5. Training JSD and D2S (one seed)
#
# AdamW with warm-up and linear decay, gradient clipping, and early stopping on **validation sparse R@1**.
# The checkpoint is chosen with a **sparsity budget** that is *jsdlib's addition*, not the paper's: only epochs
# whose validation vectors have at most 64 active terms per caption and 256 per image can be selected
# (`JSDConfig.max_terms_q` / `max_terms_d`; `None` turns it off), so the sparse retriever is one an inverted
# index can serve; the authors select on validation R@1 alone (see [docs/fidelity.md](../docs/fidelity.md)).
# D2S trains only the sparse head, distilling the *frozen* dense scores.
#
# The training log and the tables below print **FLOPs**, the cost of sparse retrieval (D2S's definition): the
# expected number of multiply-adds per caption-image pair in an inverted index, $\sum_j p_j(q)\,p_j(d)$, with
# $p_j$ the share of captions (images) that use term $j$. Section 8 draws it against R@1.
#
# The preset's 40 epochs take a few minutes per method and seed on a 2-core laptop (notebook 06 prints the main
# job's step times; in fp32: bf16 autocast is used
# only on CPUs with native bf16, see `jsdlib.common.hardware`). So by default this notebook trains JSD on a
# **3-epoch schedule** (same preset, warm-ups scaled with it) to show what training does, and reads the
# 40-epoch runs from the committed `jsdlib jsd compare` result; `JSDLIB_FULL=1` trains JSD and D2S for the
# full 40 epochs here and checks them against that result. Three epochs do not bring the vectors down to the
# sparsity budget (the trainer says so and keeps the last epoch); the 40-epoch runs below meet it on validation,
# where it is applied.

# %%
# NBVAL_IGNORE_OUTPUT
# (training-dependent: another CPU, or bf16 instead of fp32, gives other numbers; the next cells check them)
cfg_nb = cfg if FULL else cfg.replace(epochs=3)
res_jsd = jsd.train_jsd(fs.train, fs.val, cfg_nb, seed=SEED, E_init=fs.E_init, special_ids=fs.special_ids,
                        progress=False)
for h in res_jsd["history"]:
    print(f"JSD epoch {h['epoch']:2d}: loss {h['loss']:7.3f}  val sparse R@1 {h['val']['sparse']['R@1']:.1f}  "
          f"dense R@1 {h['val']['dense']['R@1']:.1f}  terms q/d {h['val']['terms_q']:.0f}/{h['val']['terms_d']:.0f}")
print(f"trained in {res_jsd['precision']} ({hardware.describe()})")
fig = viz.jsd_training_curves(res_jsd["history"], best_epoch=res_jsd["best"]["epoch"])
plt.show()

# %%
hist = res_jsd["history"]
first, last = hist[0], hist[-1]
checks = {"the loss fell": last["loss"] < first["loss"],
          "active terms per caption fell more than 4-fold": first["val"]["terms_q"] > 4 * last["val"]["terms_q"],
          "validation sparse R@1 far above chance (> 30 %)": last["val"]["sparse"]["R@1"] > 30}
for text, ok in checks.items():
    print(f"epoch 1 -> {len(hist)}: {text}: {ok}")
assert all(checks.values())

# %% [markdown]
# The 40-epoch runs, seed 0, read from the course's main job (`jsdlib reproduce --preset cpu`, the same preset and
# seed as above, all 40 epochs; `results/reproduce_cpu/results.json`, which notebook 06 reads too):

# %%
main_job = json.loads(MAIN_JOB.read_text())["results"]
cmp = main_job["jsd_compare"]
ref = cmp["methods"]
D2S = tables.d2s_key(cmp)       # "d2s_matched": D2S's L1 weight searched on validation to JSD's FLOPs in the run
labels = {"dense_original": "dense original", D2S: "D2S sparse", "jsd_sparse": "JSD sparse",
          "jsd_dense": "JSD dense", "jsd_integrated": "JSD integrated"}
rows = {}
for name, label in labels.items():
    run = next(r for r in ref[name]["per_seed"] if r["seed"] == SEED)
    sparse_terms = name in (D2S, "jsd_sparse", "jsd_integrated")
    rows[label] = {**run["t2i"], "terms q/d": f"{run['terms_q']:.0f}/{run['terms_d']:.0f}" if sparse_terms else "dense",
                   "FLOPs": round(run["flops"], 1) if name in (D2S, "jsd_sparse") else None,
                   "best epoch": run.get("best_epoch")}
print(metrics.format_table(rows, digits=1))
assert all(float(r["terms q/d"].split("/")[0]) <= 64 * 1.15 for r in rows.values() if r["terms q/d"] != "dense")
run0 = next(r for r in ref["jsd_sparse"]["per_seed"] if r["seed"] == SEED)
assert run0["best_epoch"] > len(res_jsd["history"])        # the full runs select a later epoch than 3

# %% [markdown]
# One training run is one draw: the same code and seed give other numbers on another CPU (other kernels sum in
# another order, and a laptop trains in fp32 where a CPU with native bf16 trains in bf16), about as far apart as
# two seeds. So with `JSDLIB_FULL=1` the run above is checked against the committed three-seed result of
# section 7: each R@1 must lie within three seed standard deviations of its mean (at least 1.5 points).

# %%
if FULL:
    fm = next(r for r in ref[D2S]["per_seed"] if r["seed"] == SEED).get("flops_match", {})   # the L1 it matched at
    cfg_d2s = cfg.replace(d2s_eta_t=fm["eta_t"], d2s_eta_i=fm["eta_i"]) if fm else cfg
    res_d2s = jsd.train_d2s(fs.train, fs.val, cfg_d2s, seed=SEED, E_init=fs.E_init, special_ids=fs.special_ids,
                            caption_token_ids=fs.caption_token_ids, progress=False)
    here = {}
    for name, res in (("D2S", res_d2s), ("JSD", res_jsd)):
        enc = jsd.encode(res["model"], fs.test)
        S = jsd.score_matrices(enc, float(res["model"].tau.detach()), cfg.w1, cfg.w2)
        eff = jsd.efficiency(enc)
        for k in (("sparse",) if name == "D2S" else ("sparse", "dense", "integrated")):
            here[f"{name} {k}"] = {**metrics.t2i_metrics(S[k].numpy(), fs.test.caption_to_image),
                                   "terms q/d": f"{eff['terms_q']:.0f}/{eff['terms_d']:.0f}" if k != "dense" else "dense"}
        assert eff["terms_q"] <= 64 * 1.15 and eff["terms_d"] <= 256 * 1.15   # servable sparsity on test too
    print(metrics.format_table(here, digits=1))
    print(f"{'':15s} committed R@1 (3 seeds)  tolerance  this run")
    for row, name in (("D2S sparse", D2S), ("JSD sparse", "jsd_sparse"), ("JSD dense", "jsd_dense"),
                      ("JSD integrated", "jsd_integrated")):
        mean, std = ref[name]["t2i"]["R@1"]["mean"], ref[name]["t2i"]["R@1"]["std"]
        tol = max(3 * std, 1.5)
        ok = abs(here[row]["R@1"] - mean) <= tol
        print(f"{row:15s} {mean:10.1f} ± {std:.1f}        ± {tol:.1f}     {here[row]['R@1']:.1f} "
              f"{'within' if ok else 'OUTSIDE'}")
        assert ok, f"{row} R@1 {here[row]['R@1']:.1f} is not within {tol:.1f} of the committed {mean:.1f}"
else:
    print("40-epoch JSD and D2S trained here and checked against the committed result: rerun with JSDLIB_FULL=1")

# %% [markdown]
# ## 6. Expansion control (PEC), and the recipe of the bundled model
#
# Trained as above, nothing asks a sparse term to *mean* what its word means: the contrastive and distillation
# losses only ask that `z_t . z_i` ranks the right image first, and L1 only asks for few active terms. So the
# head may use vocabulary slots as a private code. D2S's **probabilistic expansion control** (PEC) pushes the
# caption side towards its own words: for each training batch, with probability $p(e)$, every caption's sparse
# vector is **masked to the vocabulary ids of its own tokens** before the loss,
#
# $$z_t \leftarrow z_t \odot \mathbb{1}[j \in \mathrm{tokens}(\text{caption})], \qquad
# p(e) = \max\big(0,\ 1 - e / (0.95\,E)\big),$$
#
# for 0-based epoch $e$ of $E$: every batch is masked at the start, none after 95 % of the epochs. The images
# are never masked. To match a masked caption, an image must put weight on that caption's words, which is
# what made the image terms of the first bundled model readable (`JSDConfig.pec=True`;
# `jsdlib.jsd.train.pec_probability` is the schedule). The model that notebooks 00 and 03-05 load now reaches
# readable terms by two other means (below) and is trained *without* PEC: with those two, the grounding search
# (on validation) left PEC off. The last cell of this section prints what PEC changes on that recipe.

# %%
E_ = cfg.epochs
sched = [pec_probability(e, E_) for e in range(E_)]
print("p(e) at epochs 0, 10, 20, 30, 38, 39:", [round(sched[e], 3) for e in (0, 10, 20, 30, 38, 39)])
assert sched[0] == 1.0 and sched[-1] == 0.0 and all(a >= b for a, b in zip(sched, sched[1:]))

# %%
# NBVAL_IGNORE_OUTPUT
# (the caption vector comes from the 3-epoch run above: its terms and weights move with the CPU's kernels)
from jsdlib import data

train_captions = data.load_emoji("train").captions
cap = fs.train.image_to_captions[0][0]
ids = fs.caption_token_ids[cap]
mask = jsd.bag_mask([ids], len(fs.vocab))[0]
with torch.no_grad():
    z_cap = res_jsd["model"].head(res_jsd["model"].dense_text(fs.train.text[cap:cap + 1]))[0]
print(f"caption {train_captions[cap]!r}: its token ids keep {int(mask.sum())} of {len(fs.vocab):,} terms "
      f"({[fs.vocab.term(int(i)) for i in ids]})")
print("top terms of the 3-epoch model's caption vector (trained without PEC):",
      [t for t, _ in jsd.top_terms(z_cap, 6, fs.vocab)])
own = {fs.vocab.term(int(i)): float(z_cap[int(i)]) for i in ids}
kept = int(((z_cap * mask) > 0).sum())
print("its weights on the caption's own tokens:", {t: round(w, 2) for t, w in own.items()},
      f"-> after the PEC mask {kept} term(s) remain"
      + ("; a batch masked like this can only score this caption through its own words, so the loss must put "
         "weight on them" if kept < len(own) else ""))
assert set((z_cap * mask).nonzero().flatten().tolist()) <= set(ids.tolist())

# %% [markdown]
# The bundled model changes the `cpu-emoji` recipe in four ways (`jsdlib.apps.bundled.BUNDLED_RECIPE`, chosen on
# validation by `benchmarks/grounding.py` among PEC schedules, masks, regularisers and the L1 weight). The
# first three are jsdlib's, in neither paper:
#
# - a **whole-word vocabulary** (`vocab_mask="words"`): the head's dimensions for punctuation, symbols, word pieces,
#   digits and special tokens are masked to zero (notebook 03, section 6);
# - the **caption-word loss** (`jsdlib.jsd.caption_words`, weight 1): with the head's logits $l = E u$ of an image
#   and $W$ the content words of its captions,
#   $L_\text{words} = -\sum_{w \in W} q_w \log \mathrm{softmax}(l)_w$, $q_w \propto \mathrm{idf}(w)$, so a rare
#   word such as "octopus" counts more than "tone";
# - training on the **four training styles' pictures** (notebook 01), for up to 160 epochs instead of 40 (patience 40);
# - **half the L1 weights** ($\eta_t, \eta_i$ = 0.005, 0.0015), and PEC off.
#
# What PEC does to the terms and their cost, same recipe and seed, with and without it: the bundled model (no PEC)
# and the same recipe trained with PEC (its summary is committed in `results/terms_pec_cpu-emoji.json`, written by
# `jsdlib.apps.bundled.write_pec_report`; notebook 03 reads its image terms side by side).

# %%
bundled_meta = bundled.EmojiSearch("test").meta
pec_row = json.loads((Path("results") / "terms_pec_cpu-emoji.json").read_text())["model"]["test"]
nopec = bundled_meta["test"]
for label, t in (("without PEC (bundled)", nopec), ("with PEC", pec_row)):
    print(f"{label:21s}: sparse R@1 {t['sparse']['R@1']:.1f}, terms per caption {t['terms_q']:.0f}, "
          f"per image {t['terms_d']:.0f}, FLOPs {t['flops']:.2f}")
print(f"PEC changes sparse R@1 by {pec_row['sparse']['R@1'] - nopec['sparse']['R@1']:+.1f} points, terms per image "
      f"by x{pec_row['terms_d'] / nopec['terms_d']:.2f}, FLOPs by x{pec_row['flops'] / nopec['flops']:.2f}")
assert pec_row["terms_d"] < nopec["terms_d"] and pec_row["flops"] < nopec["flops"]

# %% [markdown]
# ## 7. Every method over three seeds, with paired tests
#
# The main job (`jsdlib reproduce --preset cpu`, step `jsd_compare`) trains every method of the paper's tables on
# the same features, seeds 0, 1 and 2. Its p-values come from a **paired test over queries**: both systems rank
# the same 1,000 test captions, and the test asks whether the mean of the per-caption differences in reciprocal
# rank is zero (a paired t-test). Pairing matters because captions differ in difficulty far more than two systems
# do. The p-value is the chance of a mean difference at least this large if the two systems were equally good.
# The committed p pools 3 seeds x 1,000 captions as 3,000 independent pairs; a seed's own training draw is not
# independent across its captions, so the pooled p is too small. At how many seeds each ordering holds is printed beside it.
# (`JSDLIB_FULL=1` retrains the comparison here, as long as the main job's `jsd_compare` step that notebook 06 times,
# and shows it without writing any file.)

# %%
if FULL:
    cmp = jsd_compare.compare(fs, cfg, [0, 1, 2], names=reproduce.MAIN_JSD_METHODS, match=reproduce.MAIN_MATCH)
print(metrics.format_table(jsd_compare.summary_rows(cmp)))

# %%
m = {n: v["t2i"]["R@1"]["mean"] for n, v in cmp["methods"].items()}
verdicts = tables.jsd_claims(cmp, per_seed=True)   # verdict on the means, pooled p, seeds the ordering holds at
print(tables.to_markdown(verdicts, "claim"))
# on the means, two of the paper's five orderings hold here (both ablations hurt) and three do not
assert verdicts["verdict"].to_dict() == {
    tables.jsd_claim_list(cmp)[0][0]: "does not hold",
    "JSD sparse >= dense original (comparable or better)": "does not hold",
    "JSD dense > dense original": "does not hold", "removing self-distillation hurts": "holds",
    "freezing the final layer hurts": "holds"}
flops = {n: cmp["methods"][n]["flops"] for n in ("jsd_sparse", D2S)}
ratio = flops[D2S] / flops["jsd_sparse"] - 1
print(f"cost on test, mean of the seeds: JSD sparse {flops['jsd_sparse']:.2f} vs D2S {flops[D2S]:.2f} FLOPs "
      f"({100 * ratio:+.0f} %)")
for j, d in zip(cmp["methods"]["jsd_sparse"]["per_seed"], cmp["methods"][D2S]["per_seed"]):
    fm = d.get("flops_match")
    print(f"  seed {d['seed']}: test FLOPs JSD {j['flops']:.2f}, D2S {d['flops']:.2f} ({100 * (d['flops'] / j['flops'] - 1):+.0f} %)"
          + ("" if not fm else f"; validation search: {len(fm['probes'])} probe(s), "
             f"{'matched within 15 %' if fm['matched'] else 'NOT matched: no probe within 15 %, the closest kept'}"))
gap, best = m["dense_original"] - m["jsd_sparse"], max(m, key=m.get)
print(f"JSD sparse is {gap:.1f} points of R@1 {'below' if gap > 0 else 'above'} the dense original; "
      f"the best row on the mean is {best}")
assert gap > 0 and best in ("jsd_integrated", "jsd_dense")

# %% [markdown]
# **Reading the table.** `verdict` is read on the three-seed means; `holds on seeds` says at how many seeds the
# ordering holds, and a claim that holds at only one or two seeds is a draw, whatever the pooled p says.
# A sparse retriever's accuracy means little without its cost, so the main job matches it: for each seed, D2S's
# L1 weight is searched on validation until D2S's FLOPs lie within 15 % of that seed's JSD run
# (`jsdlib.jsd.matching.match_d2s_l1`; the search runs inside the job, on whatever machine runs it). The lines
# above say, seed by seed, whether the search matched and how far apart the two are in test FLOPs. Each probe
# selects its best validation epoch among those whose FLOPs lie inside the band: the FLOPs of the epoch a run would
# select over all its epochs can jump between neighbouring L1 weights. A search that finds no weight within 15 % in
# five probes keeps its closest probe and says so (the report's match table lists every probe). D2S here is D2S's loss under JSD's
# training recipe; D2S in its own recipe is in [docs/fidelity.md](../docs/fidelity.md) and `make fidelity`. The paper's headline, JSD sparse as accurate as the dense original, is the
# row `JSD sparse >= dense original`: with at most 64 terms per caption, the sparse vectors are measured against 256-d dense ones, and
# the dense model was trained on this very training split.

# %% [markdown]
# ## 8. Effectiveness against cost: the L1 weight
#
# The L1 weight trades accuracy for sparsity, the cost measured as FLOPs (section 5; `jsdlib.jsd.efficiency.flops`).
# The main job's step `jsd_sweep` trains
# JSD and D2S at four L1 weights, seed 0 (read here from the same file).

# %%
sweep = main_job["jsd_sweep"]["rows"]
sweep = [r for r in sweep if not r.get("pec")]            # D2S + PEC points: notebook 04
fig = viz.r1_vs_flops(sweep, split="test")
plt.show()
for r in sweep:
    print(f"{r['method']:3s} L1 x{r['scale']:<4g} test R@1 {r['test_R@1']:5.1f}  FLOPs {r['test_flops']:6.2f}  "
          f"terms q/d {r['test_terms_q']:5.1f}/{r['test_terms_d']:5.1f}")
for method in ("jsd", "d2s"):
    pts = sorted((r["scale"], r["test_flops"], r["test_R@1"]) for r in sweep if r["method"] == method)
    fl = [f for _, f, _ in pts]
    falls = all(x > y for x, y in zip(fl, fl[1:]))
    print(f"{method}: FLOPs {'fall at every stronger L1 weight' if falls else 'do NOT fall at every stronger L1 weight'}"
          f" (each point is a separate training run, so nothing forces it)")

# %% [markdown]
# ## Exercises
#
# Each exercise has a cell for your answer, a hidden solution cell (it runs when `ex.solutions` is `True`, as in
# CI) and a check. Set `ex = Exercises(solutions=False)` in the first cell to try them yourself.
#
# ### Exercise 1
# The authors' released code uses `softmax(S_x)` *untransposed* as the text->image teacher
# (`teacher_transpose_quirk=True`; see [docs/fidelity.md](../docs/fidelity.md)). Recompute the loss of section 4's
# batch with it, and set `answer_1` to the set of names of the loss parts starting with `KD` whose value changes.

# %%
answer_1 = None   # your answer here: a set of part names, e.g. {"KD_dense_it"}

# %% solution
if ex.solutions:
    _, q = jsd.jsd_loss(S_d, S_s, z_t, z_i, w1=cfg.w1, w2=cfg.w2, lam1=cfg.lam1, lam2=cfg.lam2,
                        teacher_transpose_quirk=True)
    answer_1 = {k for k in parts if k.startswith("KD") and not torch.isclose(parts[k], q[k])}

# %%
P_quirk = S_x.softmax(1)                    # the untransposed teacher: image rows, used for the caption rows
_kd_ti = lambda S: -(P_quirk * S.T.log_softmax(1)).sum(1).mean()
_, _q = jsd.jsd_loss(S_d, S_s, z_t, z_i, w1=cfg.w1, w2=cfg.w2, lam1=cfg.lam1, lam2=cfg.lam2,
                     teacher_transpose_quirk=True)
assert torch.isclose(_kd_ti(S_d), _q["KD_dense_ti"]) and torch.isclose(_kd_ti(S_s), _q["KD_sparse_ti"])
ex.check(1, answer_1, lambda a: set(a) == {k for k in parts if k.startswith("KD")
                                           and not torch.isclose(parts[k], _q[k])},
         "compare each KD part of the two loss dicts; the text->image rows are the ones the teacher feeds")
print(sorted(answer_1), "change: each caption is distilled towards an image row's distribution")

# %% [markdown]
# ### Exercise 2
# The L1 weight warms up quadratically: $\eta(s) = \eta_{max} \min(1, (s / (0.2\,S))^2)$ for step $s$ of $S$.
# Set `answer_2` to the list of $\eta(s)/\eta_{max}$ at steps 0, 5, 10, 15, 20 and 60 of $S = 100$, computed with
# your own formula (then compare with `jsd.reg_weight`, printed in section 4).

# %%
answer_2 = None   # your answer here: a list of 6 floats

# %% solution
if ex.solutions:
    answer_2 = [min(1.0, (st / (0.2 * 100)) ** 2) for st in (0, 5, 10, 15, 20, 60)]

# %%
ex.check(2, answer_2, lambda a: np.allclose(a, [jsd.reg_weight(st, 100, 1.0) for st in (0, 5, 10, 15, 20, 60)]),
         "square the share of the warm-up that has passed, and cap it at 1")
print([round(v, 4) for v in answer_2])

# %% [markdown]
# ### Exercise 3
# SPLADE's pooling by hand: for the caption of the SPLADE cell, take `w_pos` (one row of term logits per
# position), apply $\log(1 + \mathrm{ReLU}(\cdot))$ and the max over positions yourself (no library call), and
# set `answer_3` to the number of terms whose pooled weight is above 1.0 (an int).

# %%
answer_3 = None   # your answer here: an int

# %% solution
if ex.solutions:
    pooled = torch.log1p(torch.clamp(w_pos, min=0)).max(dim=0).values
    answer_3 = int((pooled > 1.0).sum())

# %%
ex.check(3, answer_3, lambda a: a == int((z_splade > 1.0).sum()),
         "log1p(relu(w_pos)), then .max(dim=0) over the positions, then count the entries above 1.0")
