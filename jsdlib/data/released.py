"""The authors' released pre-projection features (arXiv 2508.16707), loaded as :class:`jsdlib.vlp.features.Features`.

The released features (github.com/holi-lab/mm-sparse-retrieval) are two parquet files with columns ``id`` and
``emb`` -- ``text_embs_before_proj_{blip,albef}.parquet`` (id = Karpathy ``sentid``) and
``img_embs_before_proj_{blip,albef}.parquet`` (id = Karpathy ``imgid``) -- plus the Karpathy-style JSON.
:func:`load_released_features` turns them into one split; the VLP's final projections come from a file
(:func:`load_projection`) or, explicitly and only for smoke runs, from a seeded random init
(:func:`random_projection`).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from jsdlib.common.integrity import IntegrityError, check_finite, load_safetensors
from jsdlib.common.seeding import generator
from jsdlib.data.karpathy import SPLIT_ALIASES, load_karpathy
from jsdlib.vlp.features import Features


def _read_parquet_embs(path: Path) -> tuple[list[str], np.ndarray]:
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
    gen = generator(seed)
    out = {}
    for key, d_in in (("t", text_dim), ("v", image_dim)):
        bound = 1.0 / np.sqrt(d_in)
        out[f"W_{key}"] = (torch.rand(dense_dim, d_in, generator=gen) * 2 - 1) * bound
        out[f"b_{key}"] = (torch.rand(dense_dim, generator=gen) * 2 - 1) * bound
    return out


def load_released_features(text_parquet, image_parquet, karpathy_json, split: str,
                           projection=None, dense_dim: int = 256, seed: int = 0):
    """One split of the authors' released pre-projection features as :class:`jsdlib.vlp.features.Features`.

    Rows are matched to the Karpathy JSON by id: text ``id`` = ``sentid``, image ``id`` = ``imgid`` (as strings,
    as the authors' data module does); ``restval`` counts as train.

    ``projection``: the VLP's final projections (a dict or a safetensors/pt file with ``W_t, b_t, W_v, b_v``).
    NOTE: the released parquet files hold only the 768-d features, not BLIP's/ALBEF's projection weights. Without
    ``projection`` the dense branch starts from a *random* ``Linear(768 -> dense_dim)`` (seeded), so "dense
    original" is meaningless and JSD's dense branch is trained from scratch; export ``vision_proj`` /
    ``text_proj`` from the LAVIS checkpoint to reproduce the paper.
    """
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
    data = json.loads(Path(json_path).read_text())
    return [e["imgid"] for e in data["images"] if SPLIT_ALIASES.get(e["split"], e["split"]) == split]


__all__ = ["load_released_features", "load_projection", "random_projection"]
