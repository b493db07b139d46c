"""Named JSD configurations (arXiv 2508.16707): :class:`JSDConfig` and its presets.

Paper presets: the four rows of the paper's hyperparameter table, verbatim, with the shared optimisation
settings (AdamW 0.9/0.999/1e-8, weight decay 0.05, 20 % linear warm-up then linear decay, clip 1.0,
batch 256, up to 200 epochs, patience 20 on validation sparse R@1, seed 42, fp16 on GPU), run as the authors'
code runs them (:data:`AUTHORS_RUN`): an epoch over every (caption, image) pair with duplicate images kept, and
the authors' untransposed text->image teacher.

``cpu-emoji``: the small preset for the bundled emoji features on a laptop CPU (how its values were chosen:
``docs/decisions.md``). The loader of the authors' released features lives in :mod:`jsdlib.data.released`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass


SAMPLINGS = ("images", "captions")
CAPTION_WORD_QS = ("idf", "uniform")           # jsdlib.jsd.caption_words (its target weights q)
VOCAB_MASKS = ("none", "words", "content")   # jsdlib.jsd.words (kept here too: presets import nothing of jsdlib)
# Fields added after runs were committed: at these values they are left out of the config's identity
# (:meth:`JSDConfig.identity`), so the runs and reproduce steps that never use them keep their digests.
DIGEST_NEUTRAL = {"vocab_mask": "none", "pec_floor": 0.0, "caption_words_weight": 0.0, "caption_words_on": "image",
                  "caption_words_q": "idf"}


@dataclass
class JSDConfig:
    """Every knob of JSD training (and of the D2S baseline trained next to it).

    Loss weights follow the JSD paper: ``S_x = w1 S_d + w2 S_s``; ``L = (lam1 L_dense + lam2 L_sparse + L_inter)/2``;
    ``eta_t``/``eta_i``: the maximum weights of the caption / image sparsity regulariser.
    """

    name: str = "custom"
    lr: float = 5e-5
    w1: float = 0.1
    w2: float = 0.1
    lam1: float = 0.9
    lam2: float = 0.3
    eta_t: float = 5e-4
    eta_i: float = 3e-5
    # optimisation (the JSD paper)
    batch_size: int = 256
    epochs: int = 200
    patience: int = 20
    seed: int = 42
    weight_decay: float = 0.05
    betas: tuple = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 1.0
    warmup_frac: float = 0.2           # learning-rate warm-up share of all steps
    reg_warmup_frac: float = 0.2       # T of eta(t) = eta_max min(1, t/T)^2, as a share of all steps
    regulariser: str = "l1"            # "l1" (default) or "flops"
    # model
    tau_init: float = 0.07
    tau_min: float = 1e-3
    tau_max: float = 0.5
    mask_special_tokens: bool = False
    vocab_mask: str = "none"           # issue 14: "words" / "content" mask non-word terms (jsdlib.jsd.words)
    vocab_size: int | None = None      # only used when no word embeddings (E_init) are given
    emb_dim: int | None = None
    # flags of the JSD paper
    detach_teacher: bool = False
    teacher_transpose_quirk: bool = False
    self_kd: bool = True               # False: the "no self-KD" ablation (L' removed)
    freeze_final: bool = False         # True: the "frozen final layer" ablation (W_t, W_v fixed)
    sampling: str = "images"           # "images": each image once per epoch with one random caption
    drop_duplicates: bool = True       # "captions" sampling: drop repeated images within a batch
    # checkpoint selection under a sparsity budget: only epochs whose validation mean active terms per caption
    # (per image) are <= these can become "best"; None = no budget (plain early stopping on val sparse R@1)
    max_terms_q: float | None = None
    max_terms_d: float | None = None
    # D2S baseline (the JSD paper); None = same as the JSD value
    d2s_tau: float = 1e-3
    d2s_lr: float | None = None
    d2s_eta_t: float | None = None
    d2s_eta_i: float | None = None
    pec: bool = False
    pec_decay_frac: float = 0.95
    pec_floor: float = 0.0             # issue 14: PEC's probability never falls below this (0: D2S's decay to 0)
    caption_words_weight: float = 0.0  # issue 14: weight of the caption-word loss (jsdlib.jsd.caption_words)
    caption_words_on: str = "image"    # its rows: "image" or "both" (captions too)
    caption_words_q: str = "idf"       # its word weights q: "idf" or "uniform" (jsdlib.jsd.caption_words)
    # execution (not part of the digest)
    device: str = "cpu"
    amp: bool = True                   # fp16 autocast, only on CUDA
    cpu_bf16: bool = False             # bf16 autocast for training steps on CPU (~3x faster matmuls with AVX512-BF16)
    threads: int | None = None         # None: leave torch's thread count as the caller set it
    eval_batch: int = 1024

    def __post_init__(self):
        self.betas = tuple(self.betas)
        checks = [
            (self.lr > 0, "lr must be > 0"),
            (int(self.batch_size) == self.batch_size and self.batch_size >= 2, "batch_size must be an integer >= 2"),
            (int(self.epochs) == self.epochs and self.epochs >= 1, "epochs must be an integer >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (0 < self.warmup_frac < 1, "warmup_frac must be in (0, 1)"),
            (0 < self.reg_warmup_frac <= 1, "reg_warmup_frac must be in (0, 1]"),
            (self.regulariser in ("l1", "flops"), "regulariser must be 'l1' or 'flops'"),
            (self.sampling in SAMPLINGS, f"sampling must be one of {SAMPLINGS}"),
            (0 < self.tau_min <= self.tau_init <= self.tau_max, "need 0 < tau_min <= tau_init <= tau_max"),
            (min(self.eta_t, self.eta_i) >= 0, "eta_t and eta_i must be >= 0"),
            (self.d2s_tau > 0, "d2s_tau must be > 0"),
            (0 < self.pec_decay_frac <= 1, "pec_decay_frac must be in (0, 1]"),
            (0 <= self.pec_floor <= 1, "pec_floor must be in [0, 1]"),
            (self.caption_words_weight >= 0, "caption_words_weight must be >= 0"),
            (self.caption_words_on in ("image", "both"), "caption_words_on must be 'image' or 'both'"),
            (self.caption_words_q in CAPTION_WORD_QS, f"caption_words_q must be one of {CAPTION_WORD_QS}"),
            (len(self.betas) == 2, "betas must be a pair"),
            (self.vocab_mask in VOCAB_MASKS, f"vocab_mask must be one of {VOCAB_MASKS}"),
        ]
        bad = [msg for ok, msg in checks if not ok]
        if bad:
            raise ValueError(f"JSDConfig {self.name!r}: " + "; ".join(bad))

    def replace(self, **changes) -> "JSDConfig":
        """A copy with some fields changed (validated again)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"JSDConfig has no field(s) {sorted(unknown)}")
        return dataclasses.replace(self, **changes)

    def identity(self) -> dict:
        """The fields as a dict, without those of :data:`DIGEST_NEUTRAL` at their neutral value."""
        d = dataclasses.asdict(self)
        for k, neutral in DIGEST_NEUTRAL.items():
            if d[k] == neutral:
                d.pop(k)
        return d

    def digest(self) -> str:
        """Hash of everything that changes the trained weights (execution fields excluded)."""
        d = self.identity()
        for k in ("device", "threads", "eval_batch", "name"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# How the authors' code runs (docs/fidelity.md): one epoch = every (caption, image) pair,
# shuffled, duplicate images kept in a batch (``data_module.py``), and the untransposed t->i teacher (``loss.py``).
# The paper presets default to it; the corrected teacher is the named method ``jsd_corrected_teacher``
# (:mod:`jsdlib.jsd.methods`), or ``get_preset(name, teacher_transpose_quirk=False)``.
AUTHORS_RUN = {"sampling": "captions", "drop_duplicates": False, "teacher_transpose_quirk": True}

# The paper's settings per backbone and set (JSD, arXiv 2508.16707), verbatim. Shared settings are the JSDConfig
# defaults (batch 256, 200 epochs, patience 20, seed 42).
PAPER_PRESETS = {
    "blip-coco": JSDConfig(name="blip-coco", lr=5e-5, w1=0.1, w2=0.1, lam1=0.9, lam2=0.3, eta_t=5e-4, eta_i=3e-5,
                           **AUTHORS_RUN),
    "blip-flickr": JSDConfig(name="blip-flickr", lr=1e-5, w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-4, eta_i=2e-5,
                             **AUTHORS_RUN),
    "albef-coco": JSDConfig(name="albef-coco", lr=5e-5, w1=0.2, w2=0.5, lam1=0.9, lam2=0.3, eta_t=1e-5, eta_i=3e-5,
                            **AUTHORS_RUN),
    "albef-flickr": JSDConfig(name="albef-flickr", lr=1e-5, w1=0.1, w2=0.2, lam1=0.3, lam2=0.3, eta_t=1e-4,
                              eta_i=2e-5, **AUTHORS_RUN),
}

# The CPU preset for the bundled emoji features (stand-in VLP: MiniLM text + small ViT, 2,635 train images),
# tuned on the validation split only; which values were tried and why: docs/decisions.md, "cpu-emoji".
CPU_PRESETS = {
    "cpu-emoji": JSDConfig(name="cpu-emoji", lr=3e-4, w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-2, eta_i=3e-3,
                           batch_size=128, epochs=40, patience=10, seed=42, cpu_bf16=True,
                           max_terms_q=64, max_terms_d=256, d2s_eta_t=2e-2, d2s_eta_i=6e-3),
}

PRESETS = {**PAPER_PRESETS, **CPU_PRESETS}


@dataclass(frozen=True)
class D2SRecipe:
    """D2S trained as its own code trains it (``lsr-multimodal`` ``train.py``; docs/fidelity.md), not with JSD's
    optimiser: the method ``d2s_own`` (:func:`jsdlib.jsd.train.train_d2s_own`).

    Two AdamW groups, both without weight decay: ``lr_pretrained`` for the head's LayerNorm and vocabulary
    layer ``E`` (the parts D2S copies from a DistilBERT MLM head) and ``lr_new`` for the new projection ``W_p``
    (and tau, which gets no gradient: the teacher ``softmax(S_d / tau)`` is built under no_grad). Batch 512,
    ``tau = 1e-3``, L1 weight 1e-3 on captions and images (quadratic warm-up over 20 % of the steps), no gradient
    clipping, 20 % linear warm-up then linear decay, and an epoch over every (caption, image) pair with
    duplicate images kept (D2S's ``train_pairs``). Epochs and patience come from the JSD config.
    """

    lr_pretrained: float = 5e-5
    lr_new: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 512
    tau: float = 1e-3
    eta_t: float = 1e-3
    eta_i: float = 1e-3
    grad_clip: float | None = None
    sampling: str = "captions"
    drop_duplicates: bool = False

    def __post_init__(self):
        if min(self.lr_pretrained, self.lr_new, self.tau) <= 0 or min(self.eta_t, self.eta_i) < 0:
            raise ValueError("D2SRecipe: learning rates and tau must be > 0, L1 weights >= 0")
        if self.sampling not in SAMPLINGS or int(self.batch_size) != self.batch_size or self.batch_size < 2:
            raise ValueError(f"D2SRecipe: sampling must be one of {SAMPLINGS} and batch_size an integer >= 2")

    def replace(self, **changes) -> "D2SRecipe":
        return dataclasses.replace(self, **changes)

    def config(self, cfg: JSDConfig) -> JSDConfig:
        """``cfg`` with this recipe's batch, epoch, weight decay, clipping, tau and L1 weights (lr: ``lr_new``)."""
        return cfg.replace(batch_size=self.batch_size, sampling=self.sampling, drop_duplicates=self.drop_duplicates,
                           weight_decay=self.weight_decay, grad_clip=self.grad_clip, d2s_tau=self.tau,
                           d2s_lr=self.lr_new, d2s_eta_t=self.eta_t, d2s_eta_i=self.eta_i)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(dataclasses.asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def get_preset(name: str, **overrides) -> JSDConfig:
    """A named preset (a fresh copy), optionally with some fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else dataclasses.replace(PRESETS[name])


__all__ = ["JSDConfig", "D2SRecipe", "SAMPLINGS", "AUTHORS_RUN", "PAPER_PRESETS", "CPU_PRESETS", "PRESETS",
           "get_preset"]
