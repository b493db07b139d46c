"""CMC (Song et al., EMNLP 2024): compare many candidates together; its trainer, the cross-encoder baseline,
the BE / BE-CE / BE-CMC / BE-CMC-CE pipelines and their metrics (spec cmc.md).

The model (spec §2). A query vector ``q`` and K candidate vectors ``c_1..c_K`` (looked up by the retriever's
top-K ids in a catalogue encoded once) form one sequence, **without** positional, type or separator embeddings
and without a mask, so the model is permutation-equivariant over the candidates::

    X^(0) = [q; c_1; ...; c_K]                                   (B, 1+K, d)
    X^(l) = 0.5 * Layer_l(X^(l-1)) + 0.5 * X^(l-1),  l = 1, 2    Layer: post-LN transformer encoder layer
    s_k   = X^(2)_0 . X^(2)_k                                    (dot product, no temperature)

Two variants (``encoders=``): ``"frozen"`` trains only the head on precomputed vectors (the retriever's own,
since CMC's encoders start from the BE checkpoint), ``"finetuned"`` also trains CMC's own query and candidate
MiniLM encoders (initialised from the BE) and re-encodes the catalogue after training. Every result records it.

Training (spec §3): per query 64 candidates from the retriever's top-1024 -- the gold (inserted if missing),
the 31 best-ranked others and 32 drawn uniformly from the rest -- and the loss::

    L = alpha * CE(s, gold) + (1 - alpha) * KL( softmax(t / T) || softmax(s / T) ),   alpha = 0.2, T = 1

with ``t`` the retriever's scores of the same candidates (the teacher).

The cross-encoder baseline (spec §4) reads ``[CLS] query [SEP] candidate [SEP]`` through MiniLM, a linear layer
on the [CLS] output gives the score, softmax CE over the candidate list. For image candidates
(:class:`ImageCrossEncoder`) the query's MiniLM tokens and the projected image attend to each other in a small
fusion transformer (the ViLT / BLIP image-text-matching idea); on the emoji task no image CE we could train on a
CPU reranks above chance, so that table leaves the CE rows out by default (:data:`TASKS`).

Data is generic over tensors (:class:`RerankData`), so the same code serves entity linking (a bi-encoder's
:class:`jsdlib.retrieval.biencoder.Retrieval`) and text -> image (JSD retrieval over image vectors).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.common.checkpoint import open_run, save_atomic, save_state
from jsdlib.common.paths import ASSETS

CMC_WORDNET_ASSET = ASSETS / "cmc_wordnet.safetensors"
CMC_FORMAT = "jsdlib-cmc-1"
PIPELINES = ("be", "be_ce", "be_cmc", "be_cmc_ce", "cmc_final")
RECALL_KS = (1, 2, 4, 8, 16, 32, 64)


# ----------------------------------------------------------------------------------------------
# The model (spec §2)
# ----------------------------------------------------------------------------------------------
def ffn_dim(d: int) -> int:
    """Feed-forward width of a CMC layer: 2048 at d = 768, scaled with d (1024 at MiniLM's d = 384)."""
    return int(round(2048 * d / 768))


PRECISIONS = ("auto", "fp32", "bf16")
# The default inference precision of the CMC head and the CE: exact fp32 (the fused path). bf16 is opt-in
# (``precision="auto"``: bf16 where the hardware has it natively) because it does not keep CMC's top-16: on the
# WordNet test lists of the committed head (6 small test domains, 539 queries) bf16 rounding changes the top-16
# set for 2.4 % (K = 512) to 3.9 % (K = 64) of the queries (top-1: 0.2 % / 0 %), above the 1 % allowed; CMC's
# 16th and 17th scores differ by a median 2.4e-4 of the largest score, below bf16's 2^-8 resolution.
# tests/test_cmc.py::test_wordnet_top16_bf16_vs_fp32 measures it and holds this default to it.
DEFAULT_PRECISION = "fp32"


def default_device() -> str:
    """``"cuda"`` when torch sees a GPU, else ``"cpu"`` (what CMC training, the CE and the speed curve run on)."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
        from jsdlib.common.hardware import native_bf16

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
def simulate_bf16(head: "CMCHead", q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """The eval-mode scores of ``head`` as bf16 autocast computes them, at fp32 speed on any CPU.

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


class CMCHead(nn.Module):
    """The CMC head: 2 layers of ``X = 0.5 * Layer(X) + 0.5 * X`` over ``[q; c_1..c_K]``; scores ``q_out . c_out``.

    ``Layer`` is ``nn.TransformerEncoderLayer(d, 4, 2048 d / 768, dropout 0.1, ReLU, post-LN)``. No positions,
    no mask: permuting the candidates permutes the scores the same way.

    Training mode runs the layers as they are (dropout on). Eval mode runs the same layers through
    :func:`fused_encoder_layer` (fused attention, dropout off: the same function) in ``precision``: ``"fp32"``
    (exact, the default: :data:`DEFAULT_PRECISION` says why), ``"auto"`` (bf16 autocast where the hardware has
    native bf16, fp32 elsewhere) or ``"bf16"`` (forced). The final dot products are always computed in fp32.
    """

    def __init__(self, dim: int, n_layers: int = 2, n_heads: int = 4, dropout: float = 0.1,
                 precision: str = DEFAULT_PRECISION):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"CMCHead: dim {dim} is not divisible by n_heads {n_heads}")
        resolve_bf16(precision, "cpu")  # validates the name
        self.dim = dim
        self.precision = precision
        self.layers = nn.ModuleList([
            nn.TransformerEncoderLayer(dim, n_heads, dim_feedforward=ffn_dim(dim), dropout=dropout,
                                       activation="relu", batch_first=True, norm_first=False)
            for _ in range(n_layers)])

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) for query vectors ``q`` (B, d) and candidate vectors ``c`` (B, K, d)."""
        if q.dim() != 2 or c.dim() != 3 or c.shape[0] != q.shape[0] or c.shape[2] != q.shape[1]:
            raise ValueError(f"CMCHead: expects q (B, d) and c (B, K, d), got {tuple(q.shape)} and {tuple(c.shape)}")
        if q.shape[1] != self.dim:
            raise ValueError(f"CMCHead: built for d = {self.dim}, got vectors of width {q.shape[1]}")
        if c.shape[1] == 0:
            raise ValueError("CMCHead: needs at least one candidate")
        X = torch.cat([q.unsqueeze(1), c], dim=1)          # X = [q; c_1; ...; c_K], no positions
        if self.training:
            for layer in self.layers:
                X = 0.5 * layer(X) + 0.5 * X               # X = 0.5 Layer(X) + 0.5 X
        else:
            bf16 = resolve_bf16(self.precision, X.device)
            with torch.autocast(device_type=X.device.type, dtype=torch.bfloat16, enabled=bf16):
                for layer in self.layers:
                    X = 0.5 * fused_encoder_layer(layer, X) + 0.5 * X
            X = X.float()
        return torch.einsum("bd,bkd->bk", X[:, 0], X[:, 1:])   # s_k = q_out . c_k,out


def _tokenizer():
    """MiniLM's tokenizer with the ZeSHEL markers kept whole (:func:`jsdlib.retrieval.biencoder.minilm_tokenizer`)."""
    from jsdlib.retrieval.biencoder import minilm_tokenizer

    return minilm_tokenizer()


class TextEncoder(nn.Module):
    """A MiniLM (BERT-style) text encoder with [CLS] pooling: ``encode(texts) -> (N, hidden)``.

    ``model`` defaults to the pretrained all-MiniLM-L6-v2 (:func:`jsdlib.vlp.models.minilm_path`); tests pass a tiny
    random ``transformers.BertModel``.
    """

    def __init__(self, model=None, tokenizer=None, max_len: int = 64):
        super().__init__()
        from transformers import AutoModel

        from jsdlib.vlp.models import minilm_path, quiet_loading

        if model is None:
            with quiet_loading():
                model = AutoModel.from_pretrained(minilm_path())
        self.bert = model
        self.tokenizer = tokenizer if tokenizer is not None else _tokenizer()
        self.max_len = max_len

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len,
                           return_tensors="pt").to(self.bert.device)
        return self.bert(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state[:, 0]

    @torch.no_grad()
    def encode(self, texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        from tqdm.auto import tqdm

        was = self.training
        self.eval()
        out = [self(texts[s:s + batch]) for s in tqdm(range(0, len(texts), batch), disable=not progress,
                                                       desc="encode", leave=False)]
        self.train(was)
        return torch.cat(out).cpu() if out else torch.zeros(0, self.dim)


class CMC(nn.Module):
    """CMC: the head plus, for ``encoders="finetuned"``, its own query and candidate text encoders.

    ``encoders="frozen"``: ``forward(q_vec, c_vec)`` scores precomputed vectors. ``encoders="finetuned"``:
    ``query_encoder`` / ``candidate_encoder`` (:class:`TextEncoder`) turn texts into the vectors; the
    catalogue is re-encoded with :meth:`encode_catalogue` after training.
    """

    VARIANTS = ("frozen", "finetuned")

    def __init__(self, dim: int, encoders: str = "frozen", query_encoder: TextEncoder | None = None,
                 candidate_encoder: TextEncoder | None = None, dropout: float = 0.1):
        super().__init__()
        if encoders not in self.VARIANTS:
            raise ValueError(f"encoders must be one of {self.VARIANTS}, got {encoders!r}")
        if encoders == "finetuned" and (query_encoder is None or candidate_encoder is None):
            raise ValueError("encoders='finetuned' needs a query_encoder and a candidate_encoder (TextEncoder)")
        self.encoders = encoders
        self.head = CMCHead(dim, dropout=dropout)
        self.query_encoder = query_encoder if encoders == "finetuned" else None
        self.candidate_encoder = candidate_encoder if encoders == "finetuned" else None

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return self.head(q, c)

    def score_texts(self, query_texts: Sequence[str], cand_texts: Sequence[Sequence[str]]) -> torch.Tensor:
        """Scores (B, K) straight from texts (finetuned variant; gradients flow into both encoders)."""
        if self.encoders != "finetuned":
            raise ValueError("score_texts needs encoders='finetuned' (the frozen variant scores vectors)")
        B, K = len(cand_texts), len(cand_texts[0])
        q = self.query_encoder(query_texts)
        c = self.candidate_encoder([t for row in cand_texts for t in row]).view(B, K, -1)
        return self.head(q, c)

    @torch.no_grad()
    def encode_catalogue(self, cand_texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        return self.candidate_encoder.encode(cand_texts, batch, progress)

    @torch.no_grad()
    def encode_queries(self, texts: Sequence[str], batch: int = 128, progress: bool = False) -> torch.Tensor:
        return self.query_encoder.encode(texts, batch, progress)


# ----------------------------------------------------------------------------------------------
# Data: a retriever's output, generic over tensors
# ----------------------------------------------------------------------------------------------
@dataclass
class RerankData:
    """One split as a retriever left it, for CMC and the cross-encoder.

    ``query_emb`` (N, d) / ``cand_emb`` (M, d): the vectors CMC's frozen encoders give (the catalogue is
    encoded once); ``topk`` (N, K): catalogue rows ranked by the retriever, best first; ``scores`` (N, K): the
    retriever's scores of those rows (the teacher); ``gold`` (N,): the gold row (present even when it is not in
    ``topk``); ``gold_score`` (N,): the retriever's score of the gold. ``domain``: one name per query (entity
    linking: the world; per-domain accuracy). Optional texts (the CE and the finetuned variant read them) and
    ``cand_feats`` (M, f): image features for the CE of the image task. ``valid`` (N, K) bool: False where the
    retriever padded a short list (a domain with fewer than K entities; the padding comes after every real
    entry); padded entries are never sampled, scored or reranked. ``teacher_scale``: the retriever's logit scale
    (the teacher distribution is ``softmax(teacher_scale * scores / T)``; a cosine BE trained with logits
    ``20 cos`` has scale 20).
    """

    query_emb: torch.Tensor
    cand_emb: torch.Tensor
    topk: torch.Tensor
    scores: torch.Tensor
    gold: torch.Tensor
    gold_score: torch.Tensor
    domain: list = None
    query_texts: list | None = None
    cand_texts: list | None = None
    cand_feats: torch.Tensor | None = None
    name: str = ""
    valid: torch.Tensor | None = None
    teacher_scale: float = 1.0


    def __post_init__(self):
        N = self.query_emb.shape[0]
        if self.topk.dim() != 2 or self.topk.shape[0] != N or self.scores.shape != self.topk.shape:
            raise ValueError(f"RerankData: topk {tuple(self.topk.shape)} and scores {tuple(self.scores.shape)} must "
                             f"both be (N={N}, K)")
        if self.gold.shape != (N,) or self.gold_score.shape != (N,):
            raise ValueError(f"RerankData: gold and gold_score must be (N={N},), got {tuple(self.gold.shape)} "
                             f"and {tuple(self.gold_score.shape)}")
        if self.query_emb.shape[1] != self.cand_emb.shape[1]:
            raise ValueError(f"RerankData: query vectors are {self.query_emb.shape[1]}-d, candidate vectors "
                             f"{self.cand_emb.shape[1]}-d")
        M = self.cand_emb.shape[0]
        if N and (int(self.topk.max()) >= M or int(self.topk.min()) < 0 or int(self.gold.max()) >= M
                  or int(self.gold.min()) < 0):
            raise IndexError(f"RerankData: topk/gold rows must lie in [0, {M}) (the catalogue)")
        if self.domain is None:
            self.domain = ["all"] * N
        if self.valid is None:
            self.valid = torch.ones_like(self.topk, dtype=torch.bool)
        if self.valid.shape != self.topk.shape:
            raise ValueError(f"RerankData: valid {tuple(self.valid.shape)} must match topk {tuple(self.topk.shape)}")
        if len(self.domain) != N:
            raise ValueError(f"RerankData: {len(self.domain)} domain names for {N} queries")

    def __len__(self) -> int:
        return self.query_emb.shape[0]

    @property
    def k(self) -> int:
        return self.topk.shape[1]

    def subset(self, idx) -> "RerankData":
        """The queries ``idx`` (same catalogue)."""
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        pick = lambda xs: None if xs is None else [xs[i] for i in idx.tolist()]  # noqa: E731
        return dataclasses.replace(self, query_emb=self.query_emb[idx], topk=self.topk[idx], scores=self.scores[idx],
                                   gold=self.gold[idx], gold_score=self.gold_score[idx], domain=pick(self.domain),
                                   query_texts=pick(self.query_texts), valid=self.valid[idx])

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for t in (self.query_emb, self.cand_emb, self.topk, self.scores, self.gold):
            h.update(t.contiguous().numpy().tobytes()[:1 << 20])
            h.update(str(tuple(t.shape)).encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_retrieval(cls, ret, zset=None, name: str = "") -> "RerankData":
        """From :class:`jsdlib.retrieval.biencoder.Retrieval` (+ its ``ZeshelSet`` for texts and domains)."""
        q, c = ret.query_emb.float(), ret.cand_emb.float()
        gold = torch.as_tensor(ret.gold, dtype=torch.long)
        gold_score = (q * c[gold]).sum(1)
        domain = texts = cand_texts = None
        if zset is not None:
            domain = [m["corpus"] for m in zset.mentions]
            texts = [zset.query_text(i) for i in range(len(zset.mentions))]
            docs = {(d_name, d["document_id"]): d for d_name, ds in zset.documents.items() for d in ds}
            cand_texts = [zset.candidate_text(docs[(dom, cid)]) for dom, cid in zip(ret.cand_domain, ret.cand_ids)]
        valid = getattr(ret, "valid", None)
        return cls(q, c, torch.as_tensor(ret.topk, dtype=torch.long), torch.as_tensor(ret.scores).float(), gold,
                   gold_score, domain, texts, cand_texts, None, name,
                   None if valid is None else torch.as_tensor(valid, dtype=torch.bool),
                   float(getattr(ret, "scale", 1.0)))


def gold_positions(topk: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
    """0-based position of the gold in each row of ``topk``; ``K`` (= len(row)) where it is absent."""
    hit = topk == gold[:, None]
    pos = hit.float().argmax(1)
    return torch.where(hit.any(1), pos, torch.full_like(pos, topk.shape[1]))


# ----------------------------------------------------------------------------------------------
# Candidate sampling and the loss (spec §3)
# ----------------------------------------------------------------------------------------------
def sample_candidates(topk_row: torch.Tensor, gold: int, gen: torch.Generator, n_hard: int = 31,
                      n_random: int = 32, pool: int = 1024) -> torch.Tensor:
    """Training candidates of one query: ``[gold, 31 best-ranked others, 32 uniform from the rest of the pool]``.

    ``topk_row``: the retriever's ranking (catalogue rows, best first); only its first ``pool`` entries are used.
    The gold is always first (label 0; the model is permutation-equivariant, so the order is immaterial) and is
    inserted if the retriever missed it. No row appears twice. Deterministic given ``gen``.
    """
    ranked = topk_row[:pool]
    others = ranked[ranked != gold]
    if len(others) < n_hard + n_random:
        raise ValueError(f"sample_candidates: the pool has {len(others)} non-gold candidates, fewer than "
                         f"n_hard + n_random = {n_hard + n_random}")
    if len(torch.unique(others)) != len(others):
        raise ValueError("sample_candidates: the retriever's ranking contains a row twice")
    hard = others[:n_hard]
    rest = others[n_hard:]
    rand = rest[torch.randperm(len(rest), generator=gen)[:n_random]]
    return torch.cat([torch.tensor([gold], dtype=ranked.dtype), hard, rand])


def cmc_loss(scores: torch.Tensor, labels: torch.Tensor, teacher: torch.Tensor | None, alpha: float = 0.2,
             T: float = 1.0) -> tuple[torch.Tensor, dict]:
    """``alpha CE(s, y) + (1 - alpha) KL(softmax(t/T) || softmax(s/T))``, batch mean (spec §3).

    KL(p || q) = sum_k p_k (log p_k - log q_k) with p the teacher's distribution. ``teacher=None`` or
    ``alpha=1`` gives the plain CE.
    """
    if scores.shape[0] != labels.shape[0]:
        raise ValueError(f"cmc_loss: {scores.shape[0]} score rows but {labels.shape[0]} labels")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"cmc_loss: alpha must lie in [0, 1], got {alpha}")
    ce = F.cross_entropy(scores, labels)
    if teacher is None or alpha == 1.0:
        return ce, {"ce": ce.detach(), "kl": torch.zeros(())}
    if teacher.shape != scores.shape:
        raise ValueError(f"cmc_loss: teacher {tuple(teacher.shape)} and scores {tuple(scores.shape)} differ")
    log_p = F.log_softmax(teacher / T, dim=-1)
    log_q = F.log_softmax(scores / T, dim=-1)
    kl = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    loss = alpha * ce + (1.0 - alpha) * kl
    return loss, {"ce": ce.detach(), "kl": kl.detach()}


def teacher_scores(data: RerankData, q: int, cands: torch.Tensor) -> torch.Tensor:
    """The retriever's scores of ``cands`` for query ``q`` (from ``data.scores``; ``gold_score`` for an inserted gold)."""
    row = data.topk[q]
    where = {int(r): i for i, r in enumerate(row.tolist())}
    out = torch.empty(len(cands))
    for j, c in enumerate(cands.tolist()):
        if c in where:
            out[j] = data.scores[q, where[c]]
        elif c == int(data.gold[q]):
            out[j] = data.gold_score[q]
        else:
            raise KeyError(f"teacher_scores: candidate {c} of query {q} is neither in its top-K nor its gold")
    return out


# ----------------------------------------------------------------------------------------------
# Training configuration and loop
# ----------------------------------------------------------------------------------------------
@dataclass
class CMCConfig:
    """CMC training settings. Defaults are the spec's (§3); presets in :data:`PRESETS` say where they differ."""

    name: str = "spec"
    encoders: str = "frozen"
    lr: float = 1e-5
    weight_decay: float = 0.01
    eps: float = 1e-6
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    batch_size: int = 4
    epochs: int = 5
    alpha: float = 0.2
    T: float = 1.0
    n_hard: int = 31
    n_random: int = 32
    pool: int = 1024
    eval_k: int = 512               # CMC reranks the retriever's top-eval_k at validation time
    dropout: float = 0.1
    seed: int = 0
    max_train_queries: int | None = None   # a documented subset (None: all)
    max_val_queries: int | None = None     # model selection on a fixed subset of the validation queries
    eval_batch: int = 16
    device: str | None = None       # execution only (not in the digest): None = "cuda" when torch sees one, else "cpu"

    def replace(self, **kw) -> "CMCConfig":
        return dataclasses.replace(self, **kw)

    def digest(self) -> str:
        d = dataclasses.asdict(self)
        d.pop("device")
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:12]


PRESETS = {
    # spec §3 verbatim (lr 1e-5, batch 4, 5 epochs)
    "spec": CMCConfig(),
    # head only on frozen vectors, CPU budget. lr: the spec's 1e-5 won a validation sweep over {1e-5, 1e-4, 1e-3}
    # on emoji (notebooks/results/cmc_lr_sweep_emoji.json: val acc 52.0 / 51.0 / 51.7), so it stays. CMC over 512
    # candidates costs ~0.1 s per query on one free CPU thread, so model selection reranks the top-64 of 300 fixed
    # validation queries (test still reranks the top-512) and training uses a fixed subset of 2,000 queries.
    "cpu-frozen": CMCConfig(name="cpu-frozen", max_train_queries=2000, max_val_queries=300, eval_k=64),
    # the notebook's fast subset: 1,000 training queries, 3 epochs, CMC over the top-64 at validation
    "cpu-fast": CMCConfig(name="cpu-fast", epochs=3, max_train_queries=1000, eval_k=64),
}


def get_cmc_preset(name: str, **overrides) -> CMCConfig:
    if name not in PRESETS:
        raise KeyError(f"unknown CMC preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def lr_factor(step: int, total: int, warmup_frac: float = 0.1) -> float:
    """Linear warm-up over the first ``warmup_frac`` of the steps, then linear decay to 0."""
    w = max(1, int(round(warmup_frac * total)))
    if step < w:
        return (step + 1) / w
    return max(0.0, (total - step) / max(1, total - w))


def _training_queries(data: RerankData, cfg: CMCConfig) -> torch.Tensor:
    """Queries usable for training (enough candidates), capped to a seeded subset of ``max_train_queries``."""
    n = len(data)
    enough = data.valid[:, :cfg.pool].sum(1) >= cfg.n_hard + cfg.n_random + 1
    idx = torch.nonzero(enough).squeeze(1)
    if cfg.max_train_queries is not None and cfg.max_train_queries < n:
        g = torch.Generator().manual_seed(1234)  # the subset does not depend on the training seed
        idx = torch.sort(idx[torch.randperm(len(idx), generator=g)[:cfg.max_train_queries]]).values
    return idx


@torch.no_grad()
def cmc_rerank(model: CMC, data: RerankData, k: int | None = None, batch: int = 16, cand_emb=None,
               query_emb=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CMC over the retriever's top-``k`` of every query: (reranked rows (N, k), CMC scores (N, k) sorted).

    ``cand_emb`` / ``query_emb`` replace ``data``'s vectors (the finetuned variant's re-encoded catalogue).
    """
    model.eval()
    dev = next(model.parameters()).device
    k = min(k or data.k, data.k)
    C = data.cand_emb if cand_emb is None else cand_emb
    Q = data.query_emb if query_emb is None else query_emb
    rows = data.topk[:, :k].clone()
    scores = torch.full(rows.shape, -math.inf)
    n_valid = data.valid[:, :k].sum(1)
    full = torch.nonzero(n_valid == k).squeeze(1)
    for s in range(0, len(full), batch):
        qs = full[s:s + batch]
        top = data.topk[qs, :k]
        sc = model(Q[qs].float().to(dev), C[top].float().to(dev)).cpu()
        o = torch.argsort(sc, dim=1, descending=True, stable=True)
        rows[qs], scores[qs] = torch.gather(top, 1, o), torch.gather(sc, 1, o)
    for q in torch.nonzero(n_valid < k).squeeze(1).tolist():  # short lists: only the real entries, padding last
        nv = int(n_valid[q])
        top = data.topk[q, :nv]
        sc = model(Q[q:q + 1].float().to(dev), C[top][None].float().to(dev))[0].cpu()
        o = torch.argsort(sc, descending=True, stable=True)
        rows[q, :nv], scores[q, :nv] = top[o], sc[o]
    return rows, scores


def top1_accuracy(ranked: torch.Tensor, gold: torch.Tensor) -> float:
    return float(100.0 * (ranked[:, 0] == gold).float().mean())


def train_cmc(train: RerankData, val: RerankData, cfg: CMCConfig, run_dir=None, resume: bool = True,
              progress: bool = True, stop_after_epoch: int | None = None, log=print, model: CMC | None = None) -> dict:
    """Train CMC (spec §3) and keep the epoch with the best validation accuracy (CMC over val top-``eval_k``).

    Frozen variant: the head on ``train.query_emb`` / ``cand_emb``. Finetuned variant: pass ``model`` (a
    :class:`CMC` with encoders); vectors are re-encoded from ``query_texts`` / ``cand_texts`` in every step
    and the catalogue is re-encoded for validation. ``run_dir``: ``last.pt`` each epoch and ``best.pt``; a
    killed run resumes bit for bit (generator, torch RNG for dropout, optimiser, scheduler).
    Returns ``{"model", "history", "best", "variant", ...}``.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    device = torch.device(cfg.device or default_device())
    if model is None:
        if cfg.encoders != "frozen":
            raise ValueError("train_cmc: the finetuned variant needs model=CMC(dim, 'finetuned', encoders...)")
        model = CMC(train.query_emb.shape[1], "frozen", dropout=cfg.dropout)
    if model.encoders != cfg.encoders:
        raise ValueError(f"train_cmc: cfg.encoders={cfg.encoders!r} but the model is {model.encoders!r}")
    finetuned = model.encoders == "finetuned"
    if finetuned and (train.query_texts is None or train.cand_texts is None or val.query_texts is None):
        raise ValueError("train_cmc: the finetuned variant needs query_texts and cand_texts in the data")
    qidx = _training_queries(train, cfg)
    val = eval_subset(val, cfg.max_val_queries)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    spe = math.ceil(len(qidx) / cfg.batch_size)
    total = cfg.epochs * spe
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg.warmup_frac))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "history": [], "best": None, "step": 0}
    ident = f"cmc:{cfg.digest()}:{train.fingerprint()}:{val.fingerprint()}"
    run_dir, state, extra, best_state = open_run(run_dir, ident, model, opt, sched, gen, state, resume, "cmc", log)
    if "torch_rng" in extra:
        torch.set_rng_state(extra["torch_rng"])
    if "cuda_rng" in extra and device.type == "cuda":
        torch.cuda.set_rng_state(extra["cuda_rng"], device)

    Q, C = train.query_emb.float().to(device), train.cand_emb.float().to(device)
    t0 = time.time()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        te = time.time()
        model.train()
        order = qidx[torch.randperm(len(qidx), generator=gen)]
        sums = {"loss": 0.0, "ce": 0.0, "kl": 0.0}
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"cmc epoch {epoch}/{cfg.epochs}",
                   disable=not progress, leave=False)
        for s in bar:
            qs = order[s:s + cfg.batch_size].tolist()
            cands = torch.stack([sample_candidates(train.topk[q][train.valid[q]], int(train.gold[q]), gen, cfg.n_hard,
                                                   cfg.n_random, cfg.pool) for q in qs])
            teacher = train.teacher_scale * torch.stack([teacher_scores(train, q, c) for q, c in zip(qs, cands)])
            teacher = teacher.to(device)
            if finetuned:
                sc = model.score_texts([train.query_texts[q] for q in qs],
                                       [[train.cand_texts[c] for c in row] for row in cands.tolist()])
            else:
                sc = model(Q[qs], C[cands.to(device)])
            loss, parts = cmc_loss(sc, torch.zeros(len(qs), dtype=torch.long, device=device), teacher, cfg.alpha,
                                   cfg.T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            state["step"] += 1
            sums["loss"] += float(loss.detach())
            sums["ce"] += float(parts["ce"])
            sums["kl"] += float(parts["kl"])
            bar.set_postfix(loss=f"{loss.item():.3f}")
        n_b = max(1, spe)
        val_acc = evaluate_cmc(model, val, cfg.eval_k, cfg.eval_batch)
        row = {"epoch": epoch, **{k: v / n_b for k, v in sums.items()}, "val_acc": val_acc,
               "epoch_s": round(time.time() - te, 3)}
        state["history"].append(row)
        if state["best"] is None or val_acc > state["best"]["val_acc"]:
            state["best"] = row
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            if run_dir is not None:
                save_atomic(best_state, run_dir / "best.pt")
        state["epoch"] = epoch
        (log if progress else (lambda *a: None))(
            f"cmc epoch {epoch}  loss {row['loss']:.4f}  val acc {val_acc:.2f}  {row['epoch_s']:.1f}s")
        if run_dir is not None:
            rng = {"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}
            save_state(run_dir / "last.pt", ident, model, opt, sched, gen, state, torch_rng=torch.get_rng_state(),
                       **rng)
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs:
            return {"model": model, "stopped_at": epoch, "variant": model.encoders, **state}
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return {"model": model, "variant": model.encoders, "train_time_s": time.time() - t0,
            "n_train_queries": int(len(qidx)), "config": dataclasses.asdict(cfg), **state}


def catalogue_vectors(model: CMC, data: RerankData, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(query vectors, candidate vectors) CMC sees for ``data``: precomputed (frozen) or re-encoded (finetuned)."""
    if model.encoders == "frozen":
        return data.query_emb, data.cand_emb
    return model.encode_queries(data.query_texts, progress=progress), model.encode_catalogue(data.cand_texts,
                                                                                            progress=progress)


@torch.no_grad()
def evaluate_cmc(model: CMC, data: RerankData, k: int = 512, batch: int = 16) -> float:
    """Top-1 accuracy (%) of CMC reranking each query's top-``k`` (all queries in the denominator)."""
    q, c = catalogue_vectors(model, data)
    ranked, _ = cmc_rerank(model, data, k, batch, cand_emb=c, query_emb=q)
    return top1_accuracy(ranked, data.gold)


# ----------------------------------------------------------------------------------------------
# Checkpoints (safetensors, float16 by default): the committed WordNet head
# ----------------------------------------------------------------------------------------------
def save_cmc(model: CMC, path, meta: dict | None = None, half: bool = True) -> Path:
    """Write a frozen-variant CMC head to ``path`` (safetensors, atomic; float16 unless ``half=False``)."""
    from jsdlib.common.integrity import save_safetensors

    if model.encoders != "frozen":
        raise ValueError("save_cmc stores the head of the frozen variant; save a finetuned model with torch.save")
    dt = torch.float16 if half else torch.float32
    sd = {k: v.detach().to(dt).contiguous().cpu() for k, v in model.head.state_dict().items()}
    info = {"format": CMC_FORMAT, "dim": model.head.dim, "n_layers": len(model.head.layers), "meta": meta or {}}
    return save_safetensors(sd, Path(path), {"jsdlib": json.dumps(info)})


def load_cmc(path) -> tuple[CMC, dict]:
    """``(model, meta)`` from :func:`save_cmc` (eval mode, float32; content digest and finite weights checked)."""
    from jsdlib.common.integrity import load_safetensors

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no CMC checkpoint at {path}")
    sd, header = load_safetensors(path, "CMC checkpoint")
    raw = header.get("jsdlib")
    info = json.loads(raw) if raw else {}
    if info.get("format") != CMC_FORMAT:
        raise ValueError(f"{path} is not a jsdlib CMC checkpoint (format {info.get('format')!r})")
    model = CMC(info["dim"], "frozen")
    model.head.load_state_dict({k: v.float() for k, v in sd.items()})
    return model.eval(), info.get("meta", {})


def load_bundled(path=None) -> tuple[CMC, dict]:
    """The committed frozen-encoder CMC head for the WordNet task (``jsdlib/assets/cmc_wordnet.safetensors``)."""
    return load_cmc(CMC_WORDNET_ASSET if path is None else path)


# ----------------------------------------------------------------------------------------------
# The cross-encoder baseline (spec §4)
# ----------------------------------------------------------------------------------------------
class CrossEncoder(nn.Module):
    """``[CLS] query [SEP] candidate [SEP]`` -> MiniLM -> linear on the [CLS] output -> one score per pair.

    Pooling: the last-layer [CLS] hidden state, not BERT's ``pooler`` (dense + tanh): all-MiniLM-L6-v2 is a
    mean-pooling sentence-embedding model whose pooler weights its training never used. The [CLS] state is
    fine-tuned together with the head (``train_ce``); the query/candidate markers ``[unused0..2]`` stay whole
    tokens (:func:`jsdlib.retrieval.biencoder.minilm_tokenizer`) and the pair gets token types 0 / 1. ``bert`` /
    ``tokenizer`` default to the pretrained MiniLM (tests pass a tiny random BERT). Image candidates: see
    :class:`ImageCrossEncoder`.
    """

    def __init__(self, bert=None, tokenizer=None, max_len: int = 64, precision: str = DEFAULT_PRECISION):
        super().__init__()
        resolve_bf16(precision, "cpu")  # validates the name
        self.bert = bert if bert is not None else _pretrained_minilm()
        self.tokenizer = tokenizer if tokenizer is not None else _tokenizer()
        self.max_len = max_len
        self.precision = precision
        self.score = nn.Linear(self.bert.config.hidden_size, 1)

    def pair_scores(self, queries: Sequence[str], candidates: Sequence[str]) -> torch.Tensor:
        """Scores (P,) of P pairs: ``queries[p]`` with the text ``candidates[p]``.

        In eval mode MiniLM runs under bf16 autocast where ``precision`` resolves to bf16 (:func:`resolve_bf16`:
        ``"auto"`` = native bf16 hardware only; default fp32, as for CMC, so speed ratios compare like with like);
        the linear score head always runs in fp32. Training: fp32.
        """
        dev = self.score.weight.device
        t = self.tokenizer(list(queries), list(candidates), padding=True, truncation="longest_first",
                           max_length=self.max_len, return_tensors="pt").to(dev)
        bf16 = not self.training and resolve_bf16(self.precision, dev)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=bf16):
            out = self.bert(input_ids=t["input_ids"], attention_mask=t["attention_mask"],
                            token_type_ids=t.get("token_type_ids"))
        return self.score(out.last_hidden_state[:, 0].float()).squeeze(-1)

    def rerank_scores(self, data: RerankData, q: int, rows: torch.Tensor) -> torch.Tensor:
        """Scores of catalogue ``rows`` for query ``q`` of ``data``."""
        if data.query_texts is None or data.cand_texts is None:
            raise ValueError("CrossEncoder: the data needs query_texts and cand_texts (image candidates: "
                             "ImageCrossEncoder)")
        return self.pair_scores([data.query_texts[q]] * len(rows), [data.cand_texts[r] for r in rows.tolist()])


def _pretrained_minilm():
    from transformers import AutoModel

    from jsdlib.vlp.models import minilm_path, quiet_loading

    with quiet_loading():
        return AutoModel.from_pretrained(minilm_path())


class ImageCrossEncoder(nn.Module):
    """The cross-encoder of the text -> image task: query tokens and the image attend to each other jointly.

    An image is not text, so MiniLM cannot read it as a pair. This is the early-fusion reranker of
    vision-language models (ViLT; BLIP's image-text matching head), built on the course's own encoders::

        T = MiniLM(query) W_t + e_text          (L, d)   frozen pretrained MiniLM token states, projected
        v = h_i W_v + e_image                   (1, d)   the image's pre-projection VLP feature h_i, projected
        X = Fusion([CLS; v; T])                          ``layers`` post-LN transformer layers, full attention
        s = w . X_0 + b                                   one score per (query, image) pair

    Unlike CMC (one query vector and K candidate vectors in one sequence), every pair is its own sequence in
    which each query token can attend to the image: the query is re-read for every candidate, which is what
    makes a cross-encoder expensive. MiniLM stays frozen (its token states of a query are computed once and
    cached); the projections, the type embeddings, [CLS] and the fusion layers are trained by :func:`train_ce`.

    An earlier version fed the projected image as one extra input embedding of a fine-tuned MiniLM
    (``[CLS] <image> query [SEP]``): in the CPU budget (500 queries) its loss stayed at chance (2.77 = ln 16)
    and it reranked the top-16 to R@1 3-4 %; so did a text CE reading the image's top JSD terms.
    """

    def __init__(self, cand_dim: int, dim: int = 256, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 bert=None, tokenizer=None, max_len: int = 32):
        super().__init__()
        self.bert = bert if bert is not None else _pretrained_minilm()
        self.bert.requires_grad_(False)
        self.tokenizer = tokenizer if tokenizer is not None else _tokenizer()
        self.max_len = max_len
        self.text_in = nn.Linear(self.bert.config.hidden_size, dim)
        self.image_in = nn.Linear(cand_dim, dim)
        self.types = nn.Parameter(torch.randn(2, dim) * 0.02)
        self.cls = nn.Parameter(torch.randn(dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, ffn_dim(dim), dropout, batch_first=True)
        self.fusion = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.score = nn.Linear(dim, 1)
        self._tokens: dict[str, torch.Tensor] = {}

    def train(self, mode: bool = True):
        super().train(mode)
        self.bert.eval()  # frozen: no dropout in the token states, whatever the mode
        return self

    @torch.no_grad()
    def query_tokens(self, text: str) -> torch.Tensor:
        """MiniLM's last-layer token states (L, 384) of one query (cached)."""
        if text not in self._tokens:
            t = self.tokenizer([text], truncation=True, max_length=self.max_len,
                               return_tensors="pt").to(self.bert.device)
            self._tokens[text] = self.bert(**t).last_hidden_state[0]
        return self._tokens[text]

    def pair_scores(self, queries: Sequence[str], candidates) -> torch.Tensor:
        """Scores (P,) of P pairs: ``queries[p]`` with the image feature ``candidates[p]`` ((P, cand_dim))."""
        toks = [self.query_tokens(q) for q in queries]
        L = max(len(t) for t in toks)
        dev = self.score.weight.device
        T = torch.zeros(len(toks), L, toks[0].shape[1], device=dev)
        pad = torch.ones(len(toks), 2 + L, dtype=torch.bool, device=dev)
        pad[:, :2] = False
        for p, t in enumerate(toks):
            T[p, :len(t)] = t
            pad[p, 2:2 + len(t)] = False
        v = self.image_in(torch.as_tensor(candidates).float().to(dev)) + self.types[1]
        x = torch.cat([self.cls.expand(len(toks), 1, -1), v[:, None], self.text_in(T) + self.types[0]], 1)
        return self.score(self.fusion(x, src_key_padding_mask=pad)[:, 0]).squeeze(-1)

    def rerank_scores(self, data: RerankData, q: int, rows: torch.Tensor) -> torch.Tensor:
        if data.query_texts is None or data.cand_feats is None:
            raise ValueError("ImageCrossEncoder: the data needs query_texts and cand_feats")
        return self.pair_scores([data.query_texts[q]] * len(rows), data.cand_feats[rows])


@dataclass
class CEConfig:
    """Cross-encoder training (spec §4) on a seeded subset of training queries (it is the expensive model on a CPU).

    One step = one query and its ``n_candidates`` pairs: the gold plus the ``n_candidates - 1`` best-ranked
    others of the retriever (hard negatives), scored ``s_1..s_n`` by the CE, and the loss::

        CE = -log softmax(s)_gold   over the candidate list

    AdamW, ``warmup_frac`` linear warm-up then linear decay to 0, gradient clip, dropout on (train mode); the
    whole MiniLM and the linear head are trained.

    Defaults (chosen on WordNet *validation* queries only, never test). The earlier setting -- lr 2e-5, 128
    queries, 1 epoch -- left the training loss at ln 16 = 2.77 (chance) and the CE below the BE it reranks:
    128 single-query steps, 13 of them warm-up, at lr <= 2e-5 barely move MiniLM, whose [CLS] outputs for the
    16 pairs of one query start nearly identical (cosine ~0.95; initial score spread ~0.04 with the default
    ``nn.Linear`` head init). The gradients do reach every MiniLM layer; the step budget was the problem.
    Probe (seed 0, [CLS] pooling as here): lr 1e-4 on 200 WordNet train queries took the loss from 2.78
    (first 10 % of steps) to 1.24 (last 10 %), and reranking the BE top-16 of 150 val queries gave R@1 49.3
    vs the BE's 28.7 (random order: 4.3). ``max_train_queries`` 500 keeps training near 4 minutes on the idle
    2-core CPU (~0.4 s per query of 16 pairs; 2-6 s when other jobs load it). ``max_len`` 64 covers WordNet
    pairs (query + gloss, ~50 tokens at the 99th percentile).
    """

    lr: float = 1e-4
    weight_decay: float = 0.01
    eps: float = 1e-6
    warmup_frac: float = 0.1
    grad_clip: float = 1.0
    epochs: int = 1
    n_candidates: int = 16          # gold + the 15 best-ranked others (hard negatives)
    max_train_queries: int = 500
    max_len: int = 64
    seed: int = 0
    device: str | None = None       # execution only: None = "cuda" when torch sees one, else "cpu"

    def replace(self, **kw) -> "CEConfig":
        return dataclasses.replace(self, **kw)


def train_ce(train: RerankData, cfg: CEConfig, ce: CrossEncoder | None = None, progress: bool = True,
             log=print) -> dict:
    """Train the CE with ``CE = -log softmax(s)_gold`` over ``[gold, n_candidates - 1 best-ranked others]``.

    Seeded (query subset, their order, head init, dropout), so a run is reproducible on one machine. Returns
    ``{"model", "train_time_s", "n_train_queries", "losses" (one per step), "loss_first", "loss_last"
    (mean of the first / last 10 % of the steps), "config"}``.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(cfg.seed)
    if ce is None:
        ce = (CrossEncoder(max_len=cfg.max_len) if train.cand_feats is None
              else ImageCrossEncoder(train.cand_feats.shape[1], max_len=cfg.max_len))
    device = torch.device(cfg.device or default_device())
    ce.to(device)
    g = torch.Generator().manual_seed(cfg.seed)
    qidx = torch.randperm(len(train), generator=g)[:cfg.max_train_queries].tolist()
    params = [p for p in ce.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    total = cfg.epochs * len(qidx)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, cfg.warmup_frac))
    ce.train()
    t0 = time.time()
    losses = []
    for epoch in range(cfg.epochs):
        order = [qidx[i] for i in torch.randperm(len(qidx), generator=g).tolist()]
        for q in tqdm(order, desc=f"ce epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False):
            row = train.topk[q][train.valid[q]]
            others = row[row != train.gold[q]][:cfg.n_candidates - 1]
            cands = torch.cat([train.gold[q:q + 1], others])
            sc = ce.rerank_scores(train, q, cands)
            loss = F.cross_entropy(sc[None], torch.zeros(1, dtype=torch.long, device=device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
    ce.eval()
    n10 = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:n10])), float(np.mean(losses[-n10:]))
    log(f"ce: {len(qidx)} queries x {cfg.epochs} epoch(s), mean loss first/last 10%: {first:.3f} / {last:.3f} "
        f"(chance ln {cfg.n_candidates} = {math.log(cfg.n_candidates):.3f})")
    return {"model": ce, "train_time_s": time.time() - t0, "n_train_queries": len(qidx), "losses": losses,
            "loss_first": first, "loss_last": last, "config": dataclasses.asdict(cfg)}


class PairCache:
    """CE scores of (query, catalogue row) pairs already computed, and the measured cost per scored pair.

    The CE's score of a pair does not depend on the list it sits in, so BE-CE and BE-CMC-CE (whose top-16
    lists overlap) and several CMC seeds share one CE pass per distinct pair. Time per query of a CE stage is
    reported as ``ms_per_pair * pairs the stage scores``: the cost of a cold run.
    """

    def __init__(self):
        self.scores: dict[tuple[int, int], float] = {}
        self.pairs = 0
        self.secs = 0.0

    @property
    def ms_per_pair(self) -> float:
        return 1000.0 * self.secs / max(1, self.pairs)


@torch.no_grad()
def ce_rerank(ce: CrossEncoder, data: RerankData, ranked: torch.Tensor, k: int,
              cache: PairCache | None = None) -> tuple[torch.Tensor, int]:
    """The CE reorders the first ``k`` of every row of ``ranked``; the rest keeps its order.

    Returns (new ranking, number of pairs the stage scores). ``cache`` reuses scores of pairs seen before.
    """
    ce.eval()
    cache = cache if cache is not None else PairCache()
    out = ranked.clone()
    n_valid = data.valid.sum(1)
    n_pairs = 0
    for q in range(len(data)):
        kk = min(k, int(n_valid[q]))  # padded entries (short domains) are never reranked
        head = ranked[q, :kk]
        n_pairs += kk
        todo = [r for r in head.tolist() if (q, r) not in cache.scores]
        if todo:
            t = time.perf_counter()
            sc = ce.rerank_scores(data, q, torch.tensor(todo))
            cache.secs += time.perf_counter() - t
            cache.pairs += len(todo)
            cache.scores.update({(q, r): float(v) for r, v in zip(todo, sc.cpu().tolist())})
        sc = torch.tensor([cache.scores[(q, r)] for r in head.tolist()])
        out[q, :kk] = head[torch.argsort(sc, descending=True, stable=True)]
    return out, n_pairs


# ----------------------------------------------------------------------------------------------
# Pipelines and their metrics (spec §1, §5)
# ----------------------------------------------------------------------------------------------
def ranking_metrics(ranked: torch.Tensor, gold: torch.Tensor, n_reranked: int, domains: Sequence[str]) -> dict:
    """R@{1..64}, MRR@10 and unnormalized / normalized accuracy per domain + macro + micro of one ranking.

    ``n_reranked``: how many candidates the final stage saw (the normalized accuracy's denominator counts the
    queries whose gold is among them).
    """
    from jsdlib.common.metrics import linking_accuracy, list_ranks, mrr_at_k, recall_at_k

    r = list_ranks(ranked, gold)
    out = {f"R@{k}": recall_at_k(r, k) for k in RECALL_KS}
    out["MRR@10"] = mrr_at_k(r, 10)
    acc = linking_accuracy(r, n_reranked, domains)
    out["acc_unnorm"] = acc["macro"]["acc_unnorm"]
    out["acc_norm"] = acc["macro"]["acc_norm"]
    out["acc_unnorm_micro"] = acc["micro"]["acc_unnorm"]
    out["acc_norm_micro"] = acc["micro"]["acc_norm"]
    out["per_domain"] = acc["per_domain"]
    return out


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def run_pipelines(data: RerankData, cmc: CMC | None, ce: CrossEncoder | None, k: int = 512, k_ce: int = 16,
                  names: Sequence[str] = PIPELINES, progress: bool = False, ce_cache: PairCache | None = None) -> dict:
    """Every pipeline of spec §1 on ``data`` (test queries with the retriever's top-K), with metrics and ms/query.

    - ``be``: the retriever's own ranking (top-``k``).
    - ``be_cmc``: CMC reranks the top-``k`` (the "virtually enhanced retriever"; read R@16 / R@64 against ``be``).
    - ``be_ce``: the CE reranks the retriever's top-``k_ce``; the rest keeps the retriever's order.
    - ``be_cmc_ce``: the CE reranks CMC's top-``k_ce`` (out of the top-``k``).
    - ``cmc_final``: CMC reranks the retriever's top-``k_ce`` (the same lists the CE sees in ``be_ce``): CMC as
      the final reranker, compared with the CE on accuracy and time.

    ms/query: the time of the retrieval (dense top-``k`` over the catalogue from the query vectors) and of each
    reranking stage over all queries divided by their number, on this CPU; a CE stage counts
    ``ms per scored pair x pairs it scores`` (:class:`PairCache`); query encoding is not included (it is the
    same for every pipeline; ``benchmarks/cmc_speed.py`` measures it).
    """
    from jsdlib.common.metrics import list_ranks

    n = len(data)
    k = min(k, data.k)
    if k_ce > k:
        raise ValueError(f"k_ce ({k_ce}) must not exceed k ({k})")
    need_ce = any(x in names for x in ("be_ce", "be_cmc_ce"))
    if need_ce and ce is None:
        raise ValueError("run_pipelines: be_ce / be_cmc_ce need a cross-encoder")
    if any(x in names for x in ("be_cmc", "be_cmc_ce", "cmc_final")) and cmc is None:
        raise ValueError("run_pipelines: the CMC pipelines need a CMC model")
    unknown = set(names) - set(PIPELINES)
    if unknown:
        raise ValueError(f"unknown pipelines {sorted(unknown)}; known: {PIPELINES}")

    def retrieve():  # exact dense top-k (what the BE costs per query; the ranking itself comes from data.topk)
        return torch.topk(data.query_emb.float() @ data.cand_emb.float().T, min(k, data.cand_emb.shape[0]), dim=1)

    _, t_be = _timed(retrieve)
    be = data.topk[:, :k]
    out, secs = {}, {"be": t_be}
    if cmc is not None:
        qv, cv = catalogue_vectors(cmc, data)
        (cmc_rows, _), secs["cmc"] = _timed(lambda: cmc_rerank(cmc, data, k, cand_emb=cv, query_emb=qv))
        if "cmc_final" in names:
            (cmc16, _), secs["cmc16"] = _timed(lambda: cmc_rerank(cmc, data, k_ce, cand_emb=cv, query_emb=qv))
    cache = ce_cache if ce_cache is not None else PairCache()
    if "be_ce" in names:
        be_ce, n_pairs = ce_rerank(ce, data, be, k_ce, cache)
        secs["ce_be"] = cache.ms_per_pair * n_pairs / 1000.0
    if "be_cmc_ce" in names:
        be_cmc_ce, n_pairs = ce_rerank(ce, data, cmc_rows, k_ce, cache)
        secs["ce_cmc"] = cache.ms_per_pair * n_pairs / 1000.0
    plan = {"be": (lambda: be, k, ["be"]),
            "be_cmc": (lambda: cmc_rows, k, ["be", "cmc"]),
            "be_ce": (lambda: be_ce, k_ce, ["be", "ce_be"]),
            "be_cmc_ce": (lambda: be_cmc_ce, k_ce, ["be", "cmc", "ce_cmc"]),
            "cmc_final": (lambda: torch.cat([cmc16, be[:, k_ce:]], 1), k_ce, ["be", "cmc16"])}
    for name in names:
        get, n_re, stages = plan[name]
        ranked = get()
        m = ranking_metrics(ranked, data.gold, n_re, data.domain)
        m["ranks"] = list_ranks(ranked, data.gold).tolist()   # per query, 0-based (for paired tests)
        m["ms_per_query"] = 1000.0 * sum(secs[s] for s in stages) / n
        m["n_reranked"] = n_re
        out[name] = m
    return out


def _mean_std(v) -> dict:
    v = np.asarray(v, dtype=np.float64)
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0}


SUMMARY_KEYS = ("R@1", "R@2", "R@4", "R@8", "R@16", "R@32", "R@64", "MRR@10", "acc_unnorm", "acc_norm",
                "acc_unnorm_micro", "acc_norm_micro", "ms_per_query")


def aggregate_pipelines(per_seed: Sequence[dict]) -> dict:
    """Per-seed ``run_pipelines`` outputs -> ``{NAME: {metric: {"mean", "std"}, "per_domain": ...}}``."""
    out = {}
    for name in per_seed[0]:
        runs = [r[name] for r in per_seed]
        row = {k: _mean_std([r[k] for r in runs]) for k in SUMMARY_KEYS}
        row["n_reranked"] = runs[0]["n_reranked"]
        row["per_domain"] = {d: {k: _mean_std([r["per_domain"][d][k] for r in runs]) for k in ("acc_unnorm", "acc_norm")}
                             | {"n": runs[0]["per_domain"][d]["n"]} for d in runs[0]["per_domain"]}
        out[name] = row
    return out


# (test name, pipeline a, pipeline b, k): "gold within the top k" per query, a vs b
PIPELINE_TESTS = (("be_cmc_vs_be_R@16", "be_cmc", "be", 16), ("be_cmc_vs_be_R@64", "be_cmc", "be", 64),
                  ("be_cmc_ce_vs_be_ce_R@1", "be_cmc_ce", "be_ce", 1), ("be_ce_vs_be_R@1", "be_ce", "be", 1),
                  ("cmc_final_vs_be_ce_R@1", "cmc_final", "be_ce", 1))


def pipeline_tests(per_seed: Sequence[dict]) -> dict:
    """Paired t-tests between pipelines on the per-query hit ``[rank < k]``, pooled over seeds (each seed's test
    queries are the same, so query q of seed s is paired with query q of seed s):
    ``{name: {"a", "b", "k", "mean_a", "mean_b", "diff", "p", "n"}}`` (means in %)."""
    from jsdlib.common.metrics import paired_test

    out = {}
    for name, a, b, k in PIPELINE_TESTS:
        if not all(a in r and b in r and "ranks" in r[a] for r in per_seed):
            continue
        ha = np.concatenate([np.asarray(r[a]["ranks"]) < k for r in per_seed]).astype(float)
        hb = np.concatenate([np.asarray(r[b]["ranks"]) < k for r in per_seed]).astype(float)
        out[name] = {"a": a, "b": b, "k": k, "mean_a": 100 * float(ha.mean()), "mean_b": 100 * float(hb.mean()),
                     "diff": 100 * float((ha - hb).mean()), "p": paired_test(ha, hb), "n": int(len(ha))}
    return out


def summary_table(result: dict, keys=("R@1", "R@16", "R@64", "MRR@10", "acc_unnorm", "acc_norm", "ms_per_query"),
                  digits: int = 1) -> dict:
    """``{pipeline: {"R@1": "57.6 ± 0.3", ...}}`` for :func:`jsdlib.common.metrics.format_table`."""
    rows = {}
    for n, m in result["pipelines"].items():
        rows[n] = {k: f"{m[k]['mean']:.{digits}f} ± {m[k]['std']:.{digits}f}" for k in keys}
    return rows


# ----------------------------------------------------------------------------------------------
# Tasks: WordNet entity linking (helper A's bi-encoder) and emoji text -> image (bundled JSD)
# ----------------------------------------------------------------------------------------------
def emoji_task(split: str, k: int = 1024, score: str = "integrated", jsd=None, meta: dict | None = None,
               progress: bool = False) -> RerankData:
    """Text -> image over one emoji split: JSD retrieval (``score``: sparse / dense / integrated) -> RerankData.

    CMC's vectors are the JSD **dense** vectors ``d_t`` (captions) and ``d_i`` (images), 256-d and normalised:
    the retriever's own embedding space (as CMC's encoders start from the BE checkpoint). The CE reads the
    caption text and the image's pre-projection feature ``h_i``. Catalogue = the split's images.
    """
    from jsdlib.jsd.io import load_jsd
    from jsdlib.data.datasets import load_emoji
    from jsdlib.jsd.core import encode, score_matrices
    from jsdlib.jsd.presets import get_preset
    from jsdlib.vlp.models import cached_features, load_standin

    if jsd is None:
        jsd, meta = load_jsd()
    cfg = get_preset((meta or {}).get("preset", "cpu-emoji"))
    sp = load_emoji(split)
    feats = cached_features(load_standin(), sp, progress=progress)
    enc = encode(jsd, feats)
    S = score_matrices(enc, float(jsd.tau.detach()), cfg.w1, cfg.w2)[score]
    k = min(k, S.shape[1])
    sc, top = torch.sort(S, dim=1, descending=True, stable=True)
    gold = torch.as_tensor(np.asarray(feats.caption_to_image), dtype=torch.long)
    return RerankData(enc["D_t"], enc["D_i"], top[:, :k].contiguous(), sc[:, :k].contiguous(), gold,
                      S[torch.arange(len(gold)), gold], ["emoji"] * len(gold), list(sp.captions), None,
                      feats.image.float(), name=f"emoji-{split}-{score}")


WORDNET_TRAIN_MAX_ENTITIES = 4000   # CMC trains on the train domains with at most this many entities (CPU budget)
WORDNET_VAL_MAX_ENTITIES = 1000     # model selection on the small val domains (the BE's own choice)


def wordnet_domains(split: str, max_entities: int | None) -> list[str] | None:
    """The ``split`` domains of the WordNet set with at most ``max_entities`` entities (None: all domains).

    Train (<= 4,000): 12 of the 16 train domains, 17,235 entities, 6,018 mentions (adj.all, noun.artifact,
    noun.animal and noun.plant are left out: encoding their 41,561 entities would take most of an hour here).
    Val (<= 1,000): the 7 val domains the bi-encoder also selects on (3,023 entities, 1,020 mentions).
    """
    from jsdlib.data.datasets import wordnet_dir

    if max_entities is None:
        return None
    meta = json.loads((wordnet_dir() / "build.json").read_text(encoding="utf-8"))
    return sorted(d for d, v in meta["domains"].items()
                  if v["split"] == split and v["mentions"] and v["entities"] <= max_entities)


def wordnet_task(split: str, be_kind: str = "asis", k: int = 1024, domains="default",
                 max_mentions: int | None = None, progress: bool = False) -> RerankData:
    """WordNet sense linking (the ZeSHEL-format set) with the MiniLM bi-encoder's top-``k`` per mention.

    ``domains="default"``: train and val use the documented subsets of :func:`wordnet_domains`, test uses all
    15 test domains. CMC's frozen vectors are the BE's (mean-pooled, unit-norm) query and candidate vectors;
    the teacher is ``softmax(20 * cos)``, the BE's own training logits.
    """
    from jsdlib.retrieval.biencoder import load_biencoder, retrieve
    from jsdlib.data.datasets import load_zeshel, wordnet_dir

    if domains == "default":
        domains = {"train": wordnet_domains("train", WORDNET_TRAIN_MAX_ENTITIES),
                   "val": wordnet_domains("val", WORDNET_VAL_MAX_ENTITIES)}.get(split)
    zset = load_zeshel(wordnet_dir(), split, domains=domains, max_mentions=max_mentions)
    be = load_biencoder(be_kind, train_if_missing=False) if be_kind == "finetuned" else load_biencoder(be_kind)
    ret = retrieve(be, zset, k=k, progress=progress)
    return RerankData.from_retrieval(ret, zset, name=f"wordnet-{split}-be_{be_kind}")


TASKS = {
    # eval subsets: the CE costs ~k_ce MiniLM passes per query, so test metrics use the first n_eval queries
    # of a seeded permutation (the same queries for every pipeline and seed)
    "wordnet": {"k": 512, "k_ce": 16, "n_eval": 300, "ce": CEConfig(max_len=64)},
    # emoji: no cross-encoder pipelines by default. No image CE we could train in the CPU budget learns to read
    # the images (validation R@1 of the JSD top-16 reranked, 300 val captions; the retriever's own: 50.3):
    #   - MiniLM fine-tuned with the image as one projected input embedding, lr 1e-4, 500 queries: loss stays
    #     at ln 16, R@1 3-4;
    #   - the same text CE reading each image's top-12 JSD terms as text, 500 queries: R@1 4.7;
    #   - ImageCrossEncoder (joint attention over frozen MiniLM tokens and the image), lr 1e-3, 2,000
    #     queries: R@1 6.7; lr 3e-4, all 5,270 queries x 3 epochs (16 min): loss 2.76 -> 2.62, R@1 7.7.
    # Chance is 6.25. A CE reranking at chance is no baseline, so the emoji table has BE, BE-CMC and
    # CMC-final; names=PIPELINES (`jsdlib cmc compare --task emoji --with-ce`) still runs the CE rows.
    "emoji": {"k": 512, "k_ce": 16, "n_eval": 300, "ce": CEConfig(max_len=32, lr=3e-4, max_train_queries=6000,
                                                                    epochs=3),
              "names": ("be", "be_cmc", "cmc_final"),
              "ce_note": "no cross-encoder rows: no image CE trainable in the CPU budget reranks above chance "
                         "(see cmc.TASKS)"},
}


def load_task(task: str, split: str, progress: bool = False, **kw) -> RerankData:
    if task == "emoji":
        return emoji_task(split, progress=progress, **kw)
    if task == "wordnet":
        return wordnet_task(split, progress=progress, **kw)
    raise ValueError(f"unknown task {task!r}; use 'wordnet' or 'emoji'")


def eval_subset(data: RerankData, n: int | None, seed: int = 1234) -> RerankData:
    """The first ``n`` queries of a fixed permutation (all queries if ``n`` is None or >= N)."""
    if n is None or n >= len(data):
        return data
    idx = torch.sort(torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:n]).values
    return data.subset(idx)


def compare(task: str, seeds: Sequence[int], preset: str = "cpu-frozen", names: Sequence[str] | None = None,
            run_root=None, n_eval: int | None = -1, ce_cfg: CEConfig | None = None, data: dict | None = None,
            progress: bool = False, log=print) -> dict:
    """Train CMC (and the CE) per seed and run every pipeline on the task's test queries; mean ± std over seeds.

    Returns ``{"pipelines": {NAME: {metric: {"mean", "std"}}}, "per_seed", "task", "variant", "config", ...}``.
    ``data``: ``{"train", "val", "test"}`` RerankData to use instead of loading the task.
    """
    if not seeds:
        raise ValueError("compare needs at least one seed")
    spec = TASKS[task]
    names = tuple(spec.get("names", PIPELINES) if names is None else names)
    data = data or {s: load_task(task, s, progress=progress) for s in ("train", "val", "test")}
    n_eval = spec["n_eval"] if n_eval == -1 else n_eval
    test = eval_subset(data["test"], n_eval)
    ce_cfg = ce_cfg or spec["ce"]
    need_ce = any(x in names for x in ("be_ce", "be_cmc_ce"))
    ce, ce_info, cache = None, {}, PairCache()
    if need_ce:  # the expensive model: trained once (first seed) and shared by every CMC seed
        log(f"[{task}] training the cross-encoder on {ce_cfg.max_train_queries} queries (seed {seeds[0]})")
        ce_res = train_ce(data["train"], ce_cfg.replace(seed=seeds[0]), progress=progress, log=log)
        ce = ce_res["model"]
        ce_info = {"train_time_s": ce_res["train_time_s"], "n_train_queries": ce_res["n_train_queries"],
                   "seed": seeds[0], "first_loss": ce_res["loss_first"], "final_loss": ce_res["loss_last"],
                   "chance_loss": math.log(ce_cfg.n_candidates)}
    per_seed, info = [], []
    for s in seeds:
        cfg = get_cmc_preset(preset, seed=s)
        rd = None if run_root is None else Path(run_root) / f"{task}-{cfg.name}-seed{s}"
        log(f"[{task}] seed {s}: training CMC ({cfg.encoders} encoders, preset {cfg.name})")
        res = train_cmc(data["train"], data["val"], cfg, run_dir=rd, progress=progress, log=log)
        log(f"[{task}] seed {s}: pipelines on {len(test)} test queries")
        per_seed.append(run_pipelines(test, res["model"], ce, spec["k"], spec["k_ce"], names, progress=progress,
                                      ce_cache=cache))
        info.append({"seed": s, "best_epoch": res["best"]["epoch"], "val_acc": res["best"]["val_acc"],
                     "val_history": [h["val_acc"] for h in res["history"]], "cmc_train_time_s": res["train_time_s"]})
    ce_out = (ce_info | {"ms_per_pair": cache.ms_per_pair, "pairs_scored": cache.pairs,
                         "note": "the CE is trained once (first seed) and shared by every CMC seed"} if need_ce
              else {"skipped": True, "note": spec.get("ce_note", "no cross-encoder pipelines asked for")})
    return {"pipelines": aggregate_pipelines(per_seed), "tests": pipeline_tests(per_seed), "task": task,
            "names": list(names), "variant": get_cmc_preset(preset).encoders,
            "preset": dataclasses.asdict(get_cmc_preset(preset)),
            "ce_config": dataclasses.asdict(ce_cfg) if need_ce else None,
            "k": min(spec["k"], test.k), "k_ce": spec["k_ce"], "seeds": list(seeds), "seed_info": info,
            "ce": ce_out,
            "n_test_queries": len(test), "n_test_total": len(data["test"]), "n_train_queries": len(data["train"]),
            "catalogue_size": int(test.cand_emb.shape[0]), "data": test.name,
            "per_seed": [{n: {k: v for k, v in m.items() if k not in ("per_domain", "ranks")} for n, m in r.items()}
                         for r in per_seed]}


def export_wordnet_head(out=None, preset: str = "cpu-frozen", seed: int = 0, be_kind: str = "asis",
                        progress: bool = True, log=print) -> dict:
    """Train the frozen-encoder CMC head on WordNet (train, selected on val) and write it as float16 safetensors.

    The validation accuracy stored in the metadata is measured on the *saved* (float16) head after reloading.
    """
    cfg = get_cmc_preset(preset, seed=seed)
    train = wordnet_task("train", be_kind, progress=progress)
    val = wordnet_task("val", be_kind, progress=progress)
    res = train_cmc(train, val, cfg, progress=progress, log=log)
    out = Path(out) if out is not None else CMC_WORDNET_ASSET
    meta = {"task": "wordnet", "encoders": "frozen", "be": be_kind, "preset": cfg.name, "seed": seed,
            "config": dataclasses.asdict(cfg), "best_epoch": res["best"]["epoch"],
            "trained_on": "WordNet train domains with <= 4,000 entities (BE top-1024 candidates); selected on "
                          "val accuracy"}
    save_cmc(res["model"], out, meta)
    model, _ = load_cmc(out)
    meta["val_acc"] = round(evaluate_cmc(model, eval_subset(val, cfg.max_val_queries), cfg.eval_k), 4)
    save_cmc(model, out, meta)
    log(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): val accuracy {meta['val_acc']:.2f} (K = {cfg.eval_k}, "
        f"{cfg.max_val_queries or len(val)} val queries)")
    return meta


def lr_sweep(train: RerankData, val: RerankData, lrs: Sequence[float], preset: str = "spec", seed: int = 0,
             log=print, **overrides) -> list[dict]:
    """Validation accuracy of CMC trained with each learning rate (how the CPU presets' lr was chosen: val only)."""
    rows = []
    for lr in lrs:
        cfg = get_cmc_preset(preset, lr=lr, seed=seed, **overrides)
        res = train_cmc(train, val, cfg, progress=False, log=lambda *a: None)
        rows.append({"lr": lr, "val_acc": res["best"]["val_acc"], "best_epoch": res["best"]["epoch"],
                     "history": [h["val_acc"] for h in res["history"]], "train_time_s": res["train_time_s"]})
        log(f"lr {lr:g}: val acc {rows[-1]['val_acc']:.2f} (epoch {rows[-1]['best_epoch']}) {rows[-1]['history']}")
    return rows


# ----------------------------------------------------------------------------------------------
# Speed: ms per query against the number of candidates (spec §5)
# ----------------------------------------------------------------------------------------------
def _median_ms(fn, repeats: int, device="cpu") -> float:
    """Median wall time of ``fn()`` in ms over ``repeats`` calls, after one warm-up call (excluded).

    On CUDA every call is followed by a synchronisation, so the time is the kernels', not the launch's.
    """
    import statistics

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
    from jsdlib.common import hardware

    dev = torch.device(device or default_device())
    bf16 = resolve_bf16(precision, dev)
    torch.manual_seed(0)
    if tiny:
        from transformers import BertConfig, BertModel

        tok = _tokenizer()
        cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=max(64, max_len))
        enc = TextEncoder(BertModel(cfg), tok, max_len=max_len)
        ce = CrossEncoder(BertModel(cfg), tok, max_len=max_len, precision=precision)
    else:
        enc = TextEncoder(max_len=max_len)
        ce = CrossEncoder(max_len=max_len, precision=precision)
    d = 384
    enc, ce = enc.eval().to(dev), ce.eval().to(dev)
    cmc = CMC(d).eval().to(dev)
    cmc.head.precision = precision
    words = "the quick brown fox jumps over a lazy dog near river bank in the cold morning light".split()
    query, cand = " ".join((words * 3)[:22]), " ".join((words * 4)[:38])
    n_q, n_c = len(enc.tokenizer(query)["input_ids"]), len(enc.tokenizer(cand)["input_ids"])
    catalogue = F.normalize(torch.randn(max(*ns, 10000), d), dim=-1).to(dev)
    q_proj = torch.randn(enc.dim, d, device=dev) / math.sqrt(enc.dim) if enc.dim != d else None

    def run_cmc(n):
        qv = enc([query])
        return cmc(qv if q_proj is None else qv @ q_proj, catalogue[torch.arange(n, device=dev)][None])

    def run_ce(n):
        return torch.cat([ce.pair_scores([query] * min(ce_batch, n - s), [cand] * min(ce_batch, n - s))
                          for s in range(0, n, ce_batch)])

    def run_be(n):
        return torch.topk(catalogue[:1] @ catalogue.T, n, dim=1)

    gemm = {"fp32": None, "bf16": None}
    if probe:
        gemm["fp32"] = hardware.matmul_tflops(torch.float32, dev, n=256 if tiny else 1024, seconds=0.2 if tiny else 1.0)
        if resolve_bf16("auto", dev):   # bf16 GEMMs only where native (emulated ones say nothing of the hardware)
            gemm["bf16"] = hardware.matmul_tflops(torch.bfloat16, dev, n=256 if tiny else 1024,
                                                  seconds=0.2 if tiny else 1.0)
        log(f"GEMM probe ({torch.get_num_threads()} thread(s), {dev}): fp32 {gemm['fp32']:.3f} TFLOP/s, bf16 "
            + (f"{gemm['bf16']:.3f} TFLOP/s" if gemm["bf16"] else "not native here"))
    peak = gemm["bf16"] if bf16 else gemm["fp32"]

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
    by_n, claims = {r["n"]: r for r in rows}, {}
    if 16 in by_n and max(by_n) >= 4000:
        big = max(by_n)
        ratio = by_n[big]["cmc_ms"] / by_n[16]["ce_ms"]
        claims["cmc_at_max_vs_ce_at_16"] = {"n": big, "cmc_ms": by_n[big]["cmc_ms"], "ce16_ms": by_n[16]["ce_ms"],
                                            "ratio": ratio, "holds_within_2x": bool(0.5 <= ratio <= 2.0)}
    if 64 in by_n:
        claims["ce_over_cmc_at_64"] = by_n[64]["ce_ms"] / by_n[64]["cmc_ms"]
    machine = hardware.describe() if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    return {"rows": rows, "claims": claims, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "pair_tokens": [n_q, n_c], "device": str(dev), "precision": "bf16" if bf16 else "fp32",
            "gemm_tflops": gemm, "machine": f"{hardware.cpu_model()}; {machine}"}


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


# ----------------------------------------------------------------------------------------------
# Link one mention: the bundled pipeline BE -> CMC, for the quickstart
# ----------------------------------------------------------------------------------------------
class Linker:
    """Link mentions of one WordNet-set domain: the MiniLM bi-encoder's top-``k`` senses, reranked by CMC.

    ``linker = Linker("noun.shape")`` encodes the domain's senses once with the as-is bi-encoder (cached), and
    loads the committed CMC head (``jsdlib/assets/cmc_wordnet.safetensors``, frozen encoders, trained on the
    train domains). ``linker.link(i)`` ranks the senses for mention ``i``: first by the bi-encoder's
    ``cos(q, c_k)`` of mean-pooled MiniLM vectors, then by CMC's ``s_k = X^(2)_0 . X^(2)_k`` over
    ``[q; c_1..c_K]`` read jointly.
    ``data_dir`` reads any ZeSHEL-format folder (real ZeSHEL included) instead of the bundled set.
    """

    def __init__(self, domain: str, split: str = "test", k: int = 64, data_dir=None, model=None, be=None,
                 progress: bool = False):
        from jsdlib.retrieval.biencoder import load_biencoder, retrieve
        from jsdlib.data.datasets import load_zeshel, wordnet_dir

        self.zset = load_zeshel(data_dir or wordnet_dir(), split, domains=[domain])
        if not len(self.zset):
            raise ValueError(f"domain {domain!r} has no {split} mentions")
        ret = retrieve(be or load_biencoder("asis"), self.zset, k=k, progress=progress)
        self.data = RerankData.from_retrieval(ret, self.zset, name=f"{domain}-{split}")
        docs = [self.zset.document(w, c) for w, c in zip(ret.cand_domain, ret.cand_ids)]
        # senses can share a title (WordNet's "take" has dozens): label each with the start of its gloss
        self.titles = [f"{d['title']} ({' '.join(d['text'].split()[:6])}...)" for d in docs]
        self.model, self.meta = (model, {}) if model is not None else load_bundled()
        self.k = self.data.k

    def __len__(self) -> int:
        return len(self.zset)

    def mention(self, i: int) -> str:
        """Mention ``i`` in its context window, the mention itself in ``[[ ]]``."""
        from jsdlib.data.datasets import MENTION_END, MENTION_START

        return self.zset.query_text(i).replace(MENTION_START, "[[").replace(MENTION_END, "]]")

    @torch.no_grad()
    def link(self, i: int, top: int = 5) -> dict:
        """``{"mention", "gold", "be": [(title, score)], "cmc": [(title, score)], "be_rank", "cmc_rank"}``.

        Ranks are 1-based positions of the gold (``None`` when it is outside the bi-encoder's top-``k``).
        """
        if not 0 <= i < len(self):
            raise IndexError(f"mention {i} outside [0, {len(self)})")
        one = self.data.subset([i])
        rows, scores = cmc_rerank(self.model, one, self.k)
        be_rows, be_scores = one.topk[0][one.valid[0]], one.scores[0][one.valid[0]]
        gold = int(one.gold[0])
        rank = lambda r: (r.tolist().index(gold) + 1) if gold in r.tolist() else None  # noqa: E731
        keep = torch.isfinite(scores[0])
        return {"mention": self.mention(i), "gold": self.titles[gold],
                "be": [(self.titles[r], float(s)) for r, s in zip(be_rows[:top].tolist(), be_scores[:top])],
                "cmc": [(self.titles[r], float(s)) for r, s in zip(rows[0][keep][:top].tolist(),
                                                                    scores[0][keep][:top])],
                "be_rank": rank(be_rows), "cmc_rank": rank(rows[0][keep])}
