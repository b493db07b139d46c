"""What CMC and the cross-encoder read: a retriever's output (:class:`RerankData`) and the training candidates.

Data is generic over tensors, so the same code serves entity linking (a bi-encoder's
:class:`jsdlib.retrieval.topk.Retrieval`) and text -> image (JSD retrieval over image vectors). Training
candidates per query (arXiv 2405.12801): the gold (inserted if missing), the 31 best-ranked others and 32 drawn
uniformly from the rest of the retriever's top-1024 (:func:`sample_candidates`).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass

import numpy as np
import torch

from jsdlib.common.seeding import generator


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
        """16 hex digits of SHA-256 over every byte and the shape of the vectors, rankings, scores and gold.

        A training run's identity (resume refuses another run's checkpoint): all of each tensor is hashed, so two
        sets that differ anywhere differ here (jsdlib 0.1 hashed only the first MiB of each tensor).
        """
        h = hashlib.sha256()
        for t in (self.query_emb, self.cand_emb, self.topk, self.scores, self.gold):
            h.update(memoryview(t.detach().cpu().contiguous().numpy()).cast("B"))
            h.update(str(tuple(t.shape)).encode())
        return h.hexdigest()[:16]

    @classmethod
    def from_retrieval(cls, ret, zset=None, name: str = "") -> "RerankData":
        """From :class:`jsdlib.retrieval.topk.Retrieval` (+ its ``ZeshelSet`` for texts and domains)."""
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


def eval_subset(data: RerankData, n: int | None, seed: int = 1234) -> RerankData:
    """The first ``n`` queries of a fixed permutation (all queries if ``n`` is None or >= N)."""
    if n is None or n >= len(data):
        return data
    idx = torch.sort(torch.randperm(len(data), generator=generator(seed))[:n]).values
    return data.subset(idx)
