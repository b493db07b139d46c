# %% [markdown]
# # 04 — Search for real: the inverted index, dense and hybrid search, engines
#
# **What you will learn.** Why sparse vectors over a vocabulary are searched with an *inverted index*
# (postings lists per term), how term-at-a-time search works, by hand for one caption and then with
# `jsdlib.index`; that the index returns exactly the brute-force top-k (ties included) while touching only
# the postings of the query's terms — and that this work, divided by the corpus size, *is* D2S's FLOPs;
# dense search and JSD's hybrid score `w1 S_d + w2 S_s` searched exactly; the accuracy/cost trade-off of the
# L1 weight (with and without D2S's expansion control, PEC); and how the exact index compares with Seismic
# (approximate), faiss and Milvus Lite on the same vectors.
#
# **Time:** under a minute on a laptop CPU (the L1 sweeps are read from committed results;
# `JSDLIB_FULL=1` retrains them, about 40 minutes).
# **Needs:** the bundled JSD model (`jsdlib/assets/jsd_cpu_emoji.safetensors`, committed) and notebook 01's
# stand-in VLP (committed; its features are cached on first use). Spec: `jsd.md` §6-7.

# %%
import json
import os
from pathlib import Path

import numpy as np
import torch
import matplotlib.pyplot as plt

from jsdlib import index, jsd
from jsdlib.apps import viz
from jsdlib.apps.emoji_index import emoji_vectors
from jsdlib.common.io import write_json
from jsdlib.common.metrics import t2i_metrics
from jsdlib.experiments import jsd_compare
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.evaluate import score_matrices
from jsdlib.jsd.presets import get_preset

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"
RESULTS = Path("results")          # committed outputs of `jsdlib jsd sweep` (plain and --pec-only)
K = 10
torch.manual_seed(SEED)
torch.set_num_threads(2)
_ = os.environ.setdefault("RAYON_NUM_THREADS", "2")   # Seismic's thread pool

# %% [markdown]
# ## 1. The vectors to index
#
# The bundled JSD model encodes the 500 emoji test images (documents) and their 1,000 captions (queries):
# a 256-d dense vector and a 30,522-term sparse vector each. `emoji_vectors` returns them as
# `index.Vectors` (dense numpy + sparse CSR) with the model's hybrid weights `w1, w2` and temperature `tau`.

# %%
docs, queries, hw, es = emoji_vectors("test")
caption_to_image = np.asarray(es.split.caption_to_image)
n_docs, V = docs.sparse.shape
terms_d, terms_q = docs.sparse.getnnz(axis=1), queries.sparse.getnnz(axis=1)
print(f"documents: {n_docs} images, dense {docs.dim}-d, sparse over |V| = {V:,} terms")
print(f"active terms per image: mean {terms_d.mean():.1f} (min {terms_d.min()}, max {terms_d.max()}); "
      f"per caption: mean {terms_q.mean():.1f}")
print(f"distinct terms used by the images: {len(np.unique(docs.sparse.indices)):,} of {V:,}")
print(f"hybrid weights: w1 = {hw.w1}, w2 = {hw.w2}, tau = {hw.tau:.4f}")
assert docs.sparse.shape == (500, V) and queries.sparse.shape == (1000, V) and docs.dim == 256
assert (docs.sparse.data > 0).all()  # log(1 + ReLU(.)) weights: non-negative, zeros not stored

# %% [markdown]
# ## 2. Postings lists
#
# Turn the (images x terms) matrix on its side: for every term $j$, its **postings list** is the list of
# images with $x_j \neq 0$, each with its weight. Storing the matrix column by column (CSC) is exactly that:
# `indptr[j]:indptr[j+1]` slices term $j$'s doc ids and weights. A query only needs the lists of its own
# terms. The length of a list is the term's *document frequency* $df_j$, and $p_j(D) = df_j / N$.

# %%
idx = index.InvertedIndex.build(docs.sparse)
q_id = 0                                               # the first test caption
q = queries.sparse[q_id]
q_terms = q.indices[np.argsort(-q.data)][:4]           # its four heaviest terms
print(f"query {q_id}: {es.split.captions[q_id]!r} -> {q.nnz} active terms")
for j in q_terms:
    ids, w = idx.postings(j)
    top = np.argsort(-w)[:3]
    print(f"  term {es.vocab.term(int(j))!r:14s} q_j = {q[0, j]:.3f}  df = {len(ids):3d}  "
          f"heaviest postings: {[(int(ids[t]), round(float(w[t]), 3)) for t in top]}")
assert all(len(idx.postings(j)[0]) == idx.df[j] for j in q_terms)

# %%
fig, ax = plt.subplots(figsize=(9, 2.8))
for row, j in enumerate(q_terms):
    ids, w = idx.postings(j)
    ax.scatter(ids, np.full(len(ids), row), s=40 * w / w.max() + 2, alpha=0.7)
ax.set_yticks(range(len(q_terms)))
ax.set_yticklabels([f"{es.vocab.term(int(j))} (df {idx.df[j]})" for j in q_terms])
ax.set_xlabel("image id (marker size = weight)")
ax.set_xlim(-5, n_docs + 5)
ax.set_title("Postings lists of the query's four heaviest terms")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## 3. Search by hand: term at a time
#
# $$s(q, x) = \sum_{j:\,q_j \neq 0} q_j\, x_j .$$
#
# Start every image at 0; for each query term, walk its postings and add $q_j x_j$ to the images found there.
# Images that share no term with the query are never touched and keep 0. Then take the k best, with ties
# broken by the lower image id (`index.TIE_ORDER`). The work is the number of postings walked,
# $\sum_{j \in q} df_j$ multiply-adds, instead of $N$ full dot products.

# %%
acc = np.zeros(n_docs)
touched = 0
for j, qj in zip(q.indices, q.data):            # a loop over the query's ~50 terms, not over postings
    ids, w = idx.postings(j)
    acc[ids] += float(qj) * w.astype(np.float64)
    touched += len(ids)
by_hand = sorted(range(n_docs), key=lambda d: (-acc[d], d))[:K]
lib = idx.search(q, K)
print("by hand :", by_hand)
print("library :", lib.ids[0].tolist())
print(f"postings touched: {touched:,} (= {touched / n_docs:.2f} multiply-adds per image, vs {q.nnz} "
      f"for a dot product with every image); images touched: {(acc != 0).sum()} of {n_docs}")
gold = int(caption_to_image[q_id])
print(f"correct image {gold} ranked {by_hand.index(gold) + 1 if gold in by_hand else '>10'}")
for r, d in enumerate(by_hand[:3]):
    print(f"  {r + 1}. image {d:3d} score {acc[d]:.3f}  captions {es.split.captions_of(d)}")
assert by_hand == lib.ids[0].tolist() and touched == lib.work[0]
assert np.allclose(acc[by_hand], lib.scores[0])

# %% [markdown]
# ## 4. The library: exact top-k, FLOPs, dense and hybrid
#
# `InvertedIndex.search` runs the same loop compiled (numba) for a whole batch. Its contract (spec §7): the
# same top-k as the brute-force sparse product. It accumulates in float64 in the same order as scipy's
# sparse product, so the scores agree **bit for bit** and the lists agree even on ties.
#
# **FLOPs.** Averaged over the queries, postings touched per query divided by $N$ is
# $\frac{1}{|Q|}\sum_q \sum_j 1[q_j \ne 0]\, df_j / N = \sum_j p_j(Q)\, p_j(D)$ — D2S's FLOPs (spec §6): the
# measured work and the expected-cost formula are the same number.

# %%
res = idx.search(queries.sparse, K)
ref = index.brute_force_sparse(queries.sparse, docs.sparse, K)
same = np.array_equal(res.ids, ref.ids) and np.array_equal(res.scores, ref.scores)
print("identical to brute force (ids and scores):", same)
print(f"measured FLOPs (postings touched / N): {res.flops:.4f};  "
      f"sum_j p_j(Q) p_j(D): {efficiency(es.enc)['flops']:.4f}")
r1 = {"sparse": 100 * np.mean(res.ids[:, 0] == caption_to_image)}
assert np.array_equal(res.ids, ref.ids) and np.array_equal(res.scores, ref.scores)
assert abs(res.flops - efficiency(es.enc)["flops"]) < 1e-9

# %% [markdown]
# Dense search is a matrix product (256 multiply-adds per pair, FLOPs = 256). The hybrid score is JSD's
# integrated score $S_x = w_1\, D_t D_i^\top/\tau + w_2\, Z_t Z_i^\top$; `ExactBackend` computes both parts
# exactly (the sparse part from the postings) and ranks by their weighted sum, so its ranking is the ranking
# by $S_x$ — the R@1 values equal those stored with the bundled model.

# %%
exact = index.ExactBackend.build(docs)
dense = exact.search(queries, K, "dense")
hybrid = exact.search(queries, K, "hybrid", hybrid=hw)
r1["dense"] = 100 * np.mean(dense.ids[:, 0] == caption_to_image)
r1["integrated"] = 100 * np.mean(hybrid.ids[:, 0] == caption_to_image)
S = score_matrices(es.enc, hw.tau, hw.w1, hw.w2)
from_S = {k: t2i_metrics(S[k].numpy(), caption_to_image)["R@1"] for k in ("sparse", "dense", "integrated")}
for k in r1:
    print(f"{k:10s} t2i R@1 from the index {r1[k]:5.1f}   from the score matrix {from_S[k]:5.1f}   "
          f"bundled model's metadata {es.meta['test'][k]['R@1']:5.1f}")
    assert abs(r1[k] - from_S[k]) < 0.15 and abs(r1[k] - es.meta["test"][k]["R@1"]) < 0.15
print(f"hybrid FLOPs per pair: {hybrid.flops:.1f} (256 dense + {res.flops:.1f} sparse)")

# %% [markdown]
# ## 5. Effectiveness against cost as the L1 weight changes
#
# A stronger L1 weight gives sparser vectors: fewer postings walked (lower FLOPs), lower R@1. The paper's
# efficiency figure draws this for JSD and D2S; D2S's *probabilistic expansion control* (PEC) keeps only
# terms of the caption's own tokens early in training. The points below are read from committed results of
# `jsdlib jsd sweep --scales 0.3 1 3 10` (JSD, D2S) and `jsdlib jsd sweep --methods d2s --pec-only`
# (D2S + PEC), one seed each; `JSDLIB_FULL=1` retrains them here (about 40 minutes).

# %%
sweep_path, pec_path = RESULTS / "jsd_sweep_cpu-emoji.json", RESULTS / "jsd_sweep_pec_cpu-emoji.json"
if FULL:
    fs = jsd.emoji_features()
    cfg = get_preset("cpu-emoji")
    plain = []
    for method in ("jsd", "d2s"):
        plain += jsd_compare.l1_sweep(fs, cfg, method, [0.3, 1.0, 3.0, 10.0], seed=0)
    write_json({"rows": plain, "preset": cfg.name, "seed": 0}, sweep_path)
    pec = jsd_compare.l1_sweep(fs, cfg.replace(pec=True), "d2s", [0.3, 1.0, 3.0, 10.0], seed=0)
    write_json({"rows": pec, "preset": cfg.name, "seed": 0}, pec_path)
rows = json.loads(sweep_path.read_text())["rows"] + json.loads(pec_path.read_text())["rows"]
fig = viz.r1_vs_flops(rows, split="test", figsize=(7, 4))
plt.show()
for r in sorted(rows, key=lambda r: (r["method"], r["pec"], r["scale"])):
    name = r["method"].upper() + (" + PEC" if r["pec"] else "")
    print(f"{name:9s} L1 x{r['scale']:<4g} test R@1 {r['test_R@1']:5.1f}  "
          f"FLOPs {r['test_flops']:6.2f}  terms q/d {r['test_terms_q']:5.1f}/{r['test_terms_d']:5.1f}")
assert {(r["method"], r["pec"]) for r in rows} == {("jsd", False), ("d2s", False), ("d2s", True)}

# %% [markdown]
# Reading the figure: moving left (cheaper) costs R@1 for every method. At a given cost, the curve that
# sits higher is the better sparse retriever.

# %%
def best_under(rows, method, pec, budget):
    ok = [r for r in rows if r["method"] == method and r["pec"] == pec and r["test_flops"] <= budget]
    return max((r["test_R@1"] for r in ok), default=float("nan"))

for budget in (1.0, 6.0, 15.0):
    print(f"best test R@1 with FLOPs <= {budget:4.1f}:  JSD {best_under(rows, 'jsd', False, budget):5.1f}  "
          f"D2S {best_under(rows, 'd2s', False, budget):5.1f}  D2S+PEC {best_under(rows, 'd2s', True, budget):5.1f}")

# %% [markdown]
# ## 6. Engines: Seismic, faiss, Milvus Lite
#
# All back ends share one interface (`index.Backend`: `build`, `open`, `search`, `save`); `index.BACKENDS`
# names them. **Seismic** prunes and clusters postings lists and skips clusters whose summaries cannot
# reach the current top-k — fast, but *approximate*, so it is reported with its recall@10 against exact
# search. **faiss** `IndexFlatIP` is exact dense search. **Milvus** (through `pymilvus`) runs here as
# *Milvus Lite*, embedded and persisted in a local `.db` file; the same code takes a server URI such as
# `http://localhost:19530`. Its hybrid search fuses a dense and a sparse sub-search with
# `WeightedRanker(w1 / tau, w2, norm_score=False)` — raw, unnormalised scores, so the fused ranking is
# JSD's $S_x$.

# %%
import tempfile

with tempfile.TemporaryDirectory() as tmp:
    db = str(Path(tmp) / "jsd.db")
    mv = index.MilvusBackend.build(docs, db)
    mv.close()                                          # persisted: reopen it like after a restart
    mv = index.MilvusBackend.open(db)
    few = queries.rows(np.arange(0, 1000, 50))          # 20 captions
    m_hyb = mv.search(few, K, "hybrid", hybrid=hw)
    mv.close()
ex_hyb = exact.search(few, K, "hybrid", hybrid=hw)
same = int((m_hyb.ids == ex_hyb.ids).all(axis=1).sum())
print(f"Milvus Lite hybrid top-10 == exact S_x top-10 for {same} of {len(few)} captions; "
      f"scores agree within 1e-3: {bool(np.abs(m_hyb.scores - ex_hyb.scores).max() < 1e-3)}")
assert (m_hyb.ids == ex_hyb.ids).all(axis=1).mean() >= 0.95

# %% [markdown]
# The benchmark at small size: 1,000 documents (the 500 test images plus 500 synthetic vectors with the
# same statistics, `index.corpus_of_size`), the 1,000 captions as queries, one thread. Latency depends on
# the machine (the cell's output is not compared); the recall and FLOPs columns are checked below it.
# `python benchmarks/search.py` runs the same at 1k, 10k and 100k (README, "Search benchmark").

# %%
# NBVAL_IGNORE_OUTPUT
bench_docs = index.corpus_of_size(docs, 1000, seed=SEED)
bench = index.benchmark_backends(bench_docs, queries, repeats=3, n_timed=100, log=lambda *a: None)
print(index.ratio_table(bench))

# %%
by = {r["backend"]: r for r in bench}
for r in bench:
    fl = "—" if r["flops"] is None else f"{r['flops']:.2f}"
    # Seismic clusters its postings with random k-means: its recall is checked against a bound, not printed
    rec = "at least 0.8" if r["backend"] == "seismic" and r["recall_at_10"] > 0.8 else f"{r['recall_at_10']:.3f}"
    print(f"{r['backend']:12s} recall@10 vs exact search {rec} ({r['queries']} queries)  FLOPs {fl}")
assert by["exact"]["recall_at_10"] == 1.0 and by["brute_sparse"]["recall_at_10"] == 1.0
assert by["faiss"]["recall_at_10"] >= 0.99 and by["milvus"]["recall_at_10"] >= 0.99
assert by["seismic"]["recall_at_10"] > 0.8

# %% [markdown]
# ## Exercise
#
# Predict, without searching, how many postings caption 1 will touch from the document frequencies of its
# terms, then check it against the index's own count. Which of its terms costs most?
#
# <details><summary>Solution</summary>
#
# ```python
# q1 = queries.sparse[1]
# predicted = int(idx.df[q1.indices].sum())
# print(predicted, idx.search(q1, 10).work[0])           # equal
# j = q1.indices[np.argmax(idx.df[q1.indices])]
# print(es.vocab.term(int(j)), idx.df[j])               # the most common term dominates the cost
# ```
# Every active query term costs its whole postings list, whatever its weight: frequent terms are
# expensive, which is why FLOPs weights each term by $p_j(D)$ and why L1 (and PEC) push weight off them.
# </details>
