"""The search benchmark: build each back end, time single-query search, recall@10 against the exact reference,
and the Markdown table of latency ratios (``benchmarks/search.py``, notebook 04)."""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from jsdlib.index.brute import BruteForceBackend
from jsdlib.index.exact import ExactBackend
from jsdlib.index.faiss_backend import FaissBackend
from jsdlib.index.milvus import MilvusBackend
from jsdlib.index.reference import brute_force_dense, brute_force_sparse
from jsdlib.index.seismic import SeismicBackend
from jsdlib.index.types import Vectors, recall_at_k


BENCH_BACKENDS = ("exact", "brute_dense", "brute_sparse", "faiss", "seismic", "milvus")


def _time_queries(fn, queries: Vectors, repeats: int) -> float:
    """Median over ``repeats`` of the mean seconds per query, queries issued one at a time."""
    per = []
    singles = [queries.rows([i]) for i in range(len(queries))]
    for _ in range(repeats):
        t = time.perf_counter()
        for q in singles:
            fn(q)
        per.append((time.perf_counter() - t) / len(singles))
    return float(np.median(per))


def benchmark_backends(docs: Vectors, queries: Vectors, backends: Sequence[str] = BENCH_BACKENDS, k: int = 10,
                       repeats: int = 3, n_timed: int = 200, workdir=None, seismic_options: dict | None = None,
                       caps: dict | None = None, log=print) -> list[dict]:
    """Build each back end on ``docs`` and measure it on ``queries``: one row per back end.

    Row: ``backend, n, build_s, ms_per_query`` (median over ``repeats`` of the mean over ``n_timed`` single-query
    calls), ``qps = 1000 / ms_per_query``, ``recall_at_10`` (top-k overlap with the exact reference of the same
    side over *all* queries: brute-force sparse for sparse back ends, brute-force dense for dense ones),
    ``flops`` (measured multiply-adds per (query, doc) pair; None where the engine does not expose them).
    Sparse back ends search the sparse vectors, dense ones the dense vectors; Milvus is timed on sparse search.
    ``caps`` = ``{backend: (recall queries, timed queries)}`` limits slow engines (default: Milvus Lite, whose
    3.x engine is pure Python, gets ``(50, 10)``); a row's ``queries`` / ``timed`` say what it used.
    """
    unknown = set(backends) - set(BENCH_BACKENDS)
    if unknown:
        raise ValueError(f"benchmark_backends: unknown back ends {sorted(unknown)}; choose from {BENCH_BACKENDS}")
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    workdir = Path(tmp.name if tmp else workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n = len(docs)
    timed = queries.rows(np.arange(min(n_timed, len(queries))))
    refs = {}  # the exact reference of each side, computed once
    rows = []
    try:
        for name in backends:
            mode = "dense" if name in ("brute_dense", "faiss") else "sparse"
            t = time.perf_counter()
            b = _build(name, _side(docs, mode), workdir / f"milvus_{n}.db", seismic_options)
            build_s = time.perf_counter() - t
            n_q, n_t = (caps or {"milvus": (50, 10)}).get(name, (len(queries), len(timed)))
            n_q, n_t = min(n_q, len(queries)), min(n_t, len(timed))
            res = b.search(_side(queries, mode, n_q), k, mode)
            if mode not in refs:
                refs[mode] = (brute_force_sparse(queries.sparse, docs.sparse, k) if mode == "sparse"
                              else brute_force_dense(queries.dense, docs.dense, k))
            sec = _time_queries(lambda q: b.search(q, k, mode), _side(timed, mode, n_t), repeats)
            rows.append({"backend": name, "n": n, "build_s": build_s, "ms_per_query": 1000 * sec, "qps": 1.0 / sec,
                         "recall_at_10": recall_at_k(res.ids, refs[mode].ids[:n_q], 10), "flops": res.flops,
                         "queries": n_q, "timed": n_t})
            log(f"  {name:12s} n={n:>7,d} build {build_s:7.2f} s  {1000 * sec:8.3f} ms/query  "
                f"R@10 {rows[-1]['recall_at_10']:.4f}")
            if name == "milvus":
                b.close()
    finally:
        if tmp is not None:
            tmp.cleanup()
    return rows


def _side(v: Vectors, mode: str, n: int | None = None) -> Vectors:
    """The dense or the sparse side of ``v`` alone (its first ``n`` rows)."""
    return Vectors(dense=v.dense[:n]) if mode == "dense" else Vectors(sparse=v.sparse[:n])


def _build(name: str, docs: Vectors, milvus_db: Path, seismic_options: dict | None):
    """The benchmarked back end ``name`` (a :data:`BENCH_BACKENDS` entry) built on one side of the documents."""
    if name == "exact":
        return ExactBackend.build(docs)
    if name in ("brute_dense", "brute_sparse"):
        return BruteForceBackend.build(docs)
    if name == "faiss":
        return FaissBackend.build(docs)
    if name == "seismic":
        return SeismicBackend.build(docs, **(seismic_options or {}))
    return MilvusBackend.build(docs, milvus_db)


def ratio_table(rows: Sequence[dict]) -> str:
    """Markdown table of benchmark rows with each back end's latency as a multiple of ``exact`` and ``brute_dense``
    (same n, same run)."""
    head = ("| n | backend | build s | ms/query | queries/s | recall@10 | FLOPs | x exact | x brute dense |\n"
            "|---|---|---|---|---|---|---|---|---|")
    by = {(r["n"], r["backend"]): r for r in rows}
    out = [head]
    for r in rows:
        ex, bd = by.get((r["n"], "exact")), by.get((r["n"], "brute_dense"))
        fx = f"{r['ms_per_query'] / ex['ms_per_query']:.2f}" if ex else "—"
        fd = f"{r['ms_per_query'] / bd['ms_per_query']:.2f}" if bd else "—"
        fl = "—" if r["flops"] is None else f"{r['flops']:.1f}"
        qps = f"{r['qps']:,.0f}" if r["qps"] >= 10 else f"{r['qps']:.2f}"
        out.append(f"| {r['n']:,} | {r['backend']} | {r['build_s']:.2f} | {r['ms_per_query']:.3f} | {qps} | "
                   f"{r['recall_at_10']:.3f} | {fl} | {fx} | {fd} |")
    return "\n".join(out)

