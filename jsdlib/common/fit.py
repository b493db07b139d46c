"""The one resumable training loop of jsdlib: a *task* ties a model to its batches, loss and validation; :func:`fit`
runs every trainer (the stand-in VLP, the bi-encoder, JSD, D2S, CMC) the same way.

Per step: ``loss = task.loss(batch)`` (under bf16 autocast or fp16 autocast with loss scaling when asked),
``zero_grad``, ``backward``, clip the gradient norm of ``task.params`` to ``grad_clip``, optimiser step, scheduler
step, ``task.after_step()`` (JSD clamps its temperature there). Per epoch: the mean of each loss part over the
epoch's batches, ``task.validate(epoch)`` -> (metrics row, selection key), model selection on the key (higher is
better; ``None`` = the epoch may not be chosen, e.g. over JSD's sparsity budget), early stopping after
``patience`` epochs without a better key (counted from the first selectable epoch), and a checkpoint.

Checkpoints (``run_dir``; :mod:`jsdlib.common.checkpoint`): ``last.pt`` after every epoch (weights, optimiser,
scheduler, loss scaler, the batch generator, torch's global RNG when dropout draws from it, the loop's history)
and ``best.pt`` (the best weights), and the marker of a finished run; :func:`fit` holds the folder's lock
(:mod:`jsdlib.common.runlock`) while it trains. A killed run resumes bit for bit: same draws in the same order, same optimiser,
scheduler and scaler steps. A ``last.pt`` of another run (other ``ident``) or of another precision is refused; an
unreadable one is discarded with a warning and the run starts over.

No global state leaks: torch's global RNG is forked for the call (the caller's state is put back), so a trainer
seeds it with :func:`jsdlib.common.seeding.seeded` around model initialisation and :func:`fit`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from jsdlib.common.checkpoint import load_checkpoint, open_run, save_state
from jsdlib.common.integrity import IntegrityError, discard_derived
from jsdlib.common.io import save_torch
from jsdlib.common.runlock import mark_finished, run_lock

PRECISIONS = ("fp32", "bf16-autocast", "fp16-amp")
FORMAT = "fit1"     # prefix of every run identity; jsdlib 0.1's loops wrote the bare identity


class Task:
    """What :func:`fit` trains: subclass it and set ``model`` and ``params`` (what AdamW and clipping see).

    Required: :meth:`batches`, :meth:`loss`, :meth:`validate`. The other methods have defaults.
    """

    model: nn.Module
    params: list

    def batches(self, epoch: int, gen: torch.Generator) -> Sequence:
        """One epoch's batches (epoch counts from 1); draws from ``gen`` in the order the batches need."""
        raise NotImplementedError

    def loss(self, batch, step: int, gen: torch.Generator) -> tuple[Tensor, dict]:
        """``(loss, parts)`` of one batch; ``step`` is the global 0-based step. ``parts`` (floats or 0-d tensors)
        are averaged over the epoch into the history row; include ``"loss"`` to have it there."""
        raise NotImplementedError

    def validate(self, epoch: int) -> tuple[dict, object]:
        """``(fields of the history row, selection key)`` after an epoch. The key is a number or a tuple compared
        lexicographically, higher is better; ``None``: this epoch may not be selected."""
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        """Called before an epoch's batches are drawn: set train mode (default), epoch-wise schedules."""
        self.model.train()

    def after_step(self) -> None:
        """Called after each optimiser and scheduler step (e.g. clamp a temperature)."""

    def epoch_means(self, parts: dict[str, list[float]], n_batches: int) -> dict[str, float]:
        """The epoch's value of each loss part: the sum over its batches / the number of batches."""
        return {k: sum(v) / n_batches for k, v in parts.items()}

    def state_dict(self) -> dict:
        """The weights a checkpoint holds (default: the whole model's)."""
        return self.model.state_dict()

    def load_state_dict(self, sd: dict) -> None:
        self.model.load_state_dict(sd)

    def epoch_line(self, row: dict) -> str:
        """The log line of an epoch."""
        return f"epoch {row['epoch']:3d}  loss {row.get('loss', float('nan')):.4f}  {row['epoch_s']:.1f}s"

    unselectable: str = "no epoch was selectable"   # logged when validate never returned a key


@dataclass(frozen=True)
class FitConfig:
    """How :func:`fit` steps: epochs, gradient clipping (``None``: off), early-stopping ``patience`` (``None``:
    off), ``precision`` (``"fp32"``, ``"bf16-autocast"``, ``"fp16-amp"`` = fp16 autocast + GradScaler, CUDA
    only), ``device`` (autocast's device type; the CUDA RNG is saved there), ``global_rng``: save and restore
    torch's global RNG in checkpoints (dropout draws from it)."""

    epochs: int
    grad_clip: float | None = 1.0
    patience: int | None = None
    precision: str = "fp32"
    device: str = "cpu"
    global_rng: bool = False

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.precision == "fp16-amp" and torch.device(self.device).type != "cuda":
            raise ValueError("precision='fp16-amp' needs a CUDA device; use 'bf16-autocast' or 'fp32' on CPU")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.patience is not None and self.patience < 1:
            raise ValueError(f"patience must be >= 1 or None, got {self.patience}")


class _Weights:
    """The task's checkpointed weights seen as a module (what :mod:`jsdlib.common.checkpoint` saves / loads)."""

    def __init__(self, task: Task):
        self.task = task

    def state_dict(self) -> dict:
        return self.task.state_dict()

    def load_state_dict(self, sd: dict, strict: bool = True) -> None:
        self.task.load_state_dict(sd)


def _key(k) -> tuple | None:
    return None if k is None else tuple(k) if isinstance(k, (tuple, list)) else (k,)


@contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    """torch's global RNG (and the device's CUDA RNG) as it was before the block, after it."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


def _autocast(cfg: FitConfig):
    if cfg.precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.precision == "bf16-autocast" else torch.float16
    return torch.autocast(device_type=torch.device(cfg.device).type, dtype=dtype)


def _rng_state(device: torch.device) -> dict:
    out = {"torch_rng": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda_rng"] = torch.cuda.get_rng_state(device)
    return out


def _check_precision(extra: dict, precision: str, run_dir) -> None:
    was = extra.get("precision", precision)
    if was != precision:
        raise ValueError(f"{run_dir}/last.pt was trained in {was}, this run uses {precision}: "
                         f"set JSDLIB_CPU_BF16={int(was == 'bf16-autocast')} to resume it, or "
                         "resume=False / a new run folder to start over")


def _step(task: Task, batch, step: int, gen, opt, sched, scaler, cfg: FitConfig) -> tuple[Tensor, dict]:
    """One optimiser step on ``batch``: loss (autocast), backward (scaled), clip, step, schedule, after_step."""
    with _autocast(cfg):
        loss, parts = task.loss(batch, step, gen)
    opt.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(task.params, cfg.grad_clip)
    scaler.step(opt)
    scaler.update()
    sched.step()
    task.after_step()
    return loss, parts


def _train_epoch(task: Task, epoch: int, state: dict, gen, opt, sched, scaler, cfg: FitConfig, bar_desc: str,
                 progress: bool) -> tuple[dict, int]:
    """One epoch of steps; returns (the epoch's mean loss parts, number of batches)."""
    task.start_epoch(epoch)
    batches = task.batches(epoch, gen)
    parts_seen: dict[str, list[float]] = {}
    bar = tqdm(batches, desc=f"{bar_desc} epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
    for batch in bar:
        loss, parts = _step(task, batch, state["step"], gen, opt, sched, scaler, cfg)
        state["step"] += 1
        for k, v in parts.items():
            parts_seen.setdefault(k, []).append(float(v.detach()) if isinstance(v, Tensor) else float(v))
        bar.set_postfix(loss=f"{loss.item():.3f}")
    return task.epoch_means(parts_seen, len(batches)), len(batches)


def fit(task: Task, opt: torch.optim.Optimizer, sched, gen: torch.Generator, cfg: FitConfig, *, ident: str,
        run_dir: str | Path | None = None, resume: bool = True, progress: bool = True, log: Callable = print,
        log_epochs: bool = True, desc: str = "train", stop_after_epoch: int | None = None,
        on_best: Callable[[dict], None] | None = None) -> dict:
    """Train ``task`` for ``cfg.epochs`` epochs (see the module docstring); the best weights are loaded at the end.

    ``ident`` names the run (config digest + data) in its checkpoints; ``run_dir=None`` keeps nothing on disk.
    ``stop_after_epoch`` returns early on purpose (tests of resumption) with ``"stopped_at"``. ``on_best(row)``
    is called when an epoch becomes the best. ``log_epochs=False`` silences the per-epoch lines only.
    Returns ``{"model", "history", "best" (its row), "best_key", "bad_epochs", "done", "epoch", "step",
    "precision", "train_time_s" | "stopped_at"}``; when no epoch was selectable, ``best`` is the last row and
    the last weights stay.
    """
    device = torch.device(cfg.device)
    scaler = torch.amp.GradScaler("cuda", enabled=cfg.precision == "fp16-amp")
    state = {"epoch": 0, "history": [], "best": None, "best_key": None, "bad_epochs": 0, "done": False, "step": 0}
    if run_dir is not None and resume:
        _drop_old_format(Path(run_dir), ident)
    ident = f"{FORMAT}:{ident}"
    # one process at a time in a run folder (jsdlib.common.runlock): a second caller waits, then resumes the
    # finished run and only loads it
    with run_lock(run_dir) if run_dir is not None else nullcontext(), _forked_rng(device):
        run_dir, state, best_sd = _open(task, opt, sched, gen, scaler, cfg, state, ident, run_dir, resume, desc, log)
        t0 = time.time()
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if state["done"]:
                break
            te = time.time()
            means, _ = _train_epoch(task, epoch, state, gen, opt, sched, scaler, cfg, desc, progress)
            train_s = time.time() - te
            fields, key = task.validate(epoch)
            row = {"epoch": epoch, **means, **fields, "train_s": round(train_s, 3),
                   "epoch_s": round(time.time() - te, 3), "selectable": key is not None}
            state["history"].append(row)
            best_sd = _select(task, state, row, _key(key), best_sd, run_dir, on_best)
            state["epoch"] = epoch
            if cfg.patience is not None and state["bad_epochs"] >= cfg.patience:
                state["done"] = True
            if run_dir is not None:
                save_state(run_dir / "last.pt", ident, _Weights(task), opt, sched, gen, state,
                           scaler=scaler.state_dict(), precision=cfg.precision,
                           **(_rng_state(device) if cfg.global_rng else {}))
            if log_epochs:      # after the checkpoint: a run killed once an epoch is reported resumes after it
                log(task.epoch_line(row))
            if stop_after_epoch is not None and stop_after_epoch <= epoch < cfg.epochs and not state["done"]:
                return {"model": task.model, "stopped_at": epoch, "precision": cfg.precision, **state}
        if run_dir is not None:
            mark_finished(run_dir, ident)
        if best_sd is not None:
            task.load_state_dict(best_sd)
        elif state["history"]:  # no epoch was selectable: keep the last one and say so
            state["best"] = state["history"][-1]
            log(f"{desc}: {task.unselectable}; keeping the last epoch")
    task.model.eval()
    return {"model": task.model, "train_time_s": time.time() - t0, "precision": cfg.precision, **state}


def _open(task: Task, opt, sched, gen, scaler, cfg: FitConfig, state: dict, ident: str, run_dir, resume: bool,
          desc: str, log) -> tuple[Path | None, dict, dict | None]:
    """Resume from ``run_dir/last.pt`` when asked and present (:func:`jsdlib.common.checkpoint.open_run`): weights,
    optimiser, scheduler, generator, loss scaler, and torch's global RNG when ``cfg.global_rng``.
    Returns ``(run_dir, loop state, best weights or None)``."""
    run_dir, state, extra, best_sd = open_run(run_dir, ident, _Weights(task), opt, sched, gen, state, resume, desc,
                                              log)
    _check_precision(extra, cfg.precision, run_dir)
    if "scaler" in extra:
        scaler.load_state_dict(extra["scaler"])
    if cfg.global_rng and "torch_rng" in extra:
        torch.set_rng_state(extra["torch_rng"])
        device = torch.device(cfg.device)
        if "cuda_rng" in extra and device.type == "cuda":
            torch.cuda.set_rng_state(extra["cuda_rng"], device)
    return run_dir, state, best_sd


def _drop_old_format(run_dir: Path, ident: str) -> None:
    """A ``last.pt`` of this very run written by jsdlib 0.1's loops (bare identity, no ``best_key``) cannot be
    resumed exactly: discard it (and its ``best.pt``) with a warning so the run starts over."""
    last = run_dir / "last.pt"
    if not last.is_file():
        return
    try:
        old = load_checkpoint(last).get("ident") == ident
    except IntegrityError:
        return  # open_run reports and discards it
    if old:
        for p in (last, run_dir / "best.pt"):
            if p.exists():
                discard_derived(p, "written by jsdlib 0.1's training loop, which fit cannot resume")


def _select(task: Task, state: dict, row: dict, key: tuple | None, best_sd, run_dir, on_best) -> dict | None:
    """Model selection after an epoch: a strictly better key makes ``row`` the best (weights kept in memory and
    in ``best.pt``); otherwise, once some epoch was selectable, one more epoch without improvement."""
    if key is not None and (state["best_key"] is None or key > tuple(state["best_key"])):
        state["best"], state["best_key"], state["bad_epochs"] = row, list(key), 0
        best_sd = {k: v.detach().cpu().clone() for k, v in task.state_dict().items()}
        if run_dir is not None:
            save_torch(best_sd, Path(run_dir) / "best.pt")
        if on_best is not None:
            on_best(row)
    elif state["best"] is not None:  # patience runs from the first selectable epoch
        state["bad_epochs"] += 1
    return best_sd


__all__ = ["Task", "FitConfig", "fit", "PRECISIONS"]
