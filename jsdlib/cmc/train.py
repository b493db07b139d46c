"""Train CMC (spec cmc.md §3): sampled candidates, the CE + distillation loss, model selection on validation.

Per step, ``batch_size`` training queries each get ``[gold, 31 best-ranked others, 32 uniform from the rest of the
top-1024]`` (:func:`jsdlib.cmc.data.sample_candidates`), CMC scores them and :func:`jsdlib.cmc.loss.cmc_loss`
compares the scores with the gold and with the retriever's (teacher) scores. AdamW, linear warm-up then linear
decay (:mod:`jsdlib.common.schedule`), gradient clipping; after each epoch CMC reranks the validation queries'
top-``eval_k`` and the epoch with the best top-1 accuracy is kept.
"""
from __future__ import annotations

import dataclasses
import math
import time

import torch
from tqdm.auto import tqdm

from jsdlib.cmc.config import CMCConfig
from jsdlib.cmc.data import RerankData, eval_subset, sample_candidates
from jsdlib.cmc.loss import cmc_loss, teacher_scores
from jsdlib.cmc.model import CMC, default_device
from jsdlib.cmc.rerank import evaluate_cmc
from jsdlib.common.checkpoint import open_run, save_state
from jsdlib.common.io import save_torch
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
        model = CMC(train.query_emb.shape[1], "frozen", dropout=cfg.dropout)
    if model.encoders != cfg.encoders:
        raise ValueError(f"train_cmc: cfg.encoders={cfg.encoders!r} but the model is {model.encoders!r}")
    if model.encoders == "finetuned" and (train.query_texts is None or train.cand_texts is None
                                          or val.query_texts is None):
        raise ValueError("train_cmc: the finetuned variant needs query_texts and cand_texts in the data")
    return model


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


def train_cmc(train: RerankData, val: RerankData, cfg: CMCConfig, run_dir=None, resume: bool = True,
              progress: bool = True, stop_after_epoch: int | None = None, log=print, model: CMC | None = None) -> dict:
    """Train CMC (spec §3) and keep the epoch with the best validation accuracy (CMC over val top-``eval_k``).

    Frozen variant: the head on ``train.query_emb`` / ``cand_emb``. Finetuned variant: pass ``model`` (a
    :class:`CMC` with encoders); vectors are re-encoded from ``query_texts`` / ``cand_texts`` in every step
    and the catalogue is re-encoded for validation. ``run_dir``: ``last.pt`` each epoch and ``best.pt``; a
    killed run resumes bit for bit (generator, torch RNG for dropout, optimiser, scheduler). Seeded with
    ``cfg.seed`` (initialisation, dropout, batch order, sampling); the caller's torch RNG is left as it was.
    Returns ``{"model", "history", "best", "variant", ...}``.
    """
    with seeded(cfg.seed):
        return _train_cmc(train, val, cfg, run_dir, resume, progress, stop_after_epoch, log, model)


def _train_cmc(train, val, cfg, run_dir, resume, progress, stop_after_epoch, log, model) -> dict:
    device = torch.device(cfg.device or default_device())
    model = _check(train, val, cfg, model)
    qidx = _training_queries(train, cfg)
    val = eval_subset(val, cfg.max_val_queries)
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, eps=cfg.eps, weight_decay=cfg.weight_decay)
    spe = math.ceil(len(qidx) / cfg.batch_size)
    sched = warmup_decay(opt, cfg.epochs * spe, cfg.warmup_frac, rounding="nearest")
    gen = generator(cfg.seed)
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
            loss, parts = cmc_batch_loss(model, train, order[s:s + cfg.batch_size].tolist(), gen, cfg, Q, C)
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
                save_torch(best_state, run_dir / "best.pt")
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
