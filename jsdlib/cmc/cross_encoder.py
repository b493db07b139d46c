"""The cross-encoder baseline (arXiv 2405.12801): every (query, candidate) pair read jointly, one score per pair.

:class:`CrossEncoder` reads ``[CLS] query [SEP] candidate [SEP]`` through MiniLM, a linear layer on the [CLS]
output gives the score; :class:`ImageCrossEncoder` does the same for image candidates with a small fusion
transformer. :func:`train_ce` trains either with softmax CE over the gold and the retriever's hardest negatives;
:func:`ce_rerank` reorders a ranking's head, sharing scores of pairs already seen (:class:`PairCache`).
"""
from __future__ import annotations

import dataclasses
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

from jsdlib.cmc.data import RerankData
from jsdlib.cmc.model import default_device, ffn_dim, pretrained_minilm
from jsdlib.cmc.precision import DEFAULT_PRECISION, resolve_bf16
from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.io import atomic_write
from jsdlib.common.optim import adamw
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, seeded
from jsdlib.vlp.minilm import minilm_tokenizer

CE_HEADS = ("cls", "pooler")


class CrossEncoder(nn.Module):
    """``[CLS] query [SEP] candidate [SEP]`` -> MiniLM -> linear on the [CLS] output -> one score per pair.

    Pooling: the last-layer [CLS] hidden state, not BERT's ``pooler`` (dense + tanh): all-MiniLM-L6-v2 is a
    mean-pooling sentence-embedding model whose pooler weights its training never used. The [CLS] state is
    fine-tuned together with the head (``train_ce``); the query/candidate markers ``[unused0..2]`` stay whole
    tokens (:func:`jsdlib.vlp.minilm.minilm_tokenizer`) and the pair gets token types 0 / 1. ``bert`` /
    ``tokenizer`` default to the pretrained MiniLM (tests pass a tiny random BERT). Image candidates: see
    :class:`ImageCrossEncoder`.

    ``head="pooler"``: the authors' head (``reranker.py``): BERT's pooler ``tanh(W [CLS] + b)`` (MiniLM's
    checkpoint carries its weights) -> dropout 0.1 -> linear initialised N(0, 0.02), bias 0.
    """

    def __init__(self, bert=None, tokenizer=None, max_len: int = 64, precision: str = DEFAULT_PRECISION,
                 head: str = "cls"):
        super().__init__()
        resolve_bf16(precision, "cpu")  # validates the name
        self.bert = bert if bert is not None else pretrained_minilm()
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer(markers=True)
        self.max_len = max_len
        self.precision = precision
        if head not in CE_HEADS:
            raise ValueError(f"CrossEncoder: head must be one of {CE_HEADS}, got {head!r}")
        if head == "pooler" and getattr(self.bert, "pooler", None) is None:
            raise ValueError("CrossEncoder(head='pooler') needs a BERT with its pooler (add_pooling_layer=True)")
        self.head = head
        self.dropout = nn.Dropout(0.1) if head == "pooler" else nn.Identity()
        self.score = nn.Linear(self.bert.config.hidden_size, 1)
        if head == "pooler":
            nn.init.normal_(self.score.weight, std=0.02)
            nn.init.zeros_(self.score.bias)

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
        cls = out.pooler_output if self.head == "pooler" else out.last_hidden_state[:, 0]
        return self.score(self.dropout(cls.float())).squeeze(-1)

    def rerank_scores(self, data: RerankData, q: int, rows: torch.Tensor) -> torch.Tensor:
        """Scores of catalogue ``rows`` for query ``q`` of ``data``."""
        if data.query_texts is None or data.cand_texts is None:
            raise ValueError("CrossEncoder: the data needs query_texts and cand_texts (image candidates: "
                             "ImageCrossEncoder)")
        return self.pair_scores([data.query_texts[q]] * len(rows), [data.cand_texts[r] for r in rows.tolist()])


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
    (Why this design, and what was tried before it: ``docs/decisions.md``, "Image cross-encoder".)
    """

    def __init__(self, cand_dim: int, dim: int = 256, layers: int = 2, heads: int = 4, dropout: float = 0.1,
                 bert=None, tokenizer=None, max_len: int = 32):
        super().__init__()
        self.bert = bert if bert is not None else pretrained_minilm()
        self.bert.requires_grad_(False)
        self.tokenizer = tokenizer if tokenizer is not None else minilm_tokenizer(markers=True)
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
    """Cross-encoder training (as in the CMC paper) on a seeded subset of training queries (it is the expensive model on a CPU).

    One step = one query and its ``n_candidates`` pairs: the gold plus the ``n_candidates - 1`` best-ranked
    others of the retriever (hard negatives), scored ``s_1..s_n`` by the CE, and the loss::

        CE = -log softmax(s)_gold   over the candidate list

    AdamW, ``warmup_frac`` linear warm-up then linear decay to 0, gradient clip, dropout on (train mode); the
    whole MiniLM and the linear head are trained.

    Defaults were chosen on WordNet *validation* queries only (the probe and why: ``docs/decisions.md``,
    "Cross-encoder defaults"). ``max_len`` 64 covers WordNet pairs (query + gloss).
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
    # issue 15 options (defaults: jsdlib's behaviour before them):
    head: str = "cls"               # "cls": linear on the [CLS] state; "pooler": BERT pooler -> dropout -> linear
    decay_groups: bool = False      # True: no weight decay on biases and LayerNorm weights (the authors')
    device: str | None = None       # execution only: None = "cuda" when torch sees one, else "cpu"

    def __post_init__(self):
        if self.head not in CE_HEADS:
            raise ValueError(f"CEConfig: head must be one of {CE_HEADS}, got {self.head!r}")

    def replace(self, **kw) -> "CEConfig":
        """A copy with the fields ``kw`` changed."""
        return dataclasses.replace(self, **kw)


def train_ce(train: RerankData, cfg: CEConfig, ce: CrossEncoder | None = None, progress: bool = True,
             log=print, run_dir=None) -> dict:
    """Train the CE with ``CE = -log softmax(s)_gold`` over ``[gold, n_candidates - 1 best-ranked others]``.

    Seeded (query subset, their order, head init, dropout), so a run is reproducible on one machine. Returns
    ``{"model", "train_time_s", "n_train_queries", "losses" (one per step), "loss_first", "loss_last"
    (mean of the first / last 10 % of the steps), "config"}``. ``run_dir``: checkpoints after each epoch (a killed
    run resumes; a finished one is only loaded) and ``losses.json`` (the per-step losses and the training time, so
    a loaded run reports what its training did).
    """
    device = torch.device(cfg.device or default_device())
    with seeded(cfg.seed):
        if ce is None:
            ce = (CrossEncoder(max_len=cfg.max_len, head=cfg.head) if train.cand_feats is None
                  else ImageCrossEncoder(train.cand_feats.shape[1], max_len=cfg.max_len))
        ce.to(device)
        gen = generator(cfg.seed)
        task = CETask(ce, train, cfg, torch.randperm(len(train), generator=gen)[:cfg.max_train_queries].tolist())
        opt = adamw(ce, task.params, cfg.lr, cfg.eps, cfg.weight_decay, cfg.decay_groups)
        sched = warmup_decay(opt, cfg.epochs * len(task.qidx), cfg.warmup_frac, rounding="nearest")
        res = fit(task, opt, sched, gen, FitConfig(cfg.epochs, cfg.grad_clip, device=str(device), global_rng=True),
                  ident=f"ce:{json.dumps(dataclasses.asdict(cfg), sort_keys=True)}:{train.fingerprint()}",
                  run_dir=run_dir, progress=progress, log=lambda *a: None, log_epochs=False, desc="ce")
    losses, secs = _losses_record(run_dir, task.losses, res)
    n10 = max(1, len(losses) // 10)
    first, last = float(np.mean(losses[:n10])), float(np.mean(losses[-n10:]))
    log(f"ce: {len(task.qidx)} queries x {cfg.epochs} epoch(s), mean loss first/last 10%: {first:.3f} / {last:.3f} "
        f"(chance ln {cfg.n_candidates} = {math.log(cfg.n_candidates):.3f})")
    return {"model": ce, "train_time_s": secs, "n_train_queries": len(task.qidx), "losses": losses,
            "loss_first": first, "loss_last": last, "config": dataclasses.asdict(cfg)}


def _losses_record(run_dir, losses: list, res: dict) -> tuple[list, float]:
    """(per-step losses, training seconds): this call's, written to ``run_dir/losses.json`` when it trained every
    step; else (the run was found finished or resumed) the ones recorded there by the run that trained it."""
    secs = float(sum(h.get("epoch_s", 0.0) for h in res["history"])) or float(res["train_time_s"])
    if run_dir is None:
        return losses, secs
    path = Path(run_dir) / "losses.json"
    if len(losses) == res["step"] and losses:
        atomic_write(path, json.dumps({"losses": losses, "train_time_s": secs}))
        return losses, secs
    if path.is_file():
        rec = json.loads(path.read_text(encoding="utf-8"))
        return rec["losses"], float(rec["train_time_s"])
    return losses, secs


def ce_query_loss(ce: nn.Module, data: RerankData, q: int, n_candidates: int) -> torch.Tensor:
    """``-log softmax(s)_gold`` of query ``q`` over ``[gold, the n_candidates - 1 best-ranked others]``."""
    row = data.topk[q][data.valid[q]]
    others = row[row != data.gold[q]][:n_candidates - 1]
    sc = ce.rerank_scores(data, q, torch.cat([data.gold[q:q + 1], others]))
    return F.cross_entropy(sc[None], torch.zeros(1, dtype=torch.long, device=sc.device))


class CETask(Task):
    """The cross-encoder for :func:`jsdlib.common.fit.fit`: one training query per step (:func:`ce_query_loss`),
    the seeded query subset ``qidx`` in a new seeded order each epoch; no validation (the last epoch is kept).
    ``losses``: every step's loss, in order."""

    unselectable = "the cross-encoder is not selected on validation"

    def __init__(self, ce: nn.Module, train: RerankData, cfg: CEConfig, qidx: list[int]):
        self.model, self.train, self.cfg, self.qidx = ce, train, cfg, qidx
        self.params = [p for p in ce.parameters() if p.requires_grad]
        self.losses: list[float] = []

    def batches(self, epoch: int, gen: torch.Generator) -> list[int]:
        return [self.qidx[i] for i in torch.randperm(len(self.qidx), generator=gen).tolist()]

    def loss(self, q: int, step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        loss = ce_query_loss(self.model, self.train, q, self.cfg.n_candidates)
        self.losses.append(float(loss.detach()))
        return loss, {"loss": self.losses[-1]}

    def validate(self, epoch: int) -> tuple[dict, None]:
        return {}, None


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
