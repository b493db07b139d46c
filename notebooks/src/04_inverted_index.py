# %% [markdown]
# # 04 — Search for real: the inverted index, dense and hybrid search, engines
#
# **What you will learn.** Why sparse vectors over a vocabulary are searched with an *inverted index*
# (postings lists per term), how term-at-a-time search works, by hand for one caption and then with
# `jsdlib.index`; that the index returns exactly the brute-force top-k (ties included) while touching only
# the postings of the query's terms — and that this work, divided by the corpus size, *is* D2S's **FLOPs**:
# the expected number of multiply-adds per query-document pair, $\sum_j p_j(Q)\, p_j(D)$, where $p_j(Q)$ and
# $p_j(D)$ are the shares of queries and of documents whose sparse vector uses term $j$; dense search and
# JSD's hybrid score `w1 S_d + w2 S_s` searched exactly; the accuracy/cost trade-off of the L1 weight (with
# and without D2S's expansion control, PEC); and how the exact index compares with Seismic (approximate),
# faiss and Milvus Lite on the same vectors.
# Papers: JSD [arXiv 2508.16707](https://arxiv.org/abs/2508.16707) (its efficiency figure), D2S
# [arXiv 2402.17535](https://arxiv.org/abs/2402.17535) (FLOPs and PEC); the terms are defined in
# [the glossary](../docs/glossary.md).
#
# **Time:** under a minute on a laptop CPU (the L1 sweep is read from the course's results file,
# `results/reproduce_cpu/results.json`; `JSDLIB_FULL=1` retrains it, about half an hour).
# **Needs:** the bundled JSD model (`jsdlib/assets/jsd_cpu_emoji.safetensors`, committed) and notebook 01's
# stand-in VLP (committed; its features are cached on first use).

# %%
import json
import os
from dataclasses import asdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import scipy.sparse as sp
import torch

from jsdlib import index
from jsdlib.apps import viz
from jsdlib.apps.emoji_index import emoji_vectors
from jsdlib.apps.exercises import Exercises
from jsdlib.common.metrics import t2i_metrics
from jsdlib.experiments import tables
from jsdlib.jsd.efficiency import efficiency
from jsdlib.jsd.evaluate import score_matrices
from jsdlib.jsd.presets import get_preset

SEED = 0
FULL = os.environ.get("JSDLIB_FULL") == "1"
OUT = Path("results") / "reproduce_cpu"   # the course's results (`jsdlib reproduce --preset cpu`; notebook 06)
K = 10
ex = Exercises(solutions=True)   # False: hide the solutions and try the exercises yourself
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
for j, qj in zip(q.indices, q.data):            # a loop over the query's active terms, not over postings
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
# `InvertedIndex.search` runs the same loop compiled (numba) for a whole batch. Its contract (the
# `jsdlib.index.inverted` module docstring): the same top-k as the brute-force sparse product. It accumulates in float64 in the same order as scipy's
# sparse product, so the scores agree **bit for bit** and the lists agree even on ties.
#
# **FLOPs.** Averaged over the queries, postings touched per query divided by $N$ is
# $\frac{1}{|Q|}\sum_q \sum_j 1[q_j \ne 0]\, df_j / N = \sum_j p_j(Q)\, p_j(D)$ — D2S's FLOPs
# ([arXiv 2402.17535](https://arxiv.org/abs/2402.17535); `jsdlib.jsd.efficiency.flops`): the measured work and
# the expected-cost formula are the same number.

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
# Training adds an L1 penalty on the sparse vectors that pushes their weights toward zero (the head's ReLU
# makes many of them exactly zero). Fewer active terms mean shorter queries and shorter postings lists, so
# fewer FLOPs; the vectors also carry less, which can cost R@1. JSD's efficiency figure
# ([arXiv 2508.16707](https://arxiv.org/abs/2508.16707)) draws test R@1 against FLOPs as the L1 weight changes. D2S's *probabilistic expansion control* (**PEC**) is a second way to cut cost: in a
# training batch, with a probability that decays from 1 to 0, every caption's sparse vector is masked to the
# tokens of the caption itself, so the head learns words first and expands later.
#
# The curves come from the `jsd_sweep` step of the course's main job (`jsdlib reproduce --preset cpu`, in
# `results/reproduce_cpu/results.json`): JSD, D2S and D2S + PEC, each at L1 scale x0.3, x1, x3 and x10 (the
# scale multiplies the preset's L1 weights `eta_t`, `eta_i`), one seed. Notebook 06 (section 5) reads the same
# rows, so the two notebooks show the same numbers. The **bundled model** searched above is the star: the
# `cpu-emoji` recipe of the JSD points, seed 0, at L1 scale x0.5, without PEC, with the changes that make its terms
# words (`jsdlib.apps.bundled.BUNDLED_RECIPE`: the whole-word mask, the caption-word loss, the four training
# styles' pictures, up to 160 epochs). It is a single point, not on the
# curves' footing (it trained on more pictures): its test R@1 and FLOPs are stored in its metadata and section 4
# measured them again on this index.

# %%
if FULL:   # retrain the sweep step (or reuse its step file); results.json itself is left as it is
    from jsdlib.experiments import reproduce
    sweep = reproduce.run(OUT, preset="cpu", only=["jsd_sweep"], report=False, progress=False)["results"]["jsd_sweep"]
else:
    sweep = json.loads((OUT / "results.json").read_text())["results"]["jsd_sweep"]
rows = sweep["rows"]
bundled = {"R@1": es.meta["test"]["sparse"]["R@1"], "flops": es.meta["test"]["flops"]}


def series_name(r):
    return r["method"].upper() + (" + PEC" if r["pec"] else "")


fig = viz.r1_vs_flops(rows, split="test", figsize=(7, 4))
ax = fig.axes[0]
ax.scatter([bundled["flops"]], [bundled["R@1"]], marker="*", s=260, color="black", zorder=5,
           label="bundled model (JSD + word mask + caption words, L1 x0.5)")
ax.legend(fontsize=8, loc="lower right")
plt.show()
for r in sorted(rows, key=lambda r: (series_name(r), r["scale"])):
    print(f"{series_name(r):9s} L1 x{r['scale']:<4g} test R@1 {r['test_R@1']:5.1f}  "
          f"FLOPs {r['test_flops']:6.2f}  terms q/d {r['test_terms_q']:5.1f}/{r['test_terms_d']:5.1f}")
print(f"{'bundled':9s} L1 x0.5  test R@1 {bundled['R@1']:5.1f}  FLOPs {bundled['flops']:6.2f}  "
      f"terms q/d {es.meta['test']['terms_q']:5.1f}/{es.meta['test']['terms_d']:5.1f}  (JSD, its metadata)")
# the same numbers as notebook 06's sweep table, and the bundled point is what section 4 measured on this index
t06 = tables.sweep_table(sweep)
assert all(t06.loc[f"{r['method']}{' +PEC' if r['pec'] else ''} L1 x{r['scale']:g}", "test_R@1"]
           == round(r["test_R@1"], 2) for r in rows)
assert {(r["method"], r["pec"]) for r in rows} == {("jsd", False), ("d2s", False), ("d2s", True)}
assert abs(bundled["R@1"] - r1["sparse"]) < 0.15 and abs(bundled["flops"] - res.flops) < 1e-3
from jsdlib.apps.bundled import BUNDLED_RECIPE

preset = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(get_preset("cpu-emoji")).items()}
differs = {k for k, v in es.meta["config"].items() if k in preset and v != preset[k]}
# the JSD points and the star: the bundled recipe apart (its L1 weights are the x0.5 scale's)
assert differs <= {"seed"} | set(BUNDLED_RECIPE) and sweep["seed"] == es.meta["seed"] == 0
assert (es.meta["config"]["eta_t"], es.meta["config"]["eta_i"]) == (preset["eta_t"] * 0.5, preset["eta_i"] * 0.5)
print("the bundled model differs from the JSD x1 point in:", ", ".join(sorted(differs)),
      f"and trains on the {es.meta['train_set']} split")

# %% [markdown]
# Does a stronger L1 weight give fewer FLOPs on every curve? The penalty only pushes training toward sparser
# vectors; each point is a separate training, stopped at its own best validation epoch, so nothing forces
# FLOPs or R@1 to move the same way at every step. The next cell reads the answer off each curve.

# %%
verdicts = {}
for name in ("JSD", "D2S", "D2S + PEC"):
    rs = sorted((r for r in rows if series_name(r) == name), key=lambda r: r["scale"])
    fl, acc1 = [r["test_flops"] for r in rs], [r["test_R@1"] for r in rs]
    verdicts[name] = (all(a > b for a, b in zip(fl, fl[1:])), all(a >= b for a, b in zip(acc1, acc1[1:])))
    print(f"{name:9s} FLOPs " + " -> ".join(f"{f:.2f}" for f in fl)
          + f"  (L1 x{rs[0]['scale']:g} -> x{rs[-1]['scale']:g}): falls at every step: "
          + ("yes" if verdicts[name][0] else "no"))
    print(f"{'':9s} R@1   " + " -> ".join(f"{a:.1f}" for a in acc1) + "  never rises: "
          + ("yes" if verdicts[name][1] else "no"))
    assert len(rs) == len(sweep["scales"])

# %% [markdown]
# Compare the curves at **equal cost**, not at equal L1 scale: for a FLOPs budget, take each curve's highest
# test R@1 among its points at or under that budget. A curve with no point that cheap shows "—" (not run at a
# strong enough L1 weight). Then: is any sweep point no more costly *and* no less accurate than the bundled
# model?

# %%
def best_under(name, budget):
    ok = [r for r in rows if series_name(r) == name and r["test_flops"] <= budget]
    return max(ok, key=lambda r: r["test_R@1"]) if ok else None


def show(r):
    return f"{r['test_R@1']:.1f} (x{r['scale']:g})" if r else "—"


print("best test R@1 (and its L1 scale) among the points at or under a FLOPs budget")
print(f"{'FLOPs budget':>12s}  {'JSD':>11s}  {'D2S':>11s}  {'D2S + PEC':>11s}  {'bundled':>8s}")
for budget in (1.0, 1.5, 6.0, 15.0):
    star = f"{bundled['R@1']:.1f}" if bundled["flops"] <= budget else "—"
    print(f"{'<= ' + format(budget, '.1f'):>12s}  "
          + "  ".join(f"{show(best_under(n, budget)):>11s}" for n in ("JSD", "D2S", "D2S + PEC")) + f"  {star:>8s}")
print(f"—: no point of that curve (or the bundled model) is this cheap; the sweep's strongest L1 scale is "
      f"x{max(sweep['scales']):g}")
dominating = [f"{series_name(r)} x{r['scale']:g}" for r in rows
              if r["test_flops"] <= bundled["flops"] and r["test_R@1"] >= bundled["R@1"]]
print(f"sweep points no more costly and no less accurate than the bundled model "
      f"(R@1 {bundled['R@1']:.1f}, FLOPs {bundled['flops']:.2f}): {', '.join(dominating) or 'none'}")
jsd1 = next(r for r in rows if series_name(r) == "JSD" and r["scale"] == 1.0)
print(f"JSD at L1 x1 -> the bundled recipe (L1 x0.5, word mask, caption words, four styles; seed 0): FLOPs "
      f"{jsd1['test_flops']:.2f} -> {bundled['flops']:.2f}, test R@1 {jsd1['test_R@1']:.1f} -> {bundled['R@1']:.1f}")
assert best_under("JSD", float("inf")) is not None and best_under("D2S", 0.0) is None

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
# ## Exercises
#
# Three small checks of what this notebook built: the FLOPs formula, term-at-a-time search and the cost of a
# query. Each takes a second. Set `ex = Exercises(solutions=False)` in the first code cell to try them yourself.
#
# ### Exercise 1
# FLOPs by hand. Take the first 100 captions as the queries $Q$ (`queries.sparse[:100]`) and the 500 images as
# the documents $D$ (`docs.sparse`). Compute $\sum_j p_j(Q)\, p_j(D)$ with numpy, where $p_j$ is the share of
# rows of the matrix in which term $j$ is non-zero. `answer_1` is that number (a float). The check compares it
# with the work the index measures when it searches those 100 captions (`idx.search(...).flops`).

# %%
answer_1 = None   # your answer here: a float, sum_j p_j(Q) p_j(D) for the first 100 captions

# %% solution
if ex.solutions:
    Q100 = queries.sparse[:100]
    p_q = np.bincount(Q100.indices, minlength=V) / Q100.shape[0]   # share of the 100 captions using term j
    p_d = np.bincount(docs.sparse.indices, minlength=V) / n_docs    # share of the 500 images using term j
    answer_1 = float(p_q @ p_d)

# %%
ex.check(1, answer_1, lambda a: abs(float(a) - idx.search(queries.sparse[:100], K).flops) < 1e-9,
         "p_j(Q) = (captions among the 100 whose vector uses term j) / 100, p_j(D) = (images using j) / 500; "
         "sum their products over the vocabulary")

# %% [markdown]
# ### Exercise 2
# Term at a time on a tiny index. The cell below makes 5 documents over 5 terms and a query that uses terms 1
# and 3, each with weight 1. Write down the postings lists of terms 1 and 3, add $q_j x_j$ into one
# accumulator per document, and rank (score descending, ties to the lower document id). `answer_2` is a pair:
# (the top-3 document ids, best first; the number of postings you walked). The check builds
# `index.InvertedIndex` on the same matrix and compares with its `search`.

# %%
toy = sp.csr_matrix(np.array([[0.0, 1.0, 0.0, 2.0, 0.0],     # document 0
                              [0.5, 0.0, 0.0, 1.0, 0.0],     # document 1
                              [0.0, 0.0, 3.0, 0.0, 1.0],     # document 2
                              [1.0, 1.0, 0.0, 0.0, 0.0],     # document 3
                              [0.0, 2.0, 0.0, 1.0, 0.0]]))   # document 4
q_toy = {1: 1.0, 3: 1.0}                                     # term -> query weight
answer_2 = None   # your answer here: ([three document ids], postings walked)

# %% solution
if ex.solutions:
    C = toy.tocsc()                                          # column j = term j's postings list
    acc_toy, walked = {}, 0
    for j, qj in q_toy.items():
        for d, x in zip(C.indices[C.indptr[j]:C.indptr[j + 1]], C.data[C.indptr[j]:C.indptr[j + 1]]):
            acc_toy[int(d)] = acc_toy.get(int(d), 0.0) + qj * x
            walked += 1
    answer_2 = (sorted(acc_toy, key=lambda d: (-acc_toy[d], d))[:3], walked)

# %%
toy_res = index.InvertedIndex.build(toy).search(
    sp.csr_matrix((list(q_toy.values()), ([0] * len(q_toy), list(q_toy))), shape=(1, toy.shape[1])), 3)
ex.check(2, answer_2, lambda a: [int(d) for d in a[0]] == toy_res.ids[0].tolist() and int(a[1]) == toy_res.work[0],
         "documents 0 and 4 score the same: the lower id ranks first; every posting of terms 1 and 3 is walked, "
         "even where the product is small")

# %% [markdown]
# ### Exercise 3
# The cost of one query, term by term. For caption 1 (`queries.sparse[1]`), count for each of its active terms
# how many images use that term, straight from the image matrix `docs.sparse` (not from the index).
# `answer_3` is a dict {term id: number of images}. The check compares each count with the length of the
# term's postings list and the total with the postings the index walks for caption 1. Every active query term
# costs its whole postings list, whatever its weight: frequent terms are the expensive ones, which is why FLOPs
# weighs each term by $p_j(D)$.

# %%
answer_3 = None   # your answer here: {term id: number of images whose vector uses it}, for caption 1's terms

# %% solution
if ex.solutions:
    q1 = queries.sparse[1]
    answer_3 = {int(j): int(np.count_nonzero(docs.sparse.indices == j)) for j in q1.indices}
    j_max = max(answer_3, key=answer_3.get)
    print(f"caption 1 {es.split.captions[1]!r}: {len(answer_3)} terms, {sum(answer_3.values())} postings; "
          f"the longest list is {es.vocab.term(j_max)!r} ({answer_3[j_max]} images)")

# %%
q1_terms = set(queries.sparse[1].indices.tolist())
ex.check(3, answer_3, lambda a: set(a) == q1_terms and all(a[j] == len(idx.postings(j)[0]) for j in a)
         and sum(a.values()) == idx.search(queries.sparse[1], K).work[0],
         "one entry per active term of caption 1; count the images whose row has that term (docs.sparse.indices)")
