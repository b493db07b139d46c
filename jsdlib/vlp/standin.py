"""Contrastive training of the stand-in VLP on the bundled emoji train split.

The stand-in plays BLIP/ALBEF's role on the CPU path: a "pretrained" dual encoder whose final
projections and sparse head JSD later fine-tunes. Its text tower is the pretrained MiniLM, kept
frozen (so the sparse head's ``E`` starts from real word embeddings), and its small ViT image tower
is trained from scratch here with the CLIP loss

    L = 1/2 [ CE(s * V T^T, y) + CE(s * T V^T, y) ],   s = exp(logit_scale) <= 100,   y = arange(B)

where V, T are the L2-normalised image and caption embeddings of a batch. With ``all_captions`` (the
default) the loss is averaged over each caption slot (the emoji set: the name caption and the keyword
caption of every image), so each costly image forward pass is matched against all of its captions;
otherwise one random caption per image is used. Because MiniLM is frozen, its pooled caption features are computed once and only its
projection is trained: the same maths as running the frozen tower every step, far cheaper.

Checkpoints are written atomically every epoch (model, optimiser, scheduler, RNG, history) so a killed
run resumes where it stopped and ends with the same weights as an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from jsdlib.vlp import models as vlp_mod
from jsdlib.common.checkpoint import restore_state, save_state
from jsdlib.data.datasets import load_emoji
from jsdlib.common.metrics import t2i_metrics


@dataclass
class StandinConfig:
    """Hyperparameters of the stand-in's contrastive training (chosen on the validation split)."""

    epochs: int = 80
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_frac: float = 0.1
    min_scale: float = 0.7          # random-resized-crop area scale (no flips: arrows and text have a side)
    max_shift: float = 0.1          # random translation, fraction of the image
    all_captions: bool = True       # each step: the CLIP loss averaged over every caption of the images
    seed: int = 0
    threads: int = 2
    # architecture (``jsdlib.vlp.models.standin_config``)
    image_size: int = 64
    patch_size: int = 16
    width: int = 192
    layers: int = 6
    embed_dim: int = 256

    def arch(self) -> dict:
        return {"image_size": self.image_size, "patch_size": self.patch_size, "width": self.width,
                "layers": self.layers, "embed_dim": self.embed_dim}

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def clip_loss(img: torch.Tensor, txt: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE of CLIP: ``1/2 [CE(s V T^T, y) + CE(s T V^T, y)]`` on normalised embeddings."""
    logits = logit_scale.exp().clamp(max=100) * img @ txt.T
    y = torch.arange(len(img))
    return 0.5 * (F.cross_entropy(logits, y) + F.cross_entropy(logits.T, y))


def caption_slots(caps_of: list[torch.Tensor], idx: torch.Tensor, gen: torch.Generator,
                  all_captions: bool) -> list[torch.Tensor]:
    """Caption indices to pair with the images ``idx``: one tensor per slot.

    ``all_captions``: slot c holds each image's c-th caption (c < the smallest caption count in the batch;
    the rest of an image's captions are not used that step). Otherwise a single slot with one random
    caption per image.
    """
    if all_captions:
        n = min(len(caps_of[i]) for i in idx)
        return [torch.stack([caps_of[i][c] for i in idx]) for c in range(n)]
    return [torch.stack([caps_of[i][torch.randint(len(caps_of[i]), (1,), generator=gen)][0] for i in idx])]


def augment(x: torch.Tensor, gen: torch.Generator, min_scale: float, max_shift: float) -> torch.Tensor:
    """Random zoom-in crop + shift of a normalised image batch, one affine warp per image (no flips)."""
    b = x.shape[0]
    scale = torch.sqrt(min_scale + (1 - min_scale) * torch.rand(b, generator=gen))  # side fraction kept
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * max_shift * 2             # grid units: [-1, 1]
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def lr_factor(step: int, total: int, warmup: int) -> float:
    """Linear warm-up to 1 over ``warmup`` steps, then cosine decay to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@torch.no_grad()
def _pooled_text(model, tokenizer, captions, batch_size=256) -> torch.Tensor:
    out = []
    with vlp_mod.pre_projection(model):
        for s in range(0, len(captions), batch_size):
            out.append(model.encode_text(vlp_mod.tokenize(model, tokenizer, captions[s:s + batch_size])))
    return torch.cat(out)


@torch.no_grad()
def _images(split, preprocess) -> torch.Tensor:
    return torch.stack([preprocess(split.load_image(i)) for i in range(len(split))])


@torch.no_grad()
def evaluate(model, images: torch.Tensor, text_pooled: torch.Tensor, caption_to_image) -> dict:
    """t2i metrics of the current model on preprocessed images and cached pooled caption features."""
    model.eval()
    v = torch.cat([model.encode_image(images[s:s + 256], normalize=True) for s in range(0, len(images), 256)])
    t = F.normalize(model.text.proj(text_pooled), dim=-1)
    return t2i_metrics((t @ v.T).numpy(), caption_to_image)


class _Trained:
    """Checkpoint view of the stand-in: only its trained part (the MiniLM body comes from its package)."""

    def __init__(self, model):
        self.model = model

    def state_dict(self):
        return vlp_mod.standin_state_dict(self.model)


def save_standin(model, path: Path, arch: dict, info: dict) -> None:
    """Write the trained part of the stand-in as safetensors (atomic), architecture, provenance and a content
    digest in the header (:func:`jsdlib.common.integrity.save_safetensors`)."""
    from jsdlib.common.integrity import save_safetensors

    save_safetensors(vlp_mod.standin_state_dict(model), path, {"arch": json.dumps(arch), "info": json.dumps(info)})


def train_standin(cfg: StandinConfig | None = None, out: str | Path | None = None,
                  run_dir: str | Path | None = None, resume: bool = True, progress: bool = True,
                  stop_after_epoch: int | None = None, log=print, train=None, val=None) -> dict:
    """Train the stand-in and write the best-on-validation weights to ``out``.

    ``run_dir`` holds ``last.pt`` (full training state, saved each epoch) for resuming after a kill;
    ``stop_after_epoch`` ends the call early on purpose (used to test resumption); ``train``/``val``
    replace the emoji splits (tests pass small subsets). Returns a summary with
    the per-epoch history and the best validation metrics.
    """
    from tqdm.auto import tqdm

    cfg = cfg or StandinConfig()
    out = Path(out or vlp_mod.DEFAULT_STANDIN_CHECKPOINT)
    run_dir = Path(run_dir or vlp_mod.cache_dir() / "runs" / f"standin-{cfg.digest()}")
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    model, preprocess, tokenizer = vlp_mod.build_standin(cfg.arch())
    for p in model.text.transformer.parameters():
        p.requires_grad_(False)
    params = [p for n, p in model.named_parameters() if n.startswith(vlp_mod._trainable_prefixes())]

    train = train if train is not None else load_emoji("train")
    val = val if val is not None else load_emoji("val")
    tr_images, va_images = _images(train, preprocess), _images(val, preprocess)
    tr_text = _pooled_text(model, tokenizer, train.captions)
    va_text = _pooled_text(model, tokenizer, val.captions)
    caps_of = [torch.as_tensor(c) for c in train.image_to_captions]

    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_frac * total))
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, total, warmup))
    gen = torch.Generator().manual_seed(cfg.seed)
    state = {"epoch": 0, "history": [], "best": None}

    last = run_dir / "last.pt"
    best_path = run_dir / "best.safetensors"
    if resume and last.exists():
        state, extra = restore_state(last, cfg.digest(), model, opt, sched, gen, strict=False)
        torch.set_rng_state(extra["torch_rng"])
        log(f"resumed from {last} after epoch {state['epoch']}")

    t0 = time.time()
    for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
        model.train()
        model.text.transformer.eval()
        order = torch.randperm(len(train), generator=gen)
        losses = []
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch}/{cfg.epochs}", disable=not progress, leave=False)
        for b in bar:
            idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            img = model.encode_image(augment(tr_images[idx], gen, cfg.min_scale, cfg.max_shift), normalize=True)
            loss = 0.0
            slots = caption_slots(caps_of, idx, gen, cfg.all_captions)
            for pick in slots:
                txt = F.normalize(model.text.proj(tr_text[pick]), dim=-1)
                loss = loss + clip_loss(img, txt, model.logit_scale) / len(slots)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{loss.item():.3f}")
        metrics = evaluate(model, va_images, va_text, val.caption_to_image)
        row = {"epoch": epoch, "loss": float(np.mean(losses)), "val": metrics, "time_s": round(time.time() - t0, 1)}
        state["history"].append(row)
        if state["best"] is None or metrics["R@1"] > state["best"]["val"]["R@1"]:
            state["best"] = row
            save_standin(model, best_path, cfg.arch(), {"epoch": epoch, "val": metrics})
        state["epoch"] = epoch
        save_state(last, cfg.digest(), _Trained(model), opt, sched, gen, state, torch_rng=torch.get_rng_state())
        log(f"epoch {epoch:3d}  loss {row['loss']:.3f}  val t2i R@1 {metrics['R@1']:.1f}  R@5 {metrics['R@5']:.1f}")
        if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch < cfg.epochs:
            return {"stopped_at": epoch, **state}

    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(best_path), framework="pt") as fh:
        best_meta = fh.metadata()
    info = {"config": dataclasses.asdict(cfg), "best_epoch": state["best"]["epoch"],
            "best_val": state["best"]["val"], "history": state["history"]}
    model.load_state_dict(load_file(str(best_path)), strict=False)
    save_standin(model, out, json.loads(best_meta["arch"]), info)
    log(f"best epoch {state['best']['epoch']} (val t2i R@1 {state['best']['val']['R@1']:.1f}) -> {out}")
    return {"out": str(out), **state}
