"""The pipelines of the CMC paper, arXiv 2405.12801 (BE, BE-CE, BE-CMC, BE-CMC-CE, CMC-final), their metrics (§5), the mean ± std
over seeds and the paired tests between pipelines."""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np
import torch

from jsdlib.cmc.baselines import baseline_rerank
from jsdlib.cmc.cross_encoder import CrossEncoder, PairCache, ce_rerank
from jsdlib.cmc.data import RerankData
from jsdlib.cmc.model import CMC
from jsdlib.cmc.rerank import catalogue_vectors, cmc_rerank
from jsdlib.common.metrics import linking_accuracy, list_ranks, mrr_at_k, success_at_k
from jsdlib.common.stats import mean_std, paired_test

PIPELINES = ("be", "be_ce", "be_cmc", "be_cmc_ce", "cmc_final")
# the paper's reranker comparison (issue 15), by name only: pipeline -> the reranker it needs in ``rerankers``
EXTRA_PIPELINES = {"be_poly": "poly", "be_sum_of_max": "sum_of_max"}
RECALL_KS = (1, 2, 4, 8, 16, 32, 64)


def ranking_metrics(ranked: torch.Tensor, gold: torch.Tensor, n_reranked: int, domains: Sequence[str]) -> dict:
    """R@{1..64}, MRR@10 and unnormalized / normalized accuracy per domain + macro + micro of one ranking.

    ``n_reranked``: how many candidates the final stage saw (the normalized accuracy's denominator counts the
    queries whose gold is among them).
    """
    r = list_ranks(ranked, gold)
    out = {f"R@{k}": success_at_k(r, k) for k in RECALL_KS}
    out["MRR@10"] = mrr_at_k(r, 10)
    acc = linking_accuracy(r, n_reranked, domains)
    out["acc_unnorm"] = acc["macro"]["acc_unnorm"]
    out["acc_norm"] = acc["macro"]["acc_norm"]
    out["acc_unnorm_micro"] = acc["micro"]["acc_unnorm"]
    out["acc_norm_micro"] = acc["micro"]["acc_norm"]
    out["per_domain"] = acc["per_domain"]
    return out


def _timed(fn):
    """``(fn(), seconds it took)``."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _check_pipelines(names: Sequence[str], k: int, k_ce: int, cmc, ce, rerankers: dict | None = None) -> None:
    """A clear error for unknown pipeline names, ``k_ce > k`` or a pipeline whose model is missing."""
    if k_ce > k:
        raise ValueError(f"k_ce ({k_ce}) must not exceed k ({k})")
    if any(x in names for x in ("be_ce", "be_cmc_ce")) and ce is None:
        raise ValueError("run_pipelines: be_ce / be_cmc_ce need a cross-encoder")
    if any(x in names for x in ("be_cmc", "be_cmc_ce", "cmc_final")) and cmc is None:
        raise ValueError("run_pipelines: the CMC pipelines need a CMC model")
    unknown = set(names) - set(PIPELINES) - set(EXTRA_PIPELINES)
    if unknown:
        raise ValueError(f"unknown pipelines {sorted(unknown)}; known: {PIPELINES + tuple(EXTRA_PIPELINES)}")
    missing = [n for n in names if n in EXTRA_PIPELINES and EXTRA_PIPELINES[n] not in (rerankers or {})]
    if missing:
        raise ValueError(f"run_pipelines: {missing} need rerankers={{kind: model}} with the kinds "
                         f"{[EXTRA_PIPELINES[n] for n in missing]} (jsdlib.cmc.baselines_train.train_reranker)")


def run_pipelines(data: RerankData, cmc: CMC | None, ce: CrossEncoder | None, k: int = 512, k_ce: int = 16,
                  names: Sequence[str] = PIPELINES, progress: bool = False, ce_cache: PairCache | None = None,
                  rerankers: dict | None = None, k_extra: int | None = None, k_final: int | None = None) -> dict:
    """Every pipeline of the CMC paper on ``data`` (test queries with the retriever's top-K), with metrics and ms/query.

    - ``be``: the retriever's own ranking (top-``k``).
    - ``be_cmc``: CMC reranks the top-``k`` (the "virtually enhanced retriever"; read R@16 / R@64 against ``be``).
    - ``be_ce``: the CE reranks the retriever's top-``k_ce``; the rest keeps the retriever's order.
    - ``be_cmc_ce``: the CE reranks CMC's top-``k_ce`` (out of the top-``k``).
    - ``cmc_final``: CMC reranks the retriever's top-``k_final`` (default ``k_ce``: the same lists the CE sees in
      ``be_ce``): CMC as the final reranker, compared with the CE on accuracy and time; the authors' setting is
      ``k_final=64`` (``C_eval = 64``).
    - ``be_poly`` / ``be_sum_of_max`` (:data:`EXTRA_PIPELINES`, only when named): the poly-encoder / sum-of-max
      reranker of ``rerankers["poly"]`` / ``rerankers["sum_of_max"]`` reranks the top-``k_extra`` (default
      ``k``, as ``be_cmc``; the authors' final rerankers read the top-64) and the rest keeps the retriever's order
      (:func:`jsdlib.cmc.baselines.baseline_rerank`; its time includes MiniLM token states not cached yet).

    ms/query: the time of the retrieval (dense top-``k`` over the catalogue from the query vectors) and of each
    reranking stage over all queries divided by their number, on this CPU; a CE stage counts
    ``ms per scored pair x pairs it scores`` (:class:`PairCache`); query encoding is not included (it is the
    same for every pipeline; ``benchmarks/cmc_speed.py`` measures it).
    """
    n = len(data)
    k = min(k, data.k)
    _check_pipelines(names, k, k_ce, cmc, ce, rerankers)
    k_final = k_ce if k_final is None else int(k_final)
    if not 1 <= k_final <= k:
        raise ValueError(f"k_final ({k_final}) must lie in [1, k = {k}]")

    def retrieve():  # exact dense top-k (what the BE costs per query; the ranking itself comes from data.topk)
        return torch.topk(data.query_emb.float() @ data.cand_emb.float().T, min(k, data.cand_emb.shape[0]), dim=1)

    _, t_be = _timed(retrieve)
    be = data.topk[:, :k]
    out, secs = {}, {"be": t_be}
    if cmc is not None:
        qv, cv = catalogue_vectors(cmc, data)
        (cmc_rows, _), secs["cmc"] = _timed(lambda: cmc_rerank(cmc, data, k, cand_emb=cv, query_emb=qv))
        if "cmc_final" in names:
            (cmc16, _), secs["cmc16"] = _timed(lambda: cmc_rerank(cmc, data, k_final, cand_emb=cv, query_emb=qv))
    cache = ce_cache if ce_cache is not None else PairCache()
    if "be_ce" in names:
        be_ce, n_pairs = ce_rerank(ce, data, be, k_ce, cache)
        secs["ce_be"] = cache.ms_per_pair * n_pairs / 1000.0
    if "be_cmc_ce" in names:
        be_cmc_ce, n_pairs = ce_rerank(ce, data, cmc_rows, k_ce, cache)
        secs["ce_cmc"] = cache.ms_per_pair * n_pairs / 1000.0
    extra, k_extra = {}, min(k_extra or k, k)
    for name in (x for x in names if x in EXTRA_PIPELINES):
        t = time.perf_counter()
        rows, _ = baseline_rerank(rerankers[EXTRA_PIPELINES[name]], data, k_extra)
        extra[name] = torch.cat([rows, be[:, k_extra:]], 1)
        secs[name] = time.perf_counter() - t
    plan = {**{name: ((lambda r=r: r), k_extra, ["be", name]) for name, r in extra.items()},
            "be": (lambda: be, k, ["be"]),
            "be_cmc": (lambda: cmc_rows, k, ["be", "cmc"]),
            "be_ce": (lambda: be_ce, k_ce, ["be", "ce_be"]),
            "be_cmc_ce": (lambda: be_cmc_ce, k_ce, ["be", "cmc", "ce_cmc"]),
            "cmc_final": (lambda: torch.cat([cmc16, be[:, k_final:]], 1), k_final, ["be", "cmc16"])}
    for name in names:
        get, n_re, stages = plan[name]
        ranked = get()
        m = ranking_metrics(ranked, data.gold, n_re, data.domain)
        m["ranks"] = list_ranks(ranked, data.gold).tolist()   # per query, 0-based (for paired tests)
        m["ms_per_query"] = 1000.0 * sum(secs[s] for s in stages) / n
        m["n_reranked"] = n_re
        out[name] = m
    return out


SUMMARY_KEYS = ("R@1", "R@2", "R@4", "R@8", "R@16", "R@32", "R@64", "MRR@10", "acc_unnorm", "acc_norm",
                "acc_unnorm_micro", "acc_norm_micro", "ms_per_query")


def aggregate_pipelines(per_seed: Sequence[dict]) -> dict:
    """Per-seed ``run_pipelines`` outputs -> ``{NAME: {metric: {"mean", "std"}, "per_domain": ...}}``."""
    out = {}
    for name in per_seed[0]:
        runs = [r[name] for r in per_seed]
        row = {k: mean_std([r[k] for r in runs]) for k in SUMMARY_KEYS}
        row["n_reranked"] = runs[0]["n_reranked"]
        row["per_domain"] = {d: {k: mean_std([r["per_domain"][d][k] for r in runs]) for k in ("acc_unnorm", "acc_norm")}
                             | {"n": runs[0]["per_domain"][d]["n"]} for d in runs[0]["per_domain"]}
        out[name] = row
    return out


# (test name, pipeline a, pipeline b, k): "gold within the top k" per query, a vs b
PIPELINE_TESTS = (("be_cmc_vs_be_R@16", "be_cmc", "be", 16), ("be_cmc_vs_be_R@64", "be_cmc", "be", 64),
                  ("be_cmc_ce_vs_be_ce_R@1", "be_cmc_ce", "be_ce", 1), ("be_ce_vs_be_R@1", "be_ce", "be", 1),
                  ("cmc_final_vs_be_ce_R@1", "cmc_final", "be_ce", 1),
                  # the reranker comparison (only when those pipelines ran)
                  ("be_cmc_vs_be_poly_R@1", "be_cmc", "be_poly", 1),
                  ("be_cmc_vs_be_poly_R@16", "be_cmc", "be_poly", 16),
                  ("be_cmc_vs_be_sum_of_max_R@1", "be_cmc", "be_sum_of_max", 1),
                  ("be_cmc_vs_be_sum_of_max_R@16", "be_cmc", "be_sum_of_max", 16),
                  # the same lists: CMC as the final reranker vs each comparison reranker (k_final = k_extra)
                  ("cmc_final_vs_be_poly_R@1", "cmc_final", "be_poly", 1),
                  ("cmc_final_vs_be_sum_of_max_R@1", "cmc_final", "be_sum_of_max", 1))


def pipeline_tests(per_seed: Sequence[dict], seeds: Sequence[int] | None = None) -> dict:
    """Paired t-tests between pipelines on the per-query hit ``[rank < k]``, pooled over seeds (each seed's test
    queries are the same, so query q of seed s is paired with query q of seed s):
    ``{name: {"a", "b", "k", "mean_a", "mean_b", "diff", "p", "n", "per_seed"}}`` (means in %).

    The pooled p treats the (seed, query) pairs as independent, which makes it too small: one seed's training
    draw is shared by all its queries. ``per_seed`` therefore also holds each seed's own test,
    ``[{"seed", "diff", "p", "n"}]`` (``seeds`` labels them; default 0, 1, ...), so a reader sees at how many seeds
    an ordering holds beside the pooled p."""
    seeds = list(range(len(per_seed))) if seeds is None else list(seeds)
    if len(seeds) != len(per_seed):
        raise ValueError(f"pipeline_tests: {len(seeds)} seed labels for {len(per_seed)} seeds' results")
    out = {}
    for name, a, b, k in PIPELINE_TESTS:
        if not all(a in r and b in r and "ranks" in r[a] for r in per_seed):
            continue
        hits = [(np.asarray(r[a]["ranks"]) < k, np.asarray(r[b]["ranks"]) < k) for r in per_seed]
        ha = np.concatenate([x for x, _ in hits]).astype(float)
        hb = np.concatenate([y for _, y in hits]).astype(float)
        out[name] = {"a": a, "b": b, "k": k, "mean_a": 100 * float(ha.mean()), "mean_b": 100 * float(hb.mean()),
                     "diff": 100 * float((ha - hb).mean()), "p": paired_test(ha, hb), "n": int(len(ha)),
                     "per_seed": [{"seed": s, "diff": 100 * float((x.astype(float) - y.astype(float)).mean()),
                                   "p": paired_test(x.astype(float), y.astype(float)), "n": int(len(x))}
                                  for s, (x, y) in zip(seeds, hits)]}
    return out


def summary_table(result: dict, keys=("R@1", "R@16", "R@64", "MRR@10", "acc_unnorm", "acc_norm", "ms_per_query"),
                  digits: int = 1) -> dict:
    """``{pipeline: {"R@1": "57.6 ± 0.3", ...}}`` for :func:`jsdlib.common.metrics.format_table`."""
    rows = {}
    for n, m in result["pipelines"].items():
        rows[n] = {k: f"{m[k]['mean']:.{digits}f} ± {m[k]['std']:.{digits}f}" for k in keys}
    return rows


