"""Milliseconds per query of CMC and of the cross-encoder as the number of candidates grows (spec cmc.md §5).

    python benchmarks/cmc_speed.py [--ns 16 64 256 1000 4000 10000] [--threads 1] [--ce-max 10000] [--json out.json]
                                   [--device cpu|cuda] [--precision auto|fp32|bf16] [--no-probe]

Same run, same CPU, the same pretrained MiniLM (all-MiniLM-L6-v2) for both, warm-up excluded, medians:

- **CMC** (frozen-encoder variant, d = 384): encode the query with MiniLM, look the N candidate vectors up in a
  precomputed catalogue, run the 2-layer head over ``[q; c_1..c_N]``. Query encoding included.
- **CE**: N forward passes of ``[CLS] query [SEP] candidate [SEP]`` through MiniLM + the linear head, in
  batches of 64 pairs; a 22-word query and a 38-word candidate (64 tokens with the specials, the WordNet setting).
- BE retrieval (a dense top-N over a 10,000-vector catalogue) is timed separately (the paper's speed claim is
  about the reranker).

Repeats: CMC 5 per N; CE 3 per N up to 256 candidates, 1 above (a CE pass over 10k candidates takes minutes
here). ``--ce-max`` stops measuring the CE above that N; larger N are then *extrapolated linearly* from the
largest measured N (the CE's cost is N independent passes) and marked so in the table. Answers the paper's
two speed claims: CMC with ~10k candidates vs the CE with 16, and CMC vs the CE at 64 candidates.

Precision (CMC head and CE alike): ``fp32`` (default; exact), ``auto`` = bf16 autocast where the hardware has
native bf16 (AVX512-BF16 / AMX CPUs, bf16 GPUs), fp32 elsewhere (``jsdlib.cmc.precision.DEFAULT_PRECISION`` says why bf16
is not the default: it changes CMC's top-16 for 2-4 % of WordNet test queries). The roofline columns: FLOPs of
one CMC query per N (``jsdlib.cmc.speed.cmc_flops``), achieved TFLOP/s, and its fraction of this machine's GEMM
throughput measured by a short matmul probe in the same run (fp32, and bf16 where native).
"""
from __future__ import annotations

import argparse

import torch

from jsdlib.common.io import write_json


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ns", type=int, nargs="+", default=[16, 64, 256, 1000, 4000, 10000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ce-max", type=int, default=10000, help="largest N the CE is measured at (above: extrapolated)")
    p.add_argument("--ce-batch", type=int, default=64)
    p.add_argument("--json")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when torch sees one)")
    p.add_argument("--precision", default="fp32", choices=["auto", "fp32", "bf16"],
                   help="fp32 (default, exact), auto (bf16 where native), bf16 (forced)")
    p.add_argument("--no-probe", action="store_true", help="skip the GEMM probe (no roofline fraction)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    from jsdlib.cmc.speed import roofline_table, speed_curve, speed_table

    res = speed_curve(args.ns, ce_max=args.ce_max, ce_batch=args.ce_batch, log=lambda m: print(m, flush=True),
                      device=args.device, precision=args.precision, probe=not args.no_probe)
    n_q, n_c = res["pair_tokens"]
    print(f"\nms per query on {res['device']}: {res['machine']}; {args.threads} thread(s), torch "
          f"{torch.__version__}; {res['precision']} (asked: {args.precision}); MiniLM-L6 (d = 384); CE pairs of "
          f"{n_q} + {n_c} word pieces; CMC query encoding included, candidate vectors precomputed; warm-up excluded; "
          "medians")
    print(speed_table(res))
    print()
    print(roofline_table(res))
    c = res["claims"]
    if "cmc_at_max_vs_ce_at_16" in c:
        x = c["cmc_at_max_vs_ce_at_16"]
        print(f"\nclaim 1 (paper: CMC with ~10k candidates takes about as long as the CE with 16): CMC at {x['n']} "
              f"= {x['cmc_ms']:.0f} ms vs CE at 16 = {x['ce16_ms']:.0f} ms -> ratio {x['ratio']:.2f} "
              f"({'holds' if x['holds_within_2x'] else 'does not hold'} within a factor 2 here)")
    if "ce_over_cmc_at_64" in c:
        print(f"claim 2 (paper: CMC 11x faster than the CE as a direct reranker): at 64 candidates the CE takes "
              f"{c['ce_over_cmc_at_64']:.1f}x CMC's time here")
    if args.json:
        write_json(res, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
