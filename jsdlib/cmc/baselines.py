"""The paper's reranker comparison (CMC §5, issue 15): a poly-encoder and a sum-of-max (ColBERT) late-interaction
reranker over the same candidates and encoders as CMC, scored one (query, candidate) pair at a time.

Both read MiniLM's last-layer **token states** (frozen, :class:`TokenStates`): what distinguishes them from CMC is
how the query and the candidates meet, not the encoder. Both score every candidate on its own, so they are
permutation-equivariant over the candidates and, unlike CMC, the candidates never see each other.

- :class:`PolyEncoder` (Humeau et al., ICLR 2020), query side over the query's token states ``h_1..h_N``, the
  candidate side the single vector CMC sees (``RerankData.cand_emb``, the retriever's)::

      y^i_ctxt = sum_j softmax_j(c_i . h'_j) h'_j,   i = 1..m     (m learned codes c_i; h'_j = W_q h_j)
      w        = softmax_i(y_cand . y^i_ctxt),        y_cand = W_c c
      y_ctxt   = sum_i w_i y^i_ctxt,                  s = y_ctxt . y_cand

- :class:`SumOfMax` (Khattab & Zaharia, SIGIR 2020): token vectors ``E_q = norm(W h^q_i)``, ``E_d = norm(W h^d_j)``
  of the query and candidate texts, ``s(q, d) = sum_i max_j E_q,i . E_d,j`` (:func:`sum_of_max`).

Deviations from the papers (``docs/fidelity.md``): the encoders are frozen (CMC's frozen variant is the
comparison), only the projections and codes train; ColBERT's query padding with [MASK] and its punctuation
filter are left out. Trained by :func:`jsdlib.cmc.baselines_train.train_reranker`; :func:`baseline_rerank` is the
pipelines' reranking call (the same ``(rows, scores)`` as :func:`jsdlib.cmc.rerank.cmc_rerank`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jsdlib.cmc.data import RerankData
from jsdlib.cmc.model import pretrained_minilm
from jsdlib.vlp.minilm import minilm_tokenizer


class TokenStates:
    """Frozen MiniLM last-layer token states of texts, cached per text (stored float16: a catalogue is large).

    Not an ``nn.Module`` on purpose: the encoder is frozen, so it is no part of a reranker's trained weights or
    checkpoints. ``bert``/``tokenizer`` default to the pretrained all-MiniLM-L6-v2 with the ZeSHEL markers (the
    ``asis`` bi-encoder's encoder); tests pass a tiny BERT.
    """

    def __init__(self, bert=None, tokenizer=None, max_len: int = 64, batch: int = 64):
        self.bert = (bert if bert is not None else pretrained_minilm()).eval().requires_grad_(False)
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer(markers=True)
        self.max_len, self.batch = max_len, batch
        self.cache: dict[str, torch.Tensor] = {}

    @property
    def dim(self) -> int:
        return self.bert.config.hidden_size

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> None:
        dev = next(self.bert.parameters()).device
        for s in range(0, len(texts), self.batch):
            chunk = texts[s:s + self.batch]
            t = self.tokenizer(chunk, padding=True, truncation=True, max_length=self.max_len,
                               return_tensors="pt").to(dev)
            h = self.bert(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
            for text, hs, m in zip(chunk, h, t["attention_mask"].bool()):
                self.cache[text] = hs[m].to(torch.float16).cpu()

    def prefill(self, texts: Sequence[str]) -> int:
        """Encode ``texts`` in a canonical order (unique, sorted by length, then text) before anything asks for them.

        A text's states depend on the batch it was encoded in (padded to the batch's longest), so a cache filled
        lazily depends on the order of earlier requests: a resumed run, or another process training the same
        reranker, would read slightly different float16 states. Encoded here, a text's states depend only on the
        set ``texts``: every process that prefills the same set (:func:`jsdlib.experiments.cmc_compare.reranker_texts`)
        reads the same numbers. Texts already cached are kept; returns how many were encoded."""
        todo = sorted({t for t in texts if t not in self.cache}, key=lambda t: (len(t), t))
        self._encode(todo)
        return len(todo)

    def __call__(self, texts: Sequence[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(states (B, L, d) float32, mask (B, L) bool)`` of ``texts``, zero-padded to the longest."""
        todo = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if todo:
            self._encode(todo)
        hs = [self.cache[t] for t in texts]
        L = max(len(h) for h in hs)
        out = torch.zeros(len(hs), L, self.dim)
        mask = torch.zeros(len(hs), L, dtype=torch.bool)
        for i, h in enumerate(hs):
            out[i, :len(h)], mask[i, :len(h)] = h.float(), True
        return out.to(device), mask.to(device)


def sum_of_max(q: torch.Tensor, q_mask: torch.Tensor, d: torch.Tensor, d_mask: torch.Tensor) -> torch.Tensor:
    """ColBERT's late interaction ``s_k = sum_i max_j q_i . d_{k,j}`` over real tokens only.

    ``q`` (B, Lq, e) with ``q_mask`` (B, Lq); ``d`` (B, K, Ld, e) with ``d_mask`` (B, K, Ld). Returns (B, K).
    """
    sim = torch.einsum("bie,bkje->bkij", q, d)                            # q_i . d_kj
    sim = sim.masked_fill(~d_mask[:, :, None, :], -math.inf)              # padding is never the max
    best = sim.max(dim=-1).values                                         # (B, K, Lq): max_j
    return (best * q_mask[:, None, :]).sum(-1)                            # sum over the query's real tokens


def _identity_linear(d_in: int, d_out: int, bias: bool) -> nn.Linear:
    """A Linear that starts as the identity (d_in == d_out) or as a small random map (else)."""
    lin = nn.Linear(d_in, d_out, bias=bias)
    if d_in == d_out:
        with torch.no_grad():
            lin.weight.copy_(torch.eye(d_in))
            if bias:
                lin.bias.zero_()
    return lin


class PolyEncoder(nn.Module):
    """Poly-encoder reranker (module docstring): ``m`` codes over the query's token states, the retriever's
    candidate vectors. ``dim`` = the token states' width; ``W_q``, ``W_c`` start as the identity and the codes
    near 0, so before training ``y_ctxt`` is the mean of the query's token states (the ``asis`` bi-encoder's
    mean-pooled query direction) and the score a scaled bi-encoder score."""

    kind = "poly"
    rerank_batch = 16

    def __init__(self, tokens: TokenStates, cand_dim: int, n_codes: int = 16):
        super().__init__()
        self.tokens = tokens
        d = tokens.dim
        self.W_q = _identity_linear(d, d, bias=True)
        self.W_c = _identity_linear(cand_dim, d, bias=True)
        self.codes = nn.Parameter(torch.randn(n_codes, d) * 0.02)

    def arch(self) -> dict:
        return {"kind": self.kind, "n_codes": self.codes.shape[0], "dim": self.codes.shape[1],
                "max_len": self.tokens.max_len}

    def forward(self, h: torch.Tensor, h_mask: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) of query token states ``h`` (B, L, d) with mask (B, L) and candidate vectors (B, K, d_c)."""
        hp = self.W_q(h)                                                              # h'_j
        att = torch.einsum("md,bld->bml", self.codes, hp).masked_fill(~h_mask[:, None, :], -math.inf)
        y = torch.einsum("bml,bld->bmd", att.softmax(-1), hp)                        # y^i_ctxt (B, m, d)
        yc = self.W_c(c)                                                              # y_cand (B, K, d)
        w = torch.einsum("bkd,bmd->bkm", yc, y).softmax(-1)                           # w_i per candidate
        return torch.einsum("bkm,bmd,bkd->bk", w, y, yc)                              # y_ctxt . y_cand

    def score(self, data: RerankData, qs: Sequence[int], rows: torch.Tensor) -> torch.Tensor:
        """Scores (B, K) of catalogue ``rows`` (B, K) for the queries ``qs`` of ``data``."""
        dev = self.codes.device
        h, m = self.tokens([data.query_texts[q] for q in qs], dev)
        return self(h, m, data.cand_emb[rows].float().to(dev))


class SumOfMax(nn.Module):
    """ColBERT-style sum-of-max reranker (module docstring) over the token states of query and candidate texts.

    ``W`` (shared by both sides, as ColBERT's) maps the token states to ``dim``; ``dim=None`` keeps the width and
    starts ``W`` as the identity (before training: MaxSim over MiniLM's own normalised token states).
    ``normalize=False``: raw dot products ``W h^q_i . W h^d_j`` (the authors' ``HardAttention`` scores raw states)."""

    kind = "sum_of_max"
    rerank_batch = 2    # queries per reranking batch: K x L token states each (512 x 64 x 384 floats ~ 50 MB)

    def __init__(self, tokens: TokenStates, cand_tokens: TokenStates | None = None, dim: int | None = None,
                 normalize: bool = True):
        super().__init__()
        self.tokens, self.normalize = tokens, normalize
        self.cand_tokens = cand_tokens if cand_tokens is not None else tokens
        self.W = _identity_linear(tokens.dim, dim or tokens.dim, bias=False)

    def arch(self) -> dict:
        return {"kind": self.kind, "dim": self.W.out_features, "q_max_len": self.tokens.max_len,
                "c_max_len": self.cand_tokens.max_len, "normalize": self.normalize}

    def embed(self, h: torch.Tensor) -> torch.Tensor:
        """``norm(W h)``: unit-length token vectors (``W h`` when ``normalize=False``)."""
        return F.normalize(self.W(h), dim=-1) if self.normalize else self.W(h)

    def forward(self, hq, q_mask, hd, d_mask) -> torch.Tensor:
        """Scores (B, K): query states (B, Lq, d) + mask, candidate states (B, K, Ld, d) + mask (B, K, Ld)."""
        return sum_of_max(self.embed(hq), q_mask, self.embed(hd), d_mask)

    def score(self, data: RerankData, qs: Sequence[int], rows: torch.Tensor) -> torch.Tensor:
        dev = self.W.weight.device
        hq, mq = self.tokens([data.query_texts[q] for q in qs], dev)
        B, K = rows.shape
        hd, md = self.cand_tokens([data.cand_texts[r] for r in rows.reshape(-1).tolist()], dev)
        return self(hq, mq, hd.view(B, K, *hd.shape[1:]), md.view(B, K, -1))


def check_texts(model: nn.Module, data: RerankData) -> None:
    """A clear error when ``data`` lacks the texts the reranker reads."""
    if data.query_texts is None or (model.kind == "sum_of_max" and data.cand_texts is None):
        raise ValueError(f"{type(model).__name__}: the data needs query_texts"
                         + (" and cand_texts" if model.kind == "sum_of_max" else "")
                         + " (build it with RerankData.from_retrieval(ret, zset))")


@torch.no_grad()
def baseline_rerank(model: nn.Module, data: RerankData, k: int | None = None,
                    batch: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The reranker over each query's top-``k``: (rows (N, k), scores (N, k)) sorted best first, ties in the
    retriever's order; a padded short list is reranked over its real entries only (padding last, score -inf).
    ``batch``: queries scored together (default: the model's ``rerank_batch``)."""
    check_texts(model, data)
    batch = batch or model.rerank_batch
    model.eval()
    k = min(k or data.k, data.k)
    rows = data.topk[:, :k].clone()
    scores = torch.full(rows.shape, -math.inf)
    n_valid = data.valid[:, :k].sum(1)
    full = torch.nonzero(n_valid == k).squeeze(1).tolist()
    groups = [(full[s:s + batch], k) for s in range(0, len(full), batch)]
    groups += [([q], int(n_valid[q])) for q in torch.nonzero(n_valid < k).squeeze(1).tolist()]
    for qs, kk in groups:
        top = data.topk[qs, :kk]
        sc = model.score(data, qs, top).float().cpu()
        o = torch.argsort(sc, dim=1, descending=True, stable=True)
        rows[qs, :kk], scores[qs, :kk] = torch.gather(top, 1, o), torch.gather(sc, 1, o)
    return rows, scores
