"""Training of the comparison rerankers (:mod:`jsdlib.cmc.baselines`) exactly as CMC is trained.

The same :class:`jsdlib.cmc.config.CMCConfig` and the same loop (:func:`jsdlib.common.fit.fit`): per step
``batch_size`` training queries, each with ``[gold, 31 best-ranked others, 32 uniform from the rest of the
top-1024]`` (:func:`jsdlib.cmc.data.sample_candidates`), the loss
``alpha CE(s, gold) + (1 - alpha) KL(softmax(t / T) || softmax(s / T))`` with the retriever's scores ``t`` as the
teacher (:func:`jsdlib.cmc.loss.cmc_loss`), AdamW with warm-up and linear decay, clipping, and model selection on
validation over the top-``eval_k`` with ``cfg.select_on`` (:func:`jsdlib.cmc.rerank.selection_metrics`).
``cfg.input_scale`` and ``cfg.encoders`` are CMC's own: a baseline refuses a config that sets them otherwise.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import torch
from torch import nn

from jsdlib.cmc.baselines import PolyEncoder, SumOfMax, TokenStates, baseline_rerank, check_texts
from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.data import RerankData, eval_subset, sample_candidates
from jsdlib.cmc.loss import cmc_loss, teacher_scores
from jsdlib.cmc.model import default_device
from jsdlib.cmc.rerank import selection_metrics
from jsdlib.cmc.train import _training_queries
from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.optim import adamw
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, seeded

RERANKERS = ("poly", "sum_of_max")


def make_reranker(kind: str, data: RerankData, tokens: TokenStates | None = None, **kw) -> nn.Module:
    """A new :class:`PolyEncoder` (``kind="poly"``, ``kw``: ``n_codes``) or :class:`SumOfMax` (``"sum_of_max"``,
    ``kw``: ``dim``, ``cand_tokens``) for ``data``'s candidate vectors; ``tokens`` default: pretrained MiniLM."""
    if kind not in RERANKERS:
        raise ValueError(f"unknown reranker {kind!r}; known: {RERANKERS}")
    tokens = tokens if tokens is not None else TokenStates()
    if kind == "poly":
        return PolyEncoder(tokens, data.cand_emb.shape[1], **kw)
    return SumOfMax(tokens, **kw)


class RerankerTask(Task):
    """A comparison reranker for :func:`fit`: CMC's batches, sampling, loss and selection (module docstring)."""

    def __init__(self, model: nn.Module, train: RerankData, val: RerankData, cfg: CMCConfig, qidx: torch.Tensor):
        self.model, self.train, self.val, self.cfg, self.qidx = model, train, val, cfg, qidx
        self.params = [p for p in model.parameters() if p.requires_grad]

    def batches(self, epoch: int, gen: torch.Generator) -> list[list[int]]:
        order = self.qidx[torch.randperm(len(self.qidx), generator=gen)]
        return [order[s:s + self.cfg.batch_size].tolist() for s in range(0, len(order), self.cfg.batch_size)]

    def loss(self, qs: list[int], step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        d, cfg = self.train, self.cfg
        cands = torch.stack([sample_candidates(d.topk[q][d.valid[q]], int(d.gold[q]), gen, cfg.n_hard,
                                               cfg.n_random, cfg.pool) for q in qs])
        sc = self.model.score(d, qs, cands)
        teacher = (d.teacher_scale * torch.stack([teacher_scores(d, q, c) for q, c in zip(qs, cands)])).to(sc.device)
        loss, parts = cmc_loss(sc, torch.zeros(len(qs), dtype=torch.long, device=sc.device), teacher, cfg.alpha,
                               cfg.T)
        return loss, {"loss": loss.detach(), "ce": parts["ce"], "kl": parts["kl"]}

    def validate(self, epoch: int) -> tuple[dict, float]:
        ranked, _ = baseline_rerank(self.model, self.val, self.cfg.eval_k)
        return selection_metrics(ranked, self.val.gold, self.val.domain, min(self.cfg.eval_k, self.val.k),
                                 self.cfg.select_on)

    def epoch_line(self, row: dict) -> str:
        return (f"{self.model.kind} epoch {row['epoch']}  loss {row['loss']:.4f}  val acc {row['val_acc']:.2f}  "
                f"{row['epoch_s']:.1f}s")


def train_reranker(model: nn.Module, train: RerankData, val: RerankData, cfg: CMCConfig, run_dir=None,
                   resume: bool = True, progress: bool = True, stop_after_epoch: int | None = None,
                   log=print) -> dict:
    """Train a :class:`PolyEncoder` / :class:`SumOfMax` as :func:`jsdlib.cmc.train.train_cmc` trains CMC (module
    docstring) and keep the best validation epoch. Seeded with ``cfg.seed``; ``run_dir``: resumable checkpoints
    of the trained weights (the frozen MiniLM is not in them). Returns :func:`fit`'s result plus ``"kind"``,
    ``"n_train_queries"`` and ``"config"``."""
    if cfg.encoders != "frozen" or cfg.input_scale != "unit":
        raise ValueError(f"train_reranker: the comparison rerankers use frozen encoders and their own scale; got "
                         f"encoders={cfg.encoders!r}, input_scale={cfg.input_scale!r} (use the defaults)")
    for d in (train, val):
        check_texts(model, d)
    device = torch.device(cfg.device or default_device())
    arch = hashlib.sha256(json.dumps(model.arch(), sort_keys=True).encode()).hexdigest()[:12]
    with seeded(cfg.seed):
        model.to(device)
        model.tokens.bert.to(device)
        if model.kind == "sum_of_max":
            model.cand_tokens.bert.to(device)
        qidx = _training_queries(train, cfg)
        val = eval_subset(val, cfg.max_val_queries)
        task = RerankerTask(model, train, val, cfg, qidx)
        opt = adamw(task.model, task.params, cfg.lr, cfg.eps, cfg.weight_decay, cfg.decay_groups)
        sched = warmup_decay(opt, cfg.epochs * math.ceil(len(qidx) / cfg.batch_size), cfg.warmup_frac,
                             rounding="nearest")
        res = fit(task, opt, sched, generator(cfg.seed),
                  FitConfig(cfg.epochs, cfg.grad_clip, patience=cfg.patience, device=str(device), global_rng=True),
                  ident=f"{model.kind}:{arch}:{cfg.digest()}:{train.fingerprint()}:{val.fingerprint()}",
                  run_dir=run_dir, resume=resume, progress=progress, log=log, log_epochs=progress,
                  desc=model.kind, stop_after_epoch=stop_after_epoch)
    res["kind"] = model.kind
    if "stopped_at" not in res:
        res.update(n_train_queries=int(len(qidx)), config=dataclasses.asdict(cfg))
    return res
