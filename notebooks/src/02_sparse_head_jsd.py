# %% [markdown]
# # 02 — The sparse head and joint training (JSD)
#
# **What you will learn.** How a dense embedding becomes a vocabulary-sized, non-negative, sparse vector
# (`z = log(1 + ReLU(E LayerNorm(W d + b)))`) and why `E` starts from the word embeddings; the three score
# matrices of JSD (dense, sparse, integrated) and its loss — InfoNCE on each, self-distillation from the
# integrated score into both, L1 with a quadratic warm-up; one training step computed by hand and by the
# library; training, and the comparison with the dense original, D2S and the two ablations.
#
# **Time:** about 2 minutes on a 2-core laptop CPU (one short JSD training run; the 40-epoch runs and the
# three-seed table are read from the committed result of `jsdlib jsd compare`; `JSDLIB_FULL=1` trains JSD and
# D2S for 40 epochs here and reruns the comparison and the sweep: `jsdlib reproduce` spent 41 + 31 minutes on
# those two steps, side by side on one thread each of a 2-core laptop CPU, see `results/reproduce_cpu/`).
# **Needs:** notebook 01's stand-in VLP (committed; its features are cached on first use).
#
# Paper: Song et al., *Sparse and Dense Retrievers Learn Better Together: Joint Sparse-Dense Optimization
# for Text-Image Retrieval*, CIKM 2025 (spec: `jsd.md`).

# %%
import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import matplotlib.pyplot as plt

from jsdlib import jsd
from jsdlib.apps import viz
from jsdlib.common import hardware, metrics
from jsdlib.common.io import write_json
from jsdlib.experiments import jsd_compare
from jsdlib.jsd.presets import get_preset

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"
RESULTS = Path("results")                       # committed outputs of `jsdlib jsd compare` / `jsd sweep`
torch.manual_seed(SEED)
torch.set_num_threads(2)
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
# $$u = \mathrm{LayerNorm}(W_p d + b_p), \qquad z = \log(1 + \mathrm{ReLU}(E u)).$$
#
# ReLU makes `z` non-negative and (after training with L1) sparse; the log damps large weights. Before
# training, `W_p` is random, so about half of the 30,522 terms are active and they mean nothing yet.

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
assert (z >= 0).all() and (z > 0).sum() > 1000

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
print("warm-up eta(t)/eta_max at 0, 10, 20, 50 % of the steps:",
      [round(jsd.reg_weight(s, 100, 1.0), 3) for s in (0, 10, 20, 50)])

# %% [markdown]
# ## 5. Training JSD and D2S (one seed)
#
# AdamW with warm-up and linear decay, gradient clipping, early stopping on **validation sparse R@1**, and a
# sparsity budget: only epochs whose validation vectors have at most 64 active terms per caption and 256 per
# image can be selected, so the sparse retriever is one an inverted index can serve. D2S trains only the
# sparse head, distilling the *frozen* dense scores.
#
# The preset's 40 epochs take about 10 minutes per method on a 2-core laptop (in fp32: bf16 autocast is used
# only on CPUs with native bf16, see `jsdlib.common.hardware`). So by default this notebook trains JSD on a
# **3-epoch schedule** (same preset, warm-ups scaled with it) to show what training does, and reads the
# 40-epoch runs from the committed `jsdlib jsd compare` result; `JSDLIB_FULL=1` trains JSD and D2S for the
# full 40 epochs here and checks them against that result. Three epochs do not bring the vectors down to the
# sparsity budget (the trainer says so and keeps the last epoch); the 40-epoch runs below meet it.

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
# The 40-epoch runs, seed 0 (read from `results/jsd_compare_cpu-emoji.json`, written by
# `jsdlib jsd compare`; the same preset and seed as above, all 40 epochs):

# %%
ref = json.loads((RESULTS / "jsd_compare_cpu-emoji.json").read_text())["methods"]
labels = {"dense_original": "dense original", "d2s": "D2S sparse", "jsd_sparse": "JSD sparse",
          "jsd_dense": "JSD dense", "jsd_integrated": "JSD integrated"}
rows = {}
for name, label in labels.items():
    run = next(r for r in ref[name]["per_seed"] if r["seed"] == SEED)
    sparse_terms = name in ("d2s", "jsd_sparse", "jsd_integrated")
    rows[label] = {**run["t2i"], "terms q/d": f"{run['terms_q']:.0f}/{run['terms_d']:.0f}" if sparse_terms else "dense",
                   "FLOPs": round(run["flops"], 1) if name in ("d2s", "jsd_sparse") else None,
                   "best epoch": run.get("best_epoch")}
print(metrics.format_table(rows, digits=1))
assert all(float(r["terms q/d"].split("/")[0]) <= 64 * 1.15 for r in rows.values() if r["terms q/d"] != "dense")

# %% [markdown]
# One training run is one draw: the same code and seed give other numbers on another CPU (other kernels sum in
# another order, and a laptop trains in fp32 where a CPU with native bf16 trains in bf16), about as far apart as
# two seeds. So with `JSDLIB_FULL=1` the run above is checked against the committed three-seed result of
# section 6 (made in bf16 on a CPU with AMX): each R@1 must lie within three seed standard deviations of its
# mean (at least 1.5 points).

# %%
if FULL:
    res_d2s = jsd.train_d2s(fs.train, fs.val, cfg, seed=SEED, E_init=fs.E_init, special_ids=fs.special_ids,
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
    for row, name in (("D2S sparse", "d2s"), ("JSD sparse", "jsd_sparse"), ("JSD dense", "jsd_dense"),
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
# ## 6. Every method over three seeds, with paired tests
#
# `jsdlib jsd compare --preset cpu-emoji --seeds 0 1 2 --json results/jsd_compare_cpu-emoji.json` trains
# every method of the paper's tables on the same features; the p-values are paired t-tests on per-query
# reciprocal ranks, pooled over seeds. The committed result is read here (rerun with `JSDLIB_FULL=1`).

# %%
path = RESULTS / "jsd_compare_cpu-emoji.json"
if FULL:
    cmp = jsd_compare.compare(fs, cfg, [0, 1, 2])
    write_json(cmp, path)
cmp = json.loads(path.read_text())
print(metrics.format_table(jsd_compare.summary_rows(cmp)))

# %%
m = {n: v["t2i"]["R@1"]["mean"] for n, v in cmp["methods"].items()}
p = {n: cmp["tests"].get(f"jsd_sparse_vs_{n}", {}).get("p") for n in m}
claims = [("JSD sparse >= dense original", m["jsd_sparse"] >= m["dense_original"], p["dense_original"]),
          ("JSD sparse > D2S", m["jsd_sparse"] > m["d2s"], p["d2s"]),
          ("JSD dense > dense original", m["jsd_dense"] > m["dense_original"], None),
          ("no self-KD < full JSD", m["jsd_no_kd"] < m["jsd_sparse"], p["jsd_no_kd"]),
          ("frozen final layer < full JSD", m["jsd_frozen_final"] < m["jsd_sparse"], p["jsd_frozen_final"])]
for text, holds, pv in claims:
    print(f"{text:32s} {'holds' if holds else 'does NOT hold':14s} p = {'—' if pv is None else f'{pv:.2g}'}")
flops = {n: cmp["methods"][n]["flops"] for n in ("jsd_sparse", "d2s")}
print(f"matched cost: JSD sparse {flops['jsd_sparse']:.2f} vs D2S {flops['d2s']:.2f} FLOPs "
      f"({100 * (flops['d2s'] / flops['jsd_sparse'] - 1):+.0f} %)")
# what the text below says: four of the paper's five orderings hold here, one does not
assert [h for _, h, _ in claims] == [False, True, True, True, True]
assert abs(flops["d2s"] / flops["jsd_sparse"] - 1) <= 0.15
gap, best = m["dense_original"] - m["jsd_sparse"], max(m, key=m.get)
print(f"JSD sparse is {gap:.1f} points of R@1 {'below' if gap > 0 else 'above'} the dense original; "
      f"the best row is {best}")
assert best == "jsd_integrated"                                         # what the text below says

# %% [markdown]
# **What transfers and what does not.** At matched cost (D2S's L1 weight chosen on validation so both land
# at about the same FLOPs), JSD's sparse retriever beats D2S, its fine-tuned dense branch beats the
# original dense embeddings, and removing self-distillation or freezing the final layers hurts — the
# paper's orderings. The headline "JSD sparse comparable to or better than dense" does **not** hold on the
# emoji set: with at most 64 terms per caption, the sparse vectors lose R@1 to the 256-d dense ones (the
# gap is printed above). Our dense model was trained on this very training split (BLIP had been fine-tuned on
# COCO too, but on 100x more pairs), and a 30,522-term vocabulary has few words for emoji pictures; the
# integrated score, which keeps both, is the best row.

# %% [markdown]
# ## 7. Effectiveness against cost: the L1 weight
#
# The L1 weight trades accuracy for sparsity. FLOPs (D2S's definition) is the expected number of
# multiplications per query-image pair in an inverted index: $\sum_j p_j(q)\,p_j(d)$, with $p_j$ the share of
# captions (images) that use term $j$. `jsdlib jsd sweep --scales 0.3 1 3 10` trains JSD and D2S at four L1
# weights (the committed result is read here; `JSDLIB_FULL=1` reruns it, about 15 minutes).

# %%
path = RESULTS / "jsd_sweep_cpu-emoji.json"
if FULL:
    rows_sweep = []
    for method in ("jsd", "d2s"):
        rows_sweep += jsd_compare.l1_sweep(fs, cfg.replace(seed=0), method, [0.3, 1.0, 3.0, 10.0], seed=0)
    write_json({"rows": rows_sweep, "preset": cfg.name, "seed": 0}, path)
sweep = json.loads(path.read_text())["rows"]
fig = viz.r1_vs_flops(sweep, split="test")
plt.show()
for r in sweep:
    print(f"{r['method']:3s} L1 x{r['scale']:<4g} test R@1 {r['test_R@1']:5.1f}  FLOPs {r['test_flops']:6.2f}  "
          f"terms q/d {r['test_terms_q']:5.1f}/{r['test_terms_d']:5.1f}")

# %% [markdown]
# ## Exercise
#
# Turn on `teacher_transpose_quirk` (the authors' released code uses `softmax(S_x)` untransposed as the
# text->image teacher) and check which loss parts change on the batch of section 4.
#
# <details><summary>Solution</summary>
#
# ```python
# _, q = jsd.jsd_loss(S_d, S_s, z_t, z_i, w1=cfg.w1, w2=cfg.w2, lam1=cfg.lam1, lam2=cfg.lam2,
#                     teacher_transpose_quirk=True)
# print({k: round(float(parts[k] - q[k]), 5) for k in parts if k.startswith("KD")})
# ```
# Only the two text->image terms (`KD_dense_ti`, `KD_sparse_ti`) change: the untransposed teacher's rows are
# image rows, so each caption is distilled towards another image's distribution.
# </details>
