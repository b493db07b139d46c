"""Training JSD and the D2S baseline on cached features (arXiv 2508.16707), with D2S's expansion control (PEC).

Both trainers build a :class:`~jsdlib.jsd.model.JSDModel` under :func:`jsdlib.common.seeding.seeded` (the caller's
RNG is left as it was), define the loss of one batch, and run jsdlib's one training loop
(:func:`jsdlib.common.fit.fit`, with the tasks :class:`_JSDTask` and :class:`_D2STask`): AdamW, linear warm-up/decay
(:mod:`jsdlib.common.schedule`), gradient clip, tau clamp, early stopping on validation sparse R@1 under an
optional sparsity budget, and resumable per-epoch checkpoints.

    JSD   loss = jsd_loss(S_d, S_s, Z_t, Z_i)          everything trainable (:func:`jsdlib.jsd.losses.jsd_loss`)
    D2S   loss = d2s_loss(S_s, cos(D_i, D_t), tau_d)   only the head, dense embeddings frozen (same module)
          :func:`train_d2s` with JSD's optimiser and schedule; :func:`train_d2s_own` with D2S's own recipe
    PEC   with probability p(epoch) = max(0, 1 - e / (0.95 E)), z_t <- z_t * 1[j in tokens(caption)]
    words JSD + caption_words_weight * L_words (issue 14, a jsdlib addition: :mod:`jsdlib.jsd.caption_words`)
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

import torch

from jsdlib.common.fit import FitConfig, Task, fit
from jsdlib.common.hardware import cpu_bf16, keep_freed_memory
from jsdlib.common.schedule import warmup_decay
from jsdlib.common.seeding import generator, num_threads, seeded
from jsdlib.jsd.batches import epoch_batches, steps_per_epoch
from jsdlib.jsd.caption_words import CaptionWordTargets, caption_word_loss
from jsdlib.jsd.evaluate import evaluate_model
from jsdlib.jsd.losses import d2s_loss, dense_score, jsd_loss, reg_weight, sparse_score
from jsdlib.jsd.model import JSDModel, build_model
from jsdlib.jsd.presets import D2SRecipe, JSDConfig
from jsdlib.jsd.vocab import bag_mask


# ----------------------------------------------------------------------------------------------
# Probabilistic expansion control (D2S)
# ----------------------------------------------------------------------------------------------
def pec_probability(epoch: int, epochs: int, decay_frac: float = 0.95, floor: float = 0.0) -> float:
    """D2S expansion control: ``p = max(floor, 1 - e / (decay_frac * epochs))`` for 0-based epoch e (1 -> 0 over
    95 % in D2S; ``floor > 0`` keeps masking a share of the batches to the end, issue 14's grounding option)."""
    return max(float(floor), 1.0 - epoch / (decay_frac * epochs))


def _check_pec(cfg: JSDConfig, caption_token_ids, feats_train) -> None:
    if cfg.pec and (caption_token_ids is None or len(caption_token_ids) != len(feats_train.caption_to_image)):
        raise ValueError("cfg.pec=True needs caption_token_ids: one id tensor per training caption "
                         "(jsdlib.jsd.vocab.caption_token_ids(captions, jsdlib.vlp.minilm.minilm_tokenizer()))")


def _pec_mask(z_t: torch.Tensor, cols: torch.Tensor, caps: torch.Tensor, caption_token_ids, p: float,
              gen: torch.Generator, vocab_size: int) -> torch.Tensor:
    """Probabilistic expansion control (D2S): with probability ``p`` (one draw per batch) every caption's ``z``
    is masked to the vocabulary ids of its own tokens, ``z_t <- z_t * 1[j in tokens(caption)]``.

    ``z_t`` holds only the active columns ``cols``. With ``p = 0`` nothing is drawn (runs without PEC keep
    their random stream).
    """
    if p <= 0 or float(torch.rand((), generator=gen)) >= p:
        return z_t
    mask = bag_mask([caption_token_ids[c] for c in caps.tolist()], vocab_size)[:, cols.cpu()]
    return z_t * mask.to(z_t.device)


# ----------------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------------
def within_budget(val: dict, cfg: JSDConfig) -> bool:
    """Whether validation sparsity meets ``cfg.max_terms_q`` / ``cfg.max_terms_d`` (None = no limit)."""
    return ((cfg.max_terms_q is None or val["terms_q"] <= cfg.max_terms_q)
            and (cfg.max_terms_d is None or val["terms_d"] <= cfg.max_terms_d))


def _data_id(feats) -> str:
    return f"{getattr(feats, 'key', '')}:{tuple(feats.text.shape)}:{tuple(feats.image.shape)}"


def _precision(cfg: JSDConfig) -> str:
    """What runs: ``"fp16-amp"`` on CUDA with ``cfg.amp``; ``"bf16-autocast"`` on CPU when ``cfg.cpu_bf16`` asks
    and :func:`jsdlib.common.hardware.cpu_bf16` grants it (native bf16 only: emulated bf16 is ~2.4x slower than
    fp32); else ``"fp32"``. A checkpoint refuses to resume in another precision."""
    device = torch.device(cfg.device)
    if cfg.amp and device.type == "cuda":
        return "fp16-amp"
    return "bf16-autocast" if device.type == "cpu" and cpu_bf16(cfg.cpu_bf16) else "fp32"


class _SparseTask(Task):
    """What JSD and D2S share as a :class:`jsdlib.common.fit.Task`: the model (built by the subclass), batches of
    (caption, image) indices over the cached features, the sparse side of a batch with PEC, tau clamped after each
    step, and model selection on validation sparse R@1 among the epochs within the sparsity budget
    (:func:`within_budget`). Subclasses set ``kind`` and define :meth:`build`, :meth:`lr` and :meth:`batch_loss`."""

    kind = ""

    def __init__(self, feats_train, feats_val, cfg: JSDConfig, E_init, special_ids, caption_token_ids,
                 precision: str, flops_band: tuple[float, float] | None = None, vocab=None):
        device = torch.device(cfg.device)
        self.cfg, self.feats_train, self.feats_val, self.ids = cfg, feats_train, feats_val, caption_token_ids
        self.word_targets = None
        if cfg.caption_words_weight > 0:     # issue 14's caption-word loss (jsdlib.jsd.caption_words)
            if caption_token_ids is None or vocab is None:
                raise ValueError("cfg.caption_words_weight > 0 needs caption_token_ids and vocab (FeatureSet's)")
            self.word_targets = CaptionWordTargets(caption_token_ids, feats_train.caption_to_image, vocab,
                                                   q=cfg.caption_words_q)
        self.model = self.build(feats_train, cfg, E_init, special_ids, vocab).to(device)
        self.params = self.model.trainable()
        self.h_t, self.h_i = feats_train.text.to(device).float(), feats_train.image.to(device).float()
        self.total = cfg.epochs * steps_per_epoch(feats_train, cfg)
        self.bf16, self.pec_p = precision == "bf16-autocast", 0.0
        self.unselectable = (f"no epoch met the sparsity budget (max_terms_q={cfg.max_terms_q}, "
                             f"max_terms_d={cfg.max_terms_d})")
        if flops_band is not None:
            lo, hi = (float(x) for x in flops_band)
            if not 0 < lo < hi:
                raise ValueError(f"flops_band must be (lo, hi) with 0 < lo < hi, got {flops_band}")
            self.flops_band = (lo, hi)
            self.ident_extra = f"{self.ident_extra}+flops{lo:.6g}-{hi:.6g}-only"
            self.unselectable = f"no epoch within validation FLOPs [{lo:.3g}, {hi:.3g}]"

    ident_extra = ""    # appended to the run identity by tasks with settings outside JSDConfig
    flops_band = None   # (lo, hi): only epochs whose validation FLOPs lie inside are selectable

    def build(self, feats_train, cfg: JSDConfig, E_init, special_ids, vocab=None) -> JSDModel:
        raise NotImplementedError

    def lr(self) -> float:
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        """AdamW's parameter groups: by default one, every trainable parameter at :meth:`lr` and the config's
        weight decay."""
        return [{"params": self.params}]

    def batch_loss(self, h_t, h_i, caps, gen: torch.Generator, step: int):
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        c = self.cfg
        self.pec_p = pec_probability(epoch - 1, c.epochs, c.pec_decay_frac, c.pec_floor) if c.pec else 0.0
        self.model.train()

    def batches(self, epoch: int, gen: torch.Generator) -> list:
        return epoch_batches(self.feats_train, self.cfg.batch_size, gen, self.cfg.sampling, self.cfg.drop_duplicates)

    def loss(self, batch, step: int, gen: torch.Generator):
        caps, imgs = batch
        dev = self.h_t.device
        return self.batch_loss(self.h_t[caps.to(dev)], self.h_i[imgs.to(dev)], caps, gen, step)

    def sparse(self, d_t, d_i, caps, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z_t, z_i)`` on the active columns (:meth:`SparseHead.forward_active`), captions masked by PEC."""
        z, cols = self.model.head.forward_active(torch.cat([d_t, d_i]))
        z_t, z_i = z[:len(d_t)], z[len(d_t):]
        return _pec_mask(z_t, cols, caps, self.ids, self.pec_p, gen, self.model.head.vocab_size), z_i

    def eta(self, eta_max: float, step: int) -> float:
        return reg_weight(step, self.total, eta_max, self.cfg.reg_warmup_frac)

    def after_step(self) -> None:
        self.model.clamp_tau_(self.cfg.tau_min, self.cfg.tau_max)

    def validate(self, epoch: int) -> tuple[dict, float | None]:
        c = self.cfg
        val = evaluate_model(self.model, self.feats_val, c.w1, c.w2, c.device, c.eval_batch, bf16=self.bf16)
        ok = within_budget(val, c)
        fields = {"val": val, "tau": float(self.model.tau.detach()), "within_budget": ok}
        if self.flops_band is not None:     # the band is the sparsity constraint: it replaces the terms budget
            ok = fields["in_flops_band"] = self.flops_band[0] <= val["flops"] <= self.flops_band[1]
        return fields, (val["sparse"]["R@1"] if ok else None)

    def epoch_line(self, row: dict) -> str:
        val = row["val"]
        return (f"{self.kind} epoch {row['epoch']:3d}  loss {row.get('loss', float('nan')):.4f}  "
                f"val sparse R@1 {val['sparse']['R@1']:.2f}  dense R@1 {val['dense']['R@1']:.2f}  "
                f"terms q/d {val['terms_q']:.0f}/{val['terms_d']:.0f}  {row['epoch_s']:.1f}s")


class _JSDTask(_SparseTask):
    """JSD: projections, head and tau trained with :func:`jsdlib.jsd.losses.jsd_loss`."""

    kind = "jsd"

    def build(self, feats_train, cfg: JSDConfig, E_init, special_ids, vocab=None) -> JSDModel:
        return build_model(feats_train, cfg, E_init, special_ids, vocab=vocab)

    def lr(self) -> float:
        return self.cfg.lr

    def batch_loss(self, h_t, h_i, caps, gen: torch.Generator, step: int):
        m, c = self.model, self.cfg
        d_t, d_i = m.dense_text(h_t), m.dense_image(h_i)
        z_t, z_i = self.sparse(d_t, d_i, caps, gen)
        loss, parts = jsd_loss(dense_score(d_i, d_t, m.tau), sparse_score(z_i, z_t), z_t, z_i,
                               w1=c.w1, w2=c.w2, lam1=c.lam1, lam2=c.lam2, eta_t=self.eta(c.eta_t, step),
                               eta_i=self.eta(c.eta_i, step), use_self_kd=c.self_kd, detach_teacher=c.detach_teacher,
                               teacher_transpose_quirk=c.teacher_transpose_quirk, reg=c.regulariser)
        if self.word_targets is not None:   # + caption_words_weight * L_words (jsdlib.jsd.caption_words)
            w, c2i = self.word_targets, self.feats_train.caption_to_image
            targets = [w.image(int(c2i[j])) for j in caps.tolist()]
            d = d_i
            if c.caption_words_on == "both":
                targets, d = targets + [w.caption(j) for j in caps.tolist()], torch.cat([d_i, d_t])
            parts["L_words"] = caption_word_loss(m.head.logits(d), targets)
            loss = parts["loss"] = loss + c.caption_words_weight * parts["L_words"]
        return loss, parts


class _D2STask(_SparseTask):
    """D2S: the head alone, distilled from the frozen dense embeddings with :func:`jsdlib.jsd.losses.d2s_loss`."""

    kind = "d2s"

    def build(self, feats_train, cfg: JSDConfig, E_init, special_ids, vocab=None) -> JSDModel:
        m = build_model(feats_train, cfg, E_init, special_ids, freeze_final=True, tau_init=cfg.d2s_tau, vocab=vocab)
        m.tau.requires_grad_(False)  # no gradient reaches it (teacher under no_grad); keep it out of AdamW
        return m

    def lr(self) -> float:
        return self.cfg.lr if self.cfg.d2s_lr is None else self.cfg.d2s_lr

    def batch_loss(self, h_t, h_i, caps, gen: torch.Generator, step: int):
        m, c = self.model, self.cfg
        with torch.no_grad():
            d_t, d_i = m.dense_text(h_t), m.dense_image(h_i)
        z_t, z_i = self.sparse(d_t, d_i, caps, gen)
        eta_t = c.eta_t if c.d2s_eta_t is None else c.d2s_eta_t
        eta_i = c.eta_i if c.d2s_eta_i is None else c.d2s_eta_i
        return d2s_loss(sparse_score(z_i, z_t), d_i @ d_t.T, m.tau, z_t, z_i, eta_t=self.eta(eta_t, step),
                        eta_i=self.eta(eta_i, step), reg=c.regulariser)


class _D2SOwnTask(_D2STask):
    """D2S in its own recipe (:class:`jsdlib.jsd.presets.D2SRecipe`): the same loss and frozen dense side as
    :class:`_D2STask`, two AdamW groups without weight decay -- ``lr_pretrained`` for the head's LayerNorm and
    vocabulary layer ``E``, ``lr_new`` for the projection ``W_p`` (D2S's ``proj``; its tau gets no gradient and
    stays out of the optimiser here, which changes nothing: AdamW skips a parameter without gradient)."""

    kind = "d2s_own"

    def __init__(self, *args, recipe: D2SRecipe, **kw):
        self.recipe = recipe
        self.ident_extra = f"+{recipe.digest()}"
        super().__init__(*args, **kw)

    def param_groups(self) -> list[dict]:
        h, r = self.model.head, self.recipe
        return [{"params": [*h.norm.parameters(), h.E], "lr": r.lr_pretrained, "weight_decay": r.weight_decay},
                {"params": list(h.proj.parameters()), "lr": r.lr_new, "weight_decay": r.weight_decay}]


def build_optimizer(task: _SparseTask, cfg: JSDConfig) -> torch.optim.AdamW:
    """AdamW over ``task.param_groups()`` (groups without their own lr / weight decay take ``task.lr()`` and
    ``cfg.weight_decay``)."""
    return torch.optim.AdamW(task.param_groups(), lr=task.lr(), betas=cfg.betas, eps=cfg.eps,
                             weight_decay=cfg.weight_decay, fused=True)  # fused: ~4x faster on CPU for E


# ----------------------------------------------------------------------------------------------
# The trainers
# ----------------------------------------------------------------------------------------------
def _train(task_cls: type[_SparseTask], feats_train, feats_val, cfg: JSDConfig, seed: int | None, E_init,
           special_ids, caption_token_ids, run_dir=None, resume: bool = True, progress: bool = True,
           stop_after_epoch: int | None = None, log=print, flops_band: tuple[float, float] | None = None,
           vocab=None) -> dict:
    """What JSD and D2S share: the seed override, the PEC check, threads and a seeded model init, AdamW with
    warm-up/decay, and :func:`jsdlib.common.fit.fit` (early stopping on val sparse R@1, resumable ``run_dir``)."""
    cfg = cfg if seed is None else cfg.replace(seed=seed)
    _check_pec(cfg, caption_token_ids, feats_train)
    precision = _precision(cfg)
    keep_freed_memory()   # the same numbers, ~13 % faster on CPU (jsdlib.common.hardware)
    with num_threads(cfg.threads), seeded(cfg.seed):
        task = task_cls(feats_train, feats_val, cfg, E_init, special_ids, caption_token_ids, precision,
                        flops_band=flops_band, vocab=vocab)
        opt = build_optimizer(task, cfg)
        sched = warmup_decay(opt, task.total, cfg.warmup_frac)
        fcfg = FitConfig(epochs=cfg.epochs, grad_clip=cfg.grad_clip, patience=cfg.patience, precision=precision,
                         device=cfg.device)
        ident = f"{task.kind}{task.ident_extra}:{cfg.digest()}:{_data_id(feats_train)}:{_data_id(feats_val)}"
        return fit(task, opt, sched, generator(cfg.seed), fcfg, ident=ident, run_dir=run_dir, resume=resume,
                   progress=progress, log=log, log_epochs=progress, desc=task.kind, stop_after_epoch=stop_after_epoch)


def train_jsd(feats_train, feats_val, cfg: JSDConfig, run_dir=None, resume: bool = True, progress: bool = True,
              seed: int | None = None, E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
              caption_token_ids: Sequence[torch.Tensor] | None = None, stop_after_epoch: int | None = None,
              log=print, vocab=None) -> dict:
    """Train JSD on cached features; returns ``{"model" (best checkpoint), "history", "best", ...}``.

    ``seed`` overrides ``cfg.seed`` (model init and the batch generator). ``run_dir``: resumable checkpoints
    (``last.pt`` each epoch, ``best.pt``); a killed run resumes bit for bit. ``stop_after_epoch`` ends the
    call early on purpose (tests). ``cfg.pec``: probabilistic expansion control on the captions, as in
    :func:`train_d2s` (needs ``caption_token_ids``); off in the paper presets, on for the bundled model.
    ``vocab``: the :class:`~jsdlib.jsd.vocab.Vocabulary` of ``E_init``'s rows, needed by ``cfg.vocab_mask``.
    """
    return _train(_JSDTask, feats_train, feats_val, cfg, seed, E_init, special_ids, caption_token_ids,
                  run_dir=run_dir, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch, log=log,
                  vocab=vocab)


def train_d2s(feats_train, feats_val, cfg: JSDConfig, run_dir=None, resume: bool = True, progress: bool = True,
              seed: int | None = None, E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
              caption_token_ids: Sequence[torch.Tensor] | None = None, stop_after_epoch: int | None = None,
              log=print, flops_band: tuple[float, float] | None = None, vocab=None) -> dict:
    """Train the D2S baseline: the sparse head alone on the frozen original dense embeddings.

    Loss :func:`~jsdlib.jsd.losses.d2s_loss` with ``tau_d = cfg.d2s_tau`` and L1 weights ``cfg.d2s_eta_t/i``
    (default: JSD's). ``cfg.pec``: probabilistic expansion control -- in each batch, with probability
    ``p = pec_probability(epoch)`` (1 -> 0 over 95 % of the epochs, per batch as in D2S's code) the captions'
    ``z`` are masked to their own token ids (``caption_token_ids``, one tensor per training caption). Validation
    and test use unmasked captions.

    ``flops_band=(lo, hi)``: model selection among the epochs whose validation FLOPs lie in ``[lo, hi]``
    (:func:`jsdlib.jsd.matching.match_d2s_l1` uses it to compare at JSD's FLOPs); the band then replaces the
    config's terms budget (``max_terms_q/d``), which a D2S epoch at JSD's FLOPs can exceed (more terms, less
    overlap); with no epoch inside, the last epoch is kept, as for an unmet sparsity budget.
    """
    return _train(_D2STask, feats_train, feats_val, cfg, seed, E_init, special_ids, caption_token_ids,
                  run_dir=run_dir, resume=resume, progress=progress, stop_after_epoch=stop_after_epoch, log=log,
                  flops_band=flops_band, vocab=vocab)


def train_d2s_own(feats_train, feats_val, cfg: JSDConfig, recipe: D2SRecipe | None = None, run_dir=None,
                  resume: bool = True, progress: bool = True, seed: int | None = None,
                  E_init: torch.Tensor | None = None, special_ids: Sequence[int] | None = None,
                  caption_token_ids: Sequence[torch.Tensor] | None = None, stop_after_epoch: int | None = None,
                  log=print, flops_band: tuple[float, float] | None = None, vocab=None) -> dict:
    """D2S in its own recipe (``recipe``, default :class:`~jsdlib.jsd.presets.D2SRecipe`: lr 5e-5 for LayerNorm
    + ``E`` and 1e-3 for ``W_p``, no weight decay, batch 512, ``tau = 1e-3``, L1 1e-3, no clipping, an epoch over
    every caption pair); epochs, patience, seed and PEC come from ``cfg``. Loss
    ``1/2 [CE(S_s, softmax(S_d / tau)) + CE(S_s^T, softmax(S_d^T / tau))] + 1/2 [eta_t L1(Z_t) + eta_i L1(Z_i)]``
    as in :func:`train_d2s`.

    The head does NOT start from a DistilBERT MLM head (D2S's init): those weights are not available offline
    and their vocabulary layer would have to match the VLP's tokenizer. ``E`` is copied from the text tower's
    word embeddings ``E_init`` (JSD's init), ``W_p`` and the LayerNorm take PyTorch's default init; so the
    ``lr_pretrained`` group starts from word embeddings, not from a trained MLM head. ``flops_band``: as in
    :func:`train_d2s`.
    """
    recipe = D2SRecipe() if recipe is None else recipe
    return _train(partial(_D2SOwnTask, recipe=recipe), feats_train, feats_val, recipe.config(cfg), seed, E_init,
                  special_ids, caption_token_ids, run_dir=run_dir, resume=resume, progress=progress,
                  stop_after_epoch=stop_after_epoch, log=log, flops_band=flops_band, vocab=vocab)


__all__ = ["pec_probability", "within_budget", "build_optimizer", "train_jsd", "train_d2s", "train_d2s_own"]
