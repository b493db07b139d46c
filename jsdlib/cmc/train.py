"""Train CMC (arXiv 2405.12801): sampled candidates, the CE + distillation loss, model selection on validation.

Per step, ``batch_size`` training queries each get ``[gold, 31 best-ranked others, 32 uniform from the rest of the
top-1024]`` (:func:`jsdlib.cmc.data.sample_candidates`), CMC scores them and :func:`jsdlib.cmc.loss.cmc_loss`
compares the scores with the gold and with the retriever's (teacher) scores. AdamW, linear warm-up then linear
decay (:mod:`jsdlib.common.schedule`), gradient clipping; after each epoch CMC reranks the validation queries'
top-``eval_k`` and the epoch with the best top-1 accuracy is kept (micro by default; ``select_on="macro_unnorm"``:
the mean over domains of the per-domain unnormalised accuracy, as the authors select). The loop is
:func:`jsdlib.common.fit.fit` (:class:`CMCTask` says what a batch, its loss and the validation are).
"""
from __future__ import annotations

import dataclasses
import math

import torch

from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.data import RerankData, eval_subset, sample_candidates
from jsdlib.cmc.loss import cmc_loss, teacher_scores
from jsdlib.cmc.model import CMC, default_device
from jsdlib.cmc.rerank import validate_cmc
from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.optim import adamw, param_groups
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, seeded

TRAIN_SUBSET_SEED = 1234   # the training-query subset does not depend on the training seed


def _training_queries(data: RerankData, cfg: CMCConfig) -> torch.Tensor:
    """Queries usable for training (enough candidates), capped to a seeded subset of ``max_train_queries``."""
    n = len(data)
    enough = data.valid[:, :cfg.pool].sum(1) >= cfg.n_hard + cfg.n_random + 1
    idx = torch.nonzero(enough).squeeze(1)
    if cfg.max_train_queries is not None and cfg.max_train_queries < n:
        g = generator(TRAIN_SUBSET_SEED)
        idx = torch.sort(idx[torch.randperm(len(idx), generator=g)[:cfg.max_train_queries]]).values
    return idx


def _check(train: RerankData, val: RerankData, cfg: CMCConfig, model: CMC | None) -> CMC:
    """The model to train (a new frozen-variant CMC unless given), after checking it against ``cfg`` and the data."""
    if model is None:
        if cfg.encoders != "frozen":
            raise ValueError("train_cmc: the finetuned variant needs model=CMC(dim, 'finetuned', encoders...)")
        model = CMC(train.query_emb.shape[1], "frozen", dropout=cfg.dropout, input_scale=cfg.input_scale)
    if model.encoders != cfg.encoders:
        raise ValueError(f"train_cmc: cfg.encoders={cfg.encoders!r} but the model is {model.encoders!r}")
    if model.input_scale != cfg.input_scale:
        raise ValueError(f"train_cmc: cfg.input_scale={cfg.input_scale!r} but the model has "
                         f"{model.input_scale!r}: build it with CMC(..., input_scale=cfg.input_scale)")
    if model.encoders == "finetuned" and (train.query_texts is None or train.cand_texts is None
                                          or val.query_texts is None):
        raise ValueError("train_cmc: the finetuned variant needs query_texts and cand_texts in the data")
    return model


def _optimizer(model: CMC, params: list, cfg: CMCConfig) -> torch.optim.AdamW:
    """AdamW over ``params`` at ``cfg.lr``; the finetuned variant's encoders at ``cfg.encoder_lr`` when it is set (their
    own parameter groups: decayed / not decayed as ``cfg.decay_groups`` says, :func:`jsdlib.common.optim.adamw`)."""
    if cfg.encoder_lr is None or model.encoders != "finetuned":
        return adamw(model, params, cfg.lr, cfg.eps, cfg.weight_decay, cfg.decay_groups)
    enc = {id(p) for m in (model.query_encoder, model.candidate_encoder) for p in m.parameters()}
    head, encoders = [p for p in params if id(p) not in enc], [p for p in params if id(p) in enc]
    groups = (param_groups(model, head, cfg.lr, cfg.weight_decay, cfg.decay_groups)
              + param_groups(model, encoders, cfg.encoder_lr, cfg.weight_decay, cfg.decay_groups))
    return torch.optim.AdamW(groups, lr=cfg.lr, eps=cfg.eps)


def cmc_batch_loss(model: CMC, data: RerankData, qs: list[int], gen: torch.Generator, cfg: CMCConfig,
                   Q: torch.Tensor, C: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """The loss of one batch of training queries ``qs``: sample their candidates, score them, :func:`cmc_loss`.

    ``Q`` / ``C``: the frozen variant's query / candidate vectors on the model's device (the finetuned variant
    encodes ``query_texts`` / ``cand_texts`` instead). The teacher is ``teacher_scale * scores`` of the retriever.
    """
    device = Q.device
    cands = torch.stack([sample_candidates(data.topk[q][data.valid[q]], int(data.gold[q]), gen, cfg.n_hard,
                                           cfg.n_random, cfg.pool) for q in qs])
    teacher = data.teacher_scale * torch.stack([teacher_scores(data, q, c) for q, c in zip(qs, cands)])
    teacher = teacher.to(device)
    if model.encoders == "finetuned":
        sc = model.score_texts([data.query_texts[q] for q in qs],
                               [[data.cand_texts[c] for c in row] for row in cands.tolist()])
    else:
        sc = model(Q[qs], C[cands.to(device)])
    return cmc_loss(sc, torch.zeros(len(qs), dtype=torch.long, device=device), teacher, cfg.alpha, cfg.T)


class CMCTask(Task):
    """CMC for :func:`jsdlib.common.fit.fit`: batches of training queries, :func:`cmc_batch_loss`, validation
    accuracy of CMC over the validation queries' top-``eval_k`` (the selection key: ``cfg.select_on``,
    :func:`jsdlib.cmc.rerank.selection_metrics`)."""

    def __init__(self, model: CMC, train: RerankData, val: RerankData, cfg: CMCConfig, qidx: torch.Tensor,
                 device: torch.device):
        self.model, self.train, self.val, self.cfg, self.qidx = model, train, val, cfg, qidx
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.Q, self.C = train.query_emb.float().to(device), train.cand_emb.float().to(device)

    def batches(self, epoch: int, gen: torch.Generator) -> list[list[int]]:
        order = self.qidx[torch.randperm(len(self.qidx), generator=gen)]
        return [order[s:s + self.cfg.batch_size].tolist() for s in range(0, len(order), self.cfg.batch_size)]

    def loss(self, batch: list[int], step: int, gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        loss, parts = cmc_batch_loss(self.model, self.train, batch, gen, self.cfg, self.Q, self.C)
        return loss, {"loss": loss.detach(), "ce": parts["ce"], "kl": parts["kl"]}

    def validate(self, epoch: int) -> tuple[dict, float]:
        return validate_cmc(self.model, self.val, self.cfg.eval_k, self.cfg.eval_batch, self.cfg.select_on)

    def epoch_line(self, row: dict) -> str:
        return f"cmc epoch {row['epoch']}  loss {row['loss']:.4f}  val acc {row['val_acc']:.2f}  {row['epoch_s']:.1f}s"


def train_cmc(train: RerankData, val: RerankData, cfg: CMCConfig, run_dir=None, resume: bool = True,
              progress: bool = True, stop_after_epoch: int | None = None, log=print, model: CMC | None = None) -> dict:
    """Train CMC as in the CMC paper and keep the epoch with the best validation accuracy (CMC over val top-``eval_k``).

    Frozen variant: the head on ``train.query_emb`` / ``cand_emb``. Finetuned variant: pass ``model`` (a
    :class:`CMC` with encoders); vectors are re-encoded from ``query_texts`` / ``cand_texts`` in every step
    and the catalogue is re-encoded for validation. ``run_dir``: ``last.pt`` each epoch and ``best.pt``; a
    killed run resumes bit for bit (generator, torch RNG for dropout, optimiser, scheduler). Seeded with
    ``cfg.seed`` (initialisation, dropout, batch order, sampling); the caller's torch RNG is left as it was.
    Returns ``{"model", "history", "best", "variant", "n_train_queries", "config", ...}`` (:func:`fit`'s result).
    """
    device = torch.device(cfg.device or default_device())
    with seeded(cfg.seed):
        model = _check(train, val, cfg, model).to(device)
        qidx = _training_queries(train, cfg)
        val = eval_subset(val, cfg.max_val_queries)
        task = CMCTask(model, train, val, cfg, qidx, device)
        opt = _optimizer(model, task.params, cfg)
        sched = warmup_decay(opt, cfg.epochs * math.ceil(len(qidx) / cfg.batch_size), cfg.warmup_frac,
                             rounding="nearest")
        res = fit(task, opt, sched, generator(cfg.seed),
                  FitConfig(cfg.epochs, cfg.grad_clip, patience=cfg.patience, device=str(device), global_rng=True),
                  ident=f"cmc:{cfg.digest()}:{train.fingerprint()}:{val.fingerprint()}", run_dir=run_dir,
                  resume=resume, progress=progress, log=log, log_epochs=progress, desc="cmc",
                  stop_after_epoch=stop_after_epoch)
    res["variant"] = model.encoders
    if "stopped_at" not in res:
        res.update(n_train_queries=int(len(qidx)), config=dataclasses.asdict(cfg))
    return res
