"""Pre-projection features of a data split, and their on-disk cache.

Every caption and image is encoded once into ``h``, the pooled vector before its tower's final projection
(:func:`jsdlib.vlp.projection.pre_projection`); :class:`Features` keeps them with the projection ``W, b`` that
initialises JSD's dense branch. :func:`cached_features` stores them under a key that covers everything they
depend on (model, exact weights, dataset bytes, image files, split, preprocessing, feature format).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from jsdlib.common.integrity import IntegrityError, discard_derived, file_sha256, load_safetensors, save_safetensors
from jsdlib.common.paths import cache_dir
from jsdlib.vlp.openclip import VLP
from jsdlib.vlp.projection import pre_projection, projection_params, tokenize

FEATURE_FORMAT = 1  # bump when the way features are computed changes: old cache entries then miss


@dataclass
class Features:
    """Pre-projection features of one split plus the projection that JSD starts from.

    ``text``: (n_captions, d_t); ``image``: (n_images, d_v); ``proj``: ``W_t (D, d_t), b_t, W_v (D, d_v), b_v``.
    """

    text: torch.Tensor
    image: torch.Tensor
    proj: dict[str, torch.Tensor]
    caption_to_image: np.ndarray
    image_to_captions: list[list[int]]
    key: str = ""
    meta: dict = field(default_factory=dict)

    def dense(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The VLP's own dense embeddings: ``normalize(W h + b)`` for captions and images."""
        t = F.normalize(self.text @ self.proj["W_t"].T + self.proj["b_t"], dim=-1)
        v = F.normalize(self.image @ self.proj["W_v"].T + self.proj["b_v"], dim=-1)
        return t, v

    def dense_scores(self) -> torch.Tensor:
        """Cosine similarities, captions x images (the 'dense original' method)."""
        t, v = self.dense()
        return t @ v.T


def split_fingerprint(split) -> dict:
    """What a split's features depend on: the JSON bytes, the split name, and each image file's size/mtime."""
    stats = []
    for p in split.image_paths:
        st = Path(p).stat()
        stats.append(f"{Path(p).name}:{st.st_size}:{st.st_mtime_ns}")
    return {
        "dataset": split.dataset,
        "json": file_sha256(split.json_path),
        "split": split.split,
        "images": hashlib.sha256("\n".join(stats).encode()).hexdigest(),
        "n_images": len(split.image_paths),
        "n_captions": len(split.captions),
    }


def feature_key(vlp: VLP, split) -> str:
    """Cache key over (model, weights, dataset, split, preprocessing, feature format)."""
    payload = {
        "model": vlp.name,
        "weights": vlp.fingerprint,
        "data": split_fingerprint(split),
        "preprocess": repr(vlp.preprocess),
        "tokenizer": type(vlp.tokenizer).__name__ + str(getattr(vlp.tokenizer, "context_length", "")),
        "format": FEATURE_FORMAT,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


@torch.no_grad()
def encode_split(vlp: VLP, split, batch_size: int = 128, progress: bool = True) -> Features:
    """Encode every caption and image of ``split`` into pre-projection features (no cache)."""
    model = vlp.model.eval()
    proj = projection_params(model)
    texts, images = [], []
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    with pre_projection(model):  # images first: an undecodable image fails before the captions are encoded
        steps = range(0, len(split.image_paths), batch_size)
        for s in tqdm(steps, desc="images", disable=not progress, leave=False):
            batch = torch.stack([vlp.preprocess(split.load_image(i))
                                 for i in range(s, min(s + batch_size, len(split.image_paths)))])
            images.append(model.encode_image(batch).float())
        steps = range(0, len(split.captions), batch_size)
        for s in tqdm(steps, desc="captions", disable=not progress, leave=False):
            texts.append(model.encode_text(tokenize(model, vlp.tokenizer, split.captions[s:s + batch_size])).float())
    return Features(torch.cat(texts), torch.cat(images), proj, np.asarray(split.caption_to_image),
                    [list(c) for c in split.image_to_captions],
                    meta={"model": vlp.name, "weights": vlp.weights, "dataset": split.dataset, "split": split.split})


def save_features(features: Features, path: Path) -> None:
    """Write features atomically as safetensors (maps and metadata in the header, with a content digest)."""
    tensors = {"text": features.text.contiguous(), "image": features.image.contiguous(),
               "caption_to_image": torch.as_tensor(features.caption_to_image, dtype=torch.int64)}
    tensors.update({k: v.contiguous() for k, v in features.proj.items()})
    meta = {"meta": json.dumps(features.meta), "image_to_captions": json.dumps(features.image_to_captions),
            "key": features.key}
    save_safetensors(tensors, path, meta)


def load_features(path: Path) -> Features:
    """Read features written by :func:`save_features`, checking their content digest and finite values.

    Raises :class:`jsdlib.common.integrity.IntegrityError` naming ``path`` when the file is unreadable or corrupted.
    """
    t, meta = load_safetensors(path, "cached features")
    try:
        proj = {k: t[k] for k in ("W_t", "b_t", "W_v", "b_v")}
        return Features(t["text"], t["image"], proj, t["caption_to_image"].numpy(),
                        json.loads(meta["image_to_captions"]), meta["key"], json.loads(meta["meta"]))
    except (KeyError, ValueError) as e:
        raise IntegrityError(f"cached features {path} lack {e} (not a jsdlib feature file)") from e


def cached_features(vlp: VLP, split, batch_size: int = 128, progress: bool = True,
                    root: Path | None = None) -> Features:
    """Features of ``split`` under ``vlp``: from the cache when the key matches, else encoded and stored.

    The key covers the model, its exact weights, the dataset JSON bytes, the image files, the split, the
    preprocessing and the feature format, so a cached entry is never stale.
    """
    key = feature_key(vlp, split)
    path = (root or cache_dir() / "features") / f"{split.dataset}-{split.split}-{key}.safetensors"
    if path.exists():
        try:
            feats = load_features(path)
        except IntegrityError as e:  # a derived file: say so, drop it, encode again
            discard_derived(path, e)
            feats = None
        if feats is not None and feats.key == key:
            feats.meta["cache"] = "hit"
            return feats
    feats = encode_split(vlp, split, batch_size=batch_size, progress=progress)
    feats.key = key
    save_features(feats, path)
    feats.meta["cache"] = "miss"
    feats.meta["path"] = str(path)
    return feats


__all__ = ["Features", "FEATURE_FORMAT", "split_fingerprint", "feature_key", "encode_split", "save_features",
           "load_features", "cached_features"]
