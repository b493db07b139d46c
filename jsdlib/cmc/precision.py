"""Inference precision of the CMC head and the cross-encoder: exact fp32 (default), bf16 autocast, simulated bf16.

Eval mode runs each post-LN encoder layer through :func:`fused_encoder_layer` (``F.scaled_dot_product_attention``:
the same function as the stock layer with dropout off). bf16 is opt-in (``DEFAULT_PRECISION`` says why);
:func:`simulate_bf16` computes bf16 autocast's roundings in fp32, so CPUs without native bf16 can check its
ranking accuracy on whole test sets. The why of the default: ``docs/decisions.md``, "Precision".
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.common.hardware import native_bf16

PRECISIONS = ("auto", "fp32", "bf16")
# The default inference precision of the CMC head and the CE: exact fp32 (the fused path). bf16 is opt-in
# (``precision="auto"``: bf16 where the hardware has it natively) because it changes CMC's top-16 for more than
# 1 % of the WordNet test queries (measured: docs/decisions.md, "Precision";
# tests/test_cmc.py::test_wordnet_top16_bf16_vs_fp32 holds this default to it).
DEFAULT_PRECISION = "fp32"


def resolve_bf16(precision: str, device) -> bool:
    """Whether inference in ``precision`` on ``device`` runs under bf16 autocast.

    ``"fp32"``: never (exact). ``"bf16"``: always (forced; on a CPU without native bf16 autocast is emulated,
    30-50x slower than fp32, so whole-test-set accuracy checks there use :func:`simulate_bf16`). ``"auto"``: on a
    CPU only where bf16 is native (:func:`jsdlib.common.hardware.native_bf16`), on CUDA where the GPU supports bf16.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    dev = torch.device(device)
    if dev.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if dev.type == "cpu":
        return native_bf16()
    return False


def fused_encoder_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode forward of a post-LN ``nn.TransformerEncoderLayer`` (ReLU, batch-first) with fused attention.

    The same function as ``layer(x)`` with dropout off, written with ``F.scaled_dot_product_attention``
    (flash-attention kernels on CPU and GPU: the (L, L) attention matrix is never materialised)::

        [Q; K; V] = x W_in^T + b_in,   A_h = softmax(Q_h K_h^T / sqrt(d / h)) V_h
        x' = LN_1(x + [A_1 .. A_h] W_out^T + b_out)
        out = LN_2(x' + W_2 relu(W_1 x' + b_1) + b_2)
    """
    attn = layer.self_attn
    B, L, d = x.shape
    h = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(B, L, 3, h, d // h).permute(2, 0, 3, 1, 4)
    a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])          # (B, h, L, d / h), no dropout, no mask
    x = layer.norm1(x + attn.out_proj(a.transpose(1, 2).reshape(B, L, d)))
    return layer.norm2(x + layer.linear2(F.relu(layer.linear1(x))))


def _bf16(t: torch.Tensor) -> torch.Tensor:
    """Round to bfloat16 and back (8 significant bits): what a bf16 tensor holds, kept in fp32."""
    return t.to(torch.bfloat16).float()


def _simulated_bf16_layer(layer: nn.TransformerEncoderLayer, x: torch.Tensor) -> torch.Tensor:
    """:func:`fused_encoder_layer` with bf16 autocast's roundings, computed in fp32 (see :func:`simulate_bf16`)."""
    def lin(m, t):                                    # autocast linear: bf16 inputs, fp32 accumulation, bf16 out
        return _bf16(F.linear(_bf16(t), _bf16(m.weight), _bf16(m.bias)))

    attn = layer.self_attn
    B, L, d = x.shape
    h = attn.num_heads
    qkv = _bf16(F.linear(_bf16(x), _bf16(attn.in_proj_weight), _bf16(attn.in_proj_bias)))
    q, k, v = qkv.view(B, L, 3, h, d // h).permute(2, 0, 3, 1, 4)
    P = torch.softmax((q @ k.transpose(-1, -2)) / math.sqrt(d // h), dim=-1)   # fp32 softmax of bf16 Q K^T
    a = _bf16(_bf16(P) @ v)                           # the flash kernel's P is bf16 for the P V product
    x = layer.norm1(x + lin(attn.out_proj, a.transpose(1, 2).reshape(B, L, d)))
    return layer.norm2(x + lin(layer.linear2, F.relu(lin(layer.linear1, x))))


@torch.no_grad()
def simulate_bf16(head: nn.Module, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The eval-mode scores of ``head`` (a :class:`jsdlib.cmc.model.CMCHead`) as bf16 autocast computes them, at fp32 speed on any CPU.

    Every matmul's inputs and output are rounded to bf16 with fp32 accumulation (what oneDNN / cuBLAS bf16
    GEMMs do), the attention probabilities are rounded to bf16 before ``P V``, softmax, layer norms, residuals
    and the final dot products stay fp32. A CPU without native bf16 (AVX2) emulates real bf16 matmuls 30-50x
    slower than fp32, so this is how tests check bf16's ranking accuracy on whole test sets there; a test
    checks it against the real autocast path on small inputs.
    """
    X = torch.cat([q.unsqueeze(1), c], dim=1).float()
    for layer in head.layers:
        X = 0.5 * _simulated_bf16_layer(layer, X) + 0.5 * X
    return torch.einsum("bd,bkd->bk", X[:, 0], X[:, 1:])

