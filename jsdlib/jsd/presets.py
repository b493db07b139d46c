"""Named JSD configurations (spec jsd.md §4) and the authors' released feature format (spec §8).

Paper presets: the four rows of the paper's hyperparameter table, verbatim, with the shared optimisation
settings (AdamW 0.9/0.999/1e-8, weight decay 0.05, 20 % linear warm-up then linear decay, clip 1.0,
batch 256, up to 200 epochs, patience 20 on validation sparse R@1, seed 42, fp16 on GPU).

``cpu-emoji``: the small preset for the bundled emoji features on a laptop CPU.

The released features (github.com/holi-lab/mm-sparse-retrieval) are two parquet files with columns
``id`` and ``emb`` -- ``text_embs_before_proj_{blip,albef}.parquet`` (id = Karpathy ``sentid``) and
``img_embs_before_proj_{blip,albef}.parquet`` (id = Karpathy ``imgid``) -- plus the Karpathy-style JSON.
:func:`load_released_features` turns them into a :class:`jsdlib.vlp.models.Features` split.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

SAMPLINGS = ("images", "captions")


@dataclass
class JSDConfig:
    """Every knob of JSD training (and of the D2S baseline trained next to it).

    Loss weights follow spec §3: ``S_x = w1 S_d + w2 S_s``; ``L = (lam1 L_dense + lam2 L_sparse + L_inter)/2``;
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
    # optimisation (spec §4)
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
    vocab_size: int | None = None      # only used when no word embeddings (E_init) are given
    emb_dim: int | None = None
    # flags of spec §3 / §5
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
    # D2S baseline (spec §5); None = same as the JSD value
    d2s_tau: float = 1e-3
    d2s_lr: float | None = None
    d2s_eta_t: float | None = None
    d2s_eta_i: float | None = None
    pec: bool = False
    pec_decay_frac: float = 0.95
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
            (len(self.betas) == 2, "betas must be a pair"),
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

    def digest(self) -> str:
        """Hash of everything that changes the trained weights (execution fields excluded)."""
        d = dataclasses.asdict(self)
        for k in ("device", "threads", "eval_batch", "name"):
            d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:16]


# Spec §4 table, verbatim. Shared settings are the JSDConfig defaults (batch 256, 200 epochs, patience 20, seed 42).
PAPER_PRESETS = {
    "blip-coco": JSDConfig(name="blip-coco", lr=5e-5, w1=0.1, w2=0.1, lam1=0.9, lam2=0.3, eta_t=5e-4, eta_i=3e-5),
    "blip-flickr": JSDConfig(name="blip-flickr", lr=1e-5, w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-4, eta_i=2e-5),
    "albef-coco": JSDConfig(name="albef-coco", lr=5e-5, w1=0.2, w2=0.5, lam1=0.9, lam2=0.3, eta_t=1e-5, eta_i=3e-5),
    "albef-flickr": JSDConfig(name="albef-flickr", lr=1e-5, w1=0.1, w2=0.2, lam1=0.3, lam2=0.3, eta_t=1e-4, eta_i=2e-5),
}

# The CPU preset for the bundled emoji features (stand-in VLP: MiniLM text + small ViT, 2,635 train images).
# Tuned on the validation split only (notes in README "JSD on the CPU"):
# - lr: 1e-4 / 3e-4 / 1e-3 with the L1 weights below and the sparsity budget; 3e-4 gave the best validation
#   sparse R@1 (52.1 vs 51.0 / 50.1), 1e-4 never reached the budget in 40 epochs.
# - L1 weights: the paper's BLIP-Flickr values leave ~1,100 active terms here; eta_t = 1e-2, eta_i = 3e-3 (and
#   x0.3 / x3 / x10 in the sweep) bring captions to <= 64 and images to <= 256 active terms.
# - max_terms_q / max_terms_d: only epochs whose validation vectors meet the sparsity targets can be
#   selected, so the reported sparse retriever is one an inverted index can serve.
# - D2S at matched cost: `jsdlib jsd sweep` (seed 0) put JSD (L1 x1) at 5.78 validation FLOPs; D2S with the same
#   L1 weights was at 7.67 (+33 %), x1.5 at 6.62 (+15 %), x2 at 5.10 (-12 %): D2S uses x2 (d2s_eta_*).
# - loss weights (w1, w2, lam1, lam2) are the blip-flickr row; batch 128 and 40 epochs fit a laptop.
CPU_PRESETS = {
    "cpu-emoji": JSDConfig(name="cpu-emoji", lr=3e-4, w1=0.1, w2=0.2, lam1=0.7, lam2=0.7, eta_t=1e-2, eta_i=3e-3,
                           batch_size=128, epochs=40, patience=10, seed=42, cpu_bf16=True,
                           max_terms_q=64, max_terms_d=256, d2s_eta_t=2e-2, d2s_eta_i=6e-3),
}

PRESETS = {**PAPER_PRESETS, **CPU_PRESETS}


def get_preset(name: str, **overrides) -> JSDConfig:
    """A named preset (a fresh copy), optionally with some fields overridden."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; known presets: {sorted(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else dataclasses.replace(PRESETS[name])


# ----------------------------------------------------------------------------------------------
# The authors' released features
# ----------------------------------------------------------------------------------------------
def _read_parquet_embs(path: Path) -> tuple[list[str], np.ndarray]:
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"released feature file not found: {path} (expected parquet with columns id, emb)")
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # truncated or not parquet (pyarrow raises its own types)
        raise ValueError(f"released feature file {path} is unreadable ({type(e).__name__}: {e})") from e
    missing = {"id", "emb"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}; the released format has 'id' and 'emb'")
    ids = [str(i) for i in df["id"].tolist()]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids")
    embs = np.stack([np.asarray(e, dtype=np.float32) for e in df["emb"].tolist()])
    if embs.ndim == 2 and not np.isfinite(embs).all():
        raise ValueError(f"{path}: 'emb' holds NaN or infinite values (corrupted file?)")
    if embs.ndim != 2:
        raise ValueError(f"{path}: 'emb' must hold 1-D vectors of one length, got array of shape {embs.shape}")
    return ids, embs


def load_projection(path: str | Path) -> dict[str, torch.Tensor]:
    """``W_t, b_t, W_v, b_v`` from a safetensors or ``torch.save`` file (e.g. exported from BLIP/ALBEF)."""
    from jsdlib.common.integrity import IntegrityError, check_finite, load_safetensors

    path = Path(path)
    if path.suffix == ".safetensors":
        proj = load_safetensors(path, "projection file")[0]
    else:
        try:
            proj = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as e:  # a truncated or foreign file: name it
            raise IntegrityError(f"projection file {path} is unreadable ({type(e).__name__}: {e})") from e
        if not isinstance(proj, dict):
            raise IntegrityError(f"projection file {path} holds a {type(proj).__name__}, not a dict of tensors")
        check_finite({k: v for k, v in proj.items() if torch.is_tensor(v)}, path, "projection file")
    missing = {"W_t", "b_t", "W_v", "b_v"} - set(proj)
    if missing:
        raise KeyError(f"{path}: projection file lacks {sorted(missing)} (needs W_t, b_t, W_v, b_v)")
    return {k: proj[k].float() for k in ("W_t", "b_t", "W_v", "b_v")}


def random_projection(text_dim: int, image_dim: int, dense_dim: int = 256, seed: int = 0) -> dict[str, torch.Tensor]:
    """A freshly initialised ``nn.Linear`` pair (PyTorch's default init), seeded: NOT the VLP's projection."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, d_in in (("t", text_dim), ("v", image_dim)):
        bound = 1.0 / np.sqrt(d_in)
        out[f"W_{key}"] = (torch.rand(dense_dim, d_in, generator=gen) * 2 - 1) * bound
        out[f"b_{key}"] = (torch.rand(dense_dim, generator=gen) * 2 - 1) * bound
    return out


def load_released_features(text_parquet, image_parquet, karpathy_json, split: str,
                           projection=None, dense_dim: int = 256, seed: int = 0):
    """One split of the authors' released pre-projection features as :class:`jsdlib.vlp.models.Features`.

    Rows are matched to the Karpathy JSON by id: text ``id`` = ``sentid``, image ``id`` = ``imgid`` (as strings,
    as the authors' data module does); ``restval`` counts as train.

    ``projection``: the VLP's final projections (a dict or a safetensors/pt file with ``W_t, b_t, W_v, b_v``).
    NOTE: the released parquet files hold only the 768-d features, not BLIP's/ALBEF's projection weights. Without
    ``projection`` the dense branch starts from a *random* ``Linear(768 -> dense_dim)`` (seeded), so "dense
    original" is meaningless and JSD's dense branch is trained from scratch; export ``vision_proj`` /
    ``text_proj`` from the LAVIS checkpoint to reproduce the paper.
    """
    from jsdlib.data.datasets import load_karpathy
    from jsdlib.vlp.models import Features

    sp = load_karpathy(karpathy_json, None, split, check_images=False)
    t_ids, t_embs = _read_parquet_embs(text_parquet)
    i_ids, i_embs = _read_parquet_embs(image_parquet)
    t_row = {k: r for r, k in enumerate(t_ids)}
    i_row = {k: r for r, k in enumerate(i_ids)}
    want_t = [str(s) for s in sp.caption_ids]
    want_i = [str(i) for i in _karpathy_imgids(Path(karpathy_json), split)]
    lost_t = [k for k in want_t if k not in t_row]
    lost_i = [k for k in want_i if k not in i_row]
    if lost_t or lost_i:
        raise KeyError(f"released features lack {len(lost_t)} caption id(s) (first {lost_t[:3]}) and {len(lost_i)} "
                       f"image id(s) (first {lost_i[:3]}) of the {split} split of {karpathy_json}")
    text = torch.from_numpy(t_embs[[t_row[k] for k in want_t]])
    image = torch.from_numpy(i_embs[[i_row[k] for k in want_i]])
    if projection is None:
        proj, proj_src = random_projection(text.shape[1], image.shape[1], dense_dim, seed), f"random(seed={seed})"
    else:
        proj = load_projection(projection) if isinstance(projection, (str, Path)) else dict(projection)
        proj_src = str(projection) if isinstance(projection, (str, Path)) else "given"
        if proj["W_t"].shape[1] != text.shape[1] or proj["W_v"].shape[1] != image.shape[1]:
            raise ValueError(f"projection W_t {tuple(proj['W_t'].shape)} / W_v {tuple(proj['W_v'].shape)} do not take "
                             f"text {text.shape[1]}-d / image {image.shape[1]}-d features")
    key = hashlib.sha256("|".join(str(Path(p).resolve()) for p in (text_parquet, image_parquet, karpathy_json))
                         .encode() + split.encode() + proj_src.encode()).hexdigest()[:24]
    return Features(text, image, proj, np.asarray(sp.caption_to_image), [list(c) for c in sp.image_to_captions],
                    key=key, meta={"dataset": sp.dataset, "split": split, "source": "released-parquet",
                                   "projection": proj_src, "captions": list(sp.captions)})


def _karpathy_imgids(json_path: Path, split: str) -> list[int]:
    """Karpathy ``imgid`` of each image of ``split`` in file order (load_karpathy keeps cocoid for COCO)."""
    from jsdlib.data.datasets import SPLIT_ALIASES

    data = json.loads(Path(json_path).read_text())
    return [e["imgid"] for e in data["images"] if SPLIT_ALIASES.get(e["split"], e["split"]) == split]


__all__ = ["JSDConfig", "PAPER_PRESETS", "CPU_PRESETS", "PRESETS", "get_preset", "load_released_features",
           "load_projection", "random_projection"]
