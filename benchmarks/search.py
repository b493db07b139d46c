"""Search back ends on JSD's vectors: build time, latency, recall@10 against exact search, FLOPs.

    python benchmarks/search.py [--sizes 1000 10000 100000] [--backends exact brute_dense ...]
                                [--queries 1000] [--timed 200] [--repeats 3] [--json out.json]

Documents: the bundled JSD model's image vectors of all 3,635 emoji images (train, val, test), then, for
larger corpora, deterministic synthetic vectors with the same statistics (``jsdlib.index.synthetic.synthetic_sparse``:
active-term counts, term shares p_j and per-term weights of the real image vectors; dense: a real vector
plus noise, renormalised). Queries: the 1,000 emoji test captions (sparse ``z_t`` for sparse back ends,
dense ``d_t`` for dense ones).

For each size and back end: build seconds; ms/query = median over ``--repeats`` of the mean over ``--timed``
queries issued one at a time (one thread everywhere); queries/s = 1000 / ms; recall@10 = top-10 overlap with
the exact reference of the same side over all queries (the inverted index for sparse back ends, brute-force
dense for dense ones); FLOPs = measured multiply-adds per (query, document) pair (postings touched / N for
the inverted index = D2S FLOPs; dim for dense; "—" where the engine does not expose its work). The table
gives each back end's latency as a multiple of the exact index and of brute-force dense from the same run.
``--json PATH`` writes ``{"rows": [{"backend", "n", "build_s", "ms_per_query", "qps", "recall_at_10",
"flops"}], "machine": ...}``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path


def _single_thread() -> None:
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "RAYON_NUM_THREADS"):
        os.environ.setdefault(v, "1")


def main(argv=None) -> int:
    from jsdlib.index.bench import BENCH_BACKENDS

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    p.add_argument("--backends", nargs="+", default=list(BENCH_BACKENDS), choices=list(BENCH_BACKENDS))
    p.add_argument("--queries", type=int, default=1000, help="queries used for recall (test captions)")
    p.add_argument("--timed", type=int, default=200, help="queries timed one at a time")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0, help="seed of the synthetic vectors")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--txt", help="also write the printed table here")
    args = p.parse_args(argv)
    _single_thread()

    import numpy as np
    import torch

    from jsdlib.apps.emoji_index import emoji_vectors
    from jsdlib.index import Vectors, benchmark_backends, corpus_of_size, ratio_table

    torch.set_num_threads(1)
    try:
        import faiss

        faiss.omp_set_num_threads(1)
    except ImportError:
        pass
    docs_all, _, _, _ = emoji_vectors("all")
    _, queries, _, _ = emoji_vectors("test")
    queries = queries.rows(np.arange(min(args.queries, len(queries))))
    lines = []

    def say(*a):
        s = " ".join(str(x) for x in a)
        print(s, flush=True)
        lines.append(s)

    machine = (f"{platform.machine()}, {os.cpu_count()} CPU cores (shared), one thread per back end, "
               f"python {platform.python_version()}")
    say(f"search benchmark: {len(queries)} emoji test captions as queries ({args.timed} timed one at a time, "
        f"median of {args.repeats} repeats); real image vectors: {len(docs_all)} (rest synthetic, seed {args.seed})")
    say(f"machine: {machine}")
    import hashlib

    from jsdlib.jsd.io import JSD_ASSET, load_jsd

    meta = load_jsd()[1]
    digest = hashlib.sha256(JSD_ASSET.read_bytes()).hexdigest()[:12]
    model = (f"bundled JSD model {JSD_ASSET.name} (sha256 {digest}; preset {meta.get('preset')}, seed "
             f"{meta.get('seed')}, pec {meta.get('config', {}).get('pec')}, test terms q/d "
             f"{meta.get('test', {}).get('terms_q')}/{meta.get('test', {}).get('terms_d')})")
    say(model)
    rows = []
    for n in args.sizes:
        docs = corpus_of_size(docs_all, n, seed=args.seed)
        say(f"n = {n:,}: {docs.sparse.nnz / n:.1f} active terms per document, "
            f"{queries.sparse.nnz / len(queries):.1f} per query")
        rows += benchmark_backends(docs, Vectors(queries.dense, queries.sparse), args.backends, repeats=args.repeats,
                                   n_timed=args.timed, log=say)
    table = ratio_table(rows)
    say("")
    say(table)
    by = {(r["n"], r["backend"]): r for r in rows}
    big = max(args.sizes)
    if (big, "exact") in by and (big, "seismic") in by:
        ratio = by[(big, "exact")]["ms_per_query"] / by[(big, "seismic")]["ms_per_query"]
        say(f"goal (exact index <= 2x Seismic's latency at n = {big:,}, identical top-10 to brute force): "
            f"{'met' if ratio <= 2 and by[(big, 'exact')]['recall_at_10'] == 1.0 else 'not met'} "
            f"({ratio:.2f}x; exact recall@10 vs brute force {by[(big, 'exact')]['recall_at_10']:.3f})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        out = {"rows": rows, "machine": machine, "model": model, "queries": len(queries), "timed": args.timed,
               "repeats": args.repeats}
        Path(args.json).write_text(json.dumps(out, indent=1))
        say(f"wrote {args.json}")
    if args.txt:
        Path(args.txt).write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
