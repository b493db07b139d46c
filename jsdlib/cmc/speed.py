"""Speed (arXiv 2405.12801): ms per query of CMC and of the cross-encoder against the number of candidates, the
FLOPs of the CMC head and the roofline against this machine's measured GEMM throughput."""
from __future__ import annotations

import math
import statistics
import time
from typing import Sequence

import torch
import torch.nn.functional as F

from jsdlib.cmc.cross_encoder import CrossEncoder
from jsdlib.cmc.model import CMC, TextEncoder, default_device, ffn_dim
from jsdlib.cmc.precision import DEFAULT_PRECISION, resolve_bf16
from jsdlib.common import hardware
from jsdlib.common.seeding import seeded
from jsdlib.vlp.minilm import minilm_tokenizer

QUERY_WORDS, CANDIDATE_WORDS = 22, 38   # the WordNet setting: a 22-word query, a 38-word candidate
CATALOGUE = 10000                       # BE retrieval: dense top-N over this many vectors (at least)


def _median_ms(fn, repeats: int, device="cpu") -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up call (excluded).

    On CUDA every call is followed by a synchronisation, so the time is the kernels', not the launch's.
    """
    dev = torch.device(device)

    def call():
        fn()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    call()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        call()
        ts.append(time.perf_counter() - t)
    return 1000.0 * statistics.median(ts)


def cmc_flops(n: int, d: int = 384, n_layers: int = 2, ffn: int | None = None) -> int:
    """FLOPs of the CMC head over one query and ``n`` candidates (``L = n + 1`` vectors), a multiply-add = 2.

    Per layer: the Q, K, V and output projections ``8 L d^2``, attention ``4 L^2 d`` (``Q K^T`` and ``A V``
    over all heads), the feed-forward ``4 L d f``; then the scores ``2 n d``::

        FLOPs = n_layers (8 L d^2 + 4 L^2 d + 4 L d f) + 2 n d

    Softmax, layer norms and residuals (O(L^2 h) and O(L d) element-wise work) are left out. At n = 10,000,
    d = 384, f = 1024: 3.6e11, of which attention is 85 %.
    """
    f = ffn_dim(d) if ffn is None else ffn
    L = n + 1
    return n_layers * (8 * L * d * d + 4 * L * L * d + 4 * L * d * f) + 2 * n * d


@torch.no_grad()
def speed_curve(ns: Sequence[int] = (16, 64, 256, 1000, 4000, 10000), ce_max: int = 10000, ce_batch: int = 64,
                max_len: int = 64, log=print, device: str | None = None, precision: str = DEFAULT_PRECISION,
                probe: bool = True, repeats: tuple[int, int, int] = (5, 3, 1), tiny: bool = False) -> dict:
    """Milliseconds per query of CMC and of the cross-encoder for each number of candidates ``N`` in ``ns``.

    Same MiniLM for both, same process, warm-up excluded, medians (CMC ``repeats[0]`` repeats; CE
    ``repeats[1]`` up to 256 candidates, ``repeats[2]`` above). **CMC** (frozen-encoder variant, d = 384): encode
    the query, look the N candidate vectors up in a precomputed catalogue, run the head over ``[q; c_1..c_N]``
    (query encoding included). **CE**: N pair passes ``[CLS] q [SEP] c [SEP]`` in batches of ``ce_batch`` (a
    22-word query, a 38-word candidate: the WordNet setting). BE retrieval (dense top-N over a 10,000-vector
    catalogue) is timed separately. Above ``ce_max`` the CE is *extrapolated linearly* from the largest measured N
    (N independent passes) and marked so.

    ``device``: None = ``"cuda"`` when torch sees one, else ``"cpu"``. ``precision`` (CMC head and CE alike, so
    the ratio compares like with like): ``"fp32"`` (default), ``"auto"`` = bf16 autocast where the hardware has
    native bf16 (fp32 elsewhere), ``"bf16"``. ``probe``: measure this machine's fp32 GEMM throughput (and bf16 where
    native) in the same run, for the roofline columns (:func:`cmc_flops` / time / peak). ``tiny``: a 2-layer
    random BERT of width 32 instead of MiniLM (dry runs and tests; the CMC head keeps d = 384).

    Returns ``{"rows": [{"n", "cmc_ms", "ce_ms", "ce_measured", "ce_over_cmc", "be_topk_ms", "cmc_gflop",
    "cmc_tflops", "cmc_peak_frac"}], "claims": {...}, "pair_tokens": [query, candidate], "threads", "torch",
    "device", "precision", "gemm_tflops": {"fp32", "bf16"}, "machine"}`` with the paper's two speed claims.
    """
    dev = torch.device(device or default_device())
    bf16 = resolve_bf16(precision, dev)
    d = 384
    with seeded(0):
        enc, ce = _encoders(tiny, max_len, precision)
        enc, ce = enc.eval().to(dev), ce.eval().to(dev)
        cmc = CMC(d).eval().to(dev)
        cmc.head.precision = precision
        words = "the quick brown fox jumps over a lazy dog near river bank in the cold morning light".split()
        query, cand = " ".join((words * 3)[:QUERY_WORDS]), " ".join((words * 4)[:CANDIDATE_WORDS])
        n_q, n_c = len(enc.tokenizer(query)["input_ids"]), len(enc.tokenizer(cand)["input_ids"])
        catalogue = F.normalize(torch.randn(max(*ns, CATALOGUE), d), dim=-1).to(dev)
        q_proj = torch.randn(enc.dim, d, device=dev) / math.sqrt(enc.dim) if enc.dim != d else None

    def run_cmc(n):
        qv = enc([query])
        return cmc(qv if q_proj is None else qv @ q_proj, catalogue[torch.arange(n, device=dev)][None])

    def run_ce(n):
        return torch.cat([ce.pair_scores([query] * min(ce_batch, n - s), [cand] * min(ce_batch, n - s))
                          for s in range(0, n, ce_batch)])

    def run_be(n):
        return torch.topk(catalogue[:1] @ catalogue.T, n, dim=1)

    gemm = _gemm_probe(dev, tiny, log) if probe else {"fp32": None, "bf16": None}
    peak = gemm["bf16"] if bf16 else gemm["fp32"]

    rows = _measure(ns, run_cmc, run_ce, run_be, ce_max, repeats, dev, d, peak, log)
    machine = hardware.describe() if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    return {"rows": rows, "claims": speed_claims(rows), "threads": torch.get_num_threads(), "torch": torch.__version__,
            "pair_tokens": [n_q, n_c], "device": str(dev), "precision": "bf16" if bf16 else "fp32",
            "gemm_tflops": gemm, "machine": f"{hardware.cpu_model()}; {machine}"}


def speed_claims(rows: Sequence[dict]) -> dict:
    """The paper's two speed claims read off the rows: CMC at the largest N (>= 4,000) against the CE at N = 16
    (``holds_within_2x``: the ratio lies in [0.5, 2]), and the CE / CMC ratio at N = 64."""
    by_n, claims = {r["n"]: r for r in rows}, {}
    if 16 in by_n and max(by_n) >= 4000:
        big = max(by_n)
        ratio = by_n[big]["cmc_ms"] / by_n[16]["ce_ms"]
        claims["cmc_at_max_vs_ce_at_16"] = {"n": big, "cmc_ms": by_n[big]["cmc_ms"], "ce16_ms": by_n[16]["ce_ms"],
                                            "ratio": ratio, "holds_within_2x": bool(0.5 <= ratio <= 2.0)}
    if 64 in by_n:
        claims["ce_over_cmc_at_64"] = by_n[64]["ce_ms"] / by_n[64]["cmc_ms"]
    return claims


def _measure(ns, run_cmc, run_ce, run_be, ce_max: int, repeats, dev, d: int, peak, log) -> list[dict]:
    """The rows of :func:`speed_curve`: median ms of CMC, the CE (extrapolated above ``ce_max``) and BE top-N per
    N, with CMC's FLOPs (:func:`cmc_flops`) and achieved throughput against the GEMM probe's ``peak``."""
    rows, ce_last = [], None
    r_cmc, r_ce_small, r_ce_big = repeats
    for n in ns:
        row = {"n": n, "cmc_ms": _median_ms(lambda: run_cmc(n), r_cmc, dev),
               "be_topk_ms": _median_ms(lambda: run_be(n), r_cmc, dev)}
        if n <= ce_max:
            row["ce_ms"] = _median_ms(lambda: run_ce(n), r_ce_small if n <= 256 else r_ce_big, dev)
            row["ce_measured"] = True
            ce_last = (n, row["ce_ms"])
        elif ce_last is None:
            raise ValueError(f"speed_curve: ce_max={ce_max} is below every N in {list(ns)}")
        else:
            row["ce_ms"], row["ce_measured"] = ce_last[1] * n / ce_last[0], False
        row["ce_over_cmc"] = row["ce_ms"] / row["cmc_ms"]
        fl = cmc_flops(n, d)
        row["cmc_gflop"] = fl / 1e9
        row["cmc_tflops"] = fl / (row["cmc_ms"] / 1000.0) / 1e12
        row["cmc_peak_frac"] = row["cmc_tflops"] / peak if peak else None
        rows.append(row)
        roof = f"  {row['cmc_gflop']:.1f} GFLOP, {row['cmc_tflops']:.3f} TFLOP/s" + (
            f" = {100 * row['cmc_peak_frac']:.0f} % of the GEMM probe" if peak else "")
        log(f"N={n:6d}  CMC {row['cmc_ms']:9.1f} ms  CE {row['ce_ms']:10.1f} ms"
            f"{'' if row['ce_measured'] else ' (extrapolated)'}  BE top-N {row['be_topk_ms']:.2f} ms{roof}")
    return rows


def _encoders(tiny: bool, max_len: int, precision: str) -> tuple[TextEncoder, CrossEncoder]:
    """The query encoder and the CE of the speed curve: MiniLM, or (``tiny``) a 2-layer random BERT of width 32."""
    if not tiny:
        return TextEncoder(max_len=max_len), CrossEncoder(max_len=max_len, precision=precision)
    from transformers import BertConfig, BertModel  # noqa: PLC0415 (~5 s to import: only for the tiny dry run)

    tok = minilm_tokenizer(markers=True)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=max(64, max_len))
    return (TextEncoder(BertModel(cfg), tok, max_len=max_len),
            CrossEncoder(BertModel(cfg), tok, max_len=max_len, precision=precision))


def _gemm_probe(dev: torch.device, tiny: bool, log) -> dict:
    """This machine's GEMM throughput in TFLOP/s: fp32, and bf16 only where native (emulated bf16 GEMMs say
    nothing of the hardware)."""
    n, secs = (256, 0.2) if tiny else (1024, 1.0)
    gemm = {"fp32": hardware.matmul_tflops(torch.float32, dev, n=n, seconds=secs), "bf16": None}
    if resolve_bf16("auto", dev):
        gemm["bf16"] = hardware.matmul_tflops(torch.bfloat16, dev, n=n, seconds=secs)
    log(f"GEMM probe ({torch.get_num_threads()} thread(s), {dev}): fp32 {gemm['fp32']:.3f} TFLOP/s, bf16 "
        + (f"{gemm['bf16']:.3f} TFLOP/s" if gemm["bf16"] else "not native here"))
    return gemm


def roofline_table(result: dict) -> str:
    """CMC's rows against the machine: FLOPs per query (:func:`cmc_flops`), achieved TFLOP/s, fraction of the
    GEMM probe's throughput in the precision the head ran in."""
    g = result.get("gemm_tflops") or {}
    peak = g.get("bf16") if result.get("precision") == "bf16" else g.get("fp32")
    lines = [f"GEMM probe: fp32 {g.get('fp32') or float('nan'):.3f} TFLOP/s, bf16 "
             + (f"{g['bf16']:.3f} TFLOP/s" if g.get("bf16") else "not native")
             + f"; CMC head in {result.get('precision', 'fp32')}",
             "| candidates | CMC GFLOP / query | CMC ms | achieved TFLOP/s | fraction of the GEMM probe |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        frac = f"{100 * r['cmc_peak_frac']:.0f} %" if r.get("cmc_peak_frac") is not None else "n/a"
        lines.append(f"| {r['n']} | {r['cmc_gflop']:.2f} | {r['cmc_ms']:.1f} | {r['cmc_tflops']:.4f} | {frac} |")
    return "\n".join(lines)


def speed_table(result: dict) -> str:
    """The speed rows as a Markdown table with the CE / CMC ratio."""
    lines = ["| candidates | CMC ms | CE ms | CE / CMC | BE top-N ms |", "|---|---|---|---|---|"]
    for r in result["rows"]:
        ce_s = f"{r['ce_ms']:.1f}" + ("" if r["ce_measured"] else " (extrapolated)")
        lines.append(f"| {r['n']} | {r['cmc_ms']:.1f} | {ce_s} | {r['ce_over_cmc']:.1f} | {r['be_topk_ms']:.2f} |")
    return "\n".join(lines)


