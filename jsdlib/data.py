"""Karpathy-format image-text sets: the bundled emoji set, Flickr30k and MSCOCO.

All three share one on-disk format, the one Karpathy's ``caption_datasets`` made standard::

    {"dataset": "coco",
     "images": [{"filepath": "val2014",                  # COCO only: sub-folder of the image dir
                 "filename": "COCO_val2014_000000391895.jpg",
                 "split": "test",                        # train / restval / val / test
                 "imgid": 0, "cocoid": 391895,           # cocoid: COCO only
                 "sentids": [770337, ...],
                 "sentences": [{"raw": "A man with a red helmet ...", "tokens": [...],
                                "imgid": 0, "sentid": 770337}, ...]},
                ...]}

An image's path is ``image_dir / filepath / filename`` (``image_dir / filename`` without a filepath).
``restval`` (MSCOCO's extra training images) counts as ``train``. Captions are the ``raw`` strings with
surrounding whitespace stripped (COCO's raw captions often end in a space).

``load_karpathy`` reads one split into an :class:`ImageTextSplit`: images, captions and the two maps between
them, which is all the retrieval metrics (``jsdlib.metrics``) need. ``image_ids`` are COCO ids for MSCOCO
(``cocoid``) and Karpathy's ``imgid`` otherwise. Per-image keys beyond the standard ones (the emoji set's
``emoji``, ``codepoints``, ``base``, ``unseen_concept``) land in ``image_meta``; per-sentence keys beyond the
standard ones (the emoji set's ``kind``) land in ``caption_meta``.

Every failure names the file it is about and, for missing data, where to get it.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"restval": "train"}  # a split name in the JSON -> the split it is loaded as

KARPATHY_SPLITS_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
FLICKR30K_URL = "https://shannon.cs.illinois.edu/DenotationGraph/"
COCO_URL = "https://cocodataset.org/#download"

# Keys of Karpathy's format; anything else on an image (sentence) goes to image_meta (caption_meta).
_IMAGE_KEYS = frozenset({"filename", "filepath", "split", "imgid", "cocoid", "sentids", "sentences"})
_SENTENCE_KEYS = frozenset({"raw", "tokens", "imgid", "sentid"})


# --------------------------------------------------------------------------------------------- errors
class DatasetNotFoundError(FileNotFoundError):
    """A data set's JSON file or image folder is missing."""


class ImageNotFoundError(DatasetNotFoundError):
    """An image file listed in the JSON is missing."""


class DataFormatError(ValueError):
    """The JSON is not valid JSON or not in Karpathy's format."""


class UnknownSplitError(ValueError):
    """The requested split is not one of SPLITS, or the file has no image in it."""


class EmptyCaptionError(DataFormatError):
    """A caption is empty or only whitespace."""


class ImageDecodeError(OSError, ValueError):
    """An image file exists but cannot be decoded (an OSError like Pillow's, and a ValueError)."""


def _where_to_get(dataset: str | None) -> str:
    if dataset == "emoji":
        return ("The emoji set is bundled with the repository (data/emoji/); if it is missing, "
                "run `jsdlib data build-emoji` to build it.")
    return ("Flickr30k/MSCOCO: get the Karpathy splits (dataset_flickr30k.json/dataset_coco.json from "
            f"Karpathy's caption_datasets, {KARPATHY_SPLITS_URL}) and the images from the official sites "
            f"(Flickr30k: {FLICKR30K_URL} -> flickr30k-images/; MSCOCO: {COCO_URL} -> train2014/ and "
            "val2014/). The bundled emoji set: run `jsdlib data build-emoji`.")


# ---------------------------------------------------------------------------------------- the split
@dataclass(eq=False, repr=False)
class ImageTextSplit:
    """One split of an image-text set: images, their captions and the maps between them.

    ``caption_to_image[c]`` is the index (into the images) of caption ``c``'s image;
    ``image_to_captions[i]`` lists the indices (into the captions) of image ``i``'s captions.
    """

    dataset: str
    split: str
    image_paths: list[Path]
    image_ids: list[int]           # imgid, or cocoid for MSCOCO
    captions: list[str]
    caption_ids: list[int]         # sentid
    caption_to_image: np.ndarray   # int64 (n_captions,)
    image_to_captions: list[list[int]]
    image_meta: list[dict]         # extra per-image keys, {} if none
    json_path: Path
    image_dir: Path | None
    caption_meta: list[dict] = field(default_factory=list)  # extra per-sentence keys, {} if none

    def __post_init__(self):
        self.caption_to_image = np.asarray(self.caption_to_image, dtype=np.int64)
        if not self.caption_meta:
            self.caption_meta = [{} for _ in self.captions]
        n, m = len(self.image_paths), len(self.captions)
        lengths = {"image_ids": len(self.image_ids), "image_to_captions": len(self.image_to_captions),
                   "image_meta": len(self.image_meta)}
        cap_lengths = {"caption_ids": len(self.caption_ids), "caption_to_image": len(self.caption_to_image),
                       "caption_meta": len(self.caption_meta)}
        bad = [f"{k}={v}" for k, v in lengths.items() if v != n]
        bad += [f"{k}={v}" for k, v in cap_lengths.items() if v != m]
        if bad:
            raise ValueError(f"inconsistent ImageTextSplit: {n} images and {m} captions but " + ", ".join(bad))

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def n_images(self) -> int:
        return len(self.image_paths)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    def __repr__(self) -> str:
        return (f"ImageTextSplit(dataset={self.dataset!r}, split={self.split!r}, "
                f"n_images={self.n_images}, n_captions={self.n_captions})")

    def captions_of(self, i: int) -> list[str]:
        """The captions of image ``i``."""
        return [self.captions[c] for c in self.image_to_captions[i]]

    def load_image(self, i: int):
        """Image ``i`` as an RGB ``PIL.Image`` (transparent pixels composited on white)."""
        from PIL import Image

        path = Path(self.image_paths[i])
        if not path.is_file():
            raise ImageNotFoundError(f"image file not found: {path} (image {i} of {self.dataset} "
                                     f"{self.split}, listed in {self.json_path})")
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    canvas.alpha_composite(rgba)
                    return canvas.convert("RGB")
                return im.convert("RGB")
        except (OSError, SyntaxError, ValueError) as e:  # UnidentifiedImageError is an OSError
            raise ImageDecodeError(f"cannot decode image file {path}: {e}") from e

    def subset(self, image_indices) -> "ImageTextSplit":
        """The split restricted to some images (indices or a boolean mask), keeping their captions.

        Images come in the order given; captions follow their images; both maps are renumbered.
        """
        idx = _as_index_array(image_indices, self.n_images)
        paths, ids, meta, i2c = [], [], [], []
        caps, cap_ids, c2i, cap_meta = [], [], [], []
        for new_i, old_i in enumerate(idx.tolist()):
            paths.append(self.image_paths[old_i])
            ids.append(self.image_ids[old_i])
            meta.append(self.image_meta[old_i])
            mine = []
            for c in self.image_to_captions[old_i]:
                mine.append(len(caps))
                caps.append(self.captions[c])
                cap_ids.append(self.caption_ids[c])
                cap_meta.append(self.caption_meta[c])
                c2i.append(new_i)
            i2c.append(mine)
        return ImageTextSplit(
            dataset=self.dataset, split=self.split, image_paths=paths, image_ids=ids, captions=caps,
            caption_ids=cap_ids, caption_to_image=np.asarray(c2i, dtype=np.int64), image_to_captions=i2c,
            image_meta=meta, json_path=self.json_path, image_dir=self.image_dir, caption_meta=cap_meta)


def _as_index_array(image_indices, n: int) -> np.ndarray:
    if hasattr(image_indices, "detach"):  # torch tensor
        image_indices = image_indices.detach().cpu().numpy()
    arr = np.asarray(image_indices)
    if arr.dtype == bool:
        if arr.shape != (n,):
            raise ValueError(f"boolean mask has shape {arr.shape}, expected ({n},)")
        return np.flatnonzero(arr)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"image_indices must be a 1-D sequence of ints or a boolean mask, got {arr.dtype} "
                        f"with shape {arr.shape}")
    if arr.min() < 0 or arr.max() >= n:
        raise IndexError(f"image index out of range [0, {n}): min {arr.min()}, max {arr.max()}")
    if len(np.unique(arr)) != len(arr):
        raise ValueError("image_indices contains duplicates")
    return arr.astype(np.int64)


# ---------------------------------------------------------------------------------------- loading
def _infer_name(json_path: Path, data: dict | None = None) -> str:
    if isinstance(data, dict) and isinstance(data.get("dataset"), str):
        return data["dataset"]
    m = re.fullmatch(r"dataset_(\w+)\.json", json_path.name)
    return m.group(1) if m else json_path.stem


def _read_json(json_path: Path, dataset: str | None) -> dict:
    if not json_path.is_file():
        what = "is a directory, not a file" if json_path.is_dir() else "not found"
        raise DatasetNotFoundError(f"Karpathy-format JSON {what}: {json_path}. "
                                   + _where_to_get(dataset or _infer_name(json_path)))
    try:
        with open(json_path, encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataFormatError(f"malformed JSON in {json_path}: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DataFormatError(f"{json_path} is not a Karpathy-format file: expected a JSON object "
                              'with an "images" list at the top level')
    return data


def _require(entry, key, types, json_path: Path, where: str):
    if not isinstance(entry, dict) or key not in entry:
        raise DataFormatError(f"{json_path}: {where} has no {key!r} field")
    value = entry[key]
    if not isinstance(value, types) or isinstance(value, bool):
        raise DataFormatError(f"{json_path}: {where} has {key}={value!r} of type {type(value).__name__}")
    return value


def load_karpathy(json_path, image_dir, split: str, dataset_name: str | None = None,
                  check_images: bool = True) -> ImageTextSplit:
    """Load one split (``"train"`` includes ``restval``) of a Karpathy-format JSON.

    ``image_dir`` is the folder the ``filepath``/``filename`` entries are relative to (Flickr30k:
    ``flickr30k-images/``; MSCOCO: the folder holding ``train2014/`` and ``val2014/``). With
    ``check_images=False`` neither the folder nor the files are checked (for cached features), and
    ``image_dir`` may be None.
    """
    json_path = Path(json_path)
    image_dir = None if image_dir is None else Path(image_dir)
    data = _read_json(json_path, dataset_name)
    dataset = dataset_name or _infer_name(json_path, data)
    entries = data["images"]

    file_splits = []
    for k, entry in enumerate(entries):
        s = _require(entry, "split", str, json_path, f"image entry {k}")
        file_splits.append(SPLIT_ALIASES.get(s, s))
    present = sorted(set(file_splits), key=lambda s: (SPLITS.index(s) if s in SPLITS else len(SPLITS), s))
    raw_present = sorted({e["split"] for e in entries})
    if split not in SPLITS:
        hint = " (restval images are loaded with split='train')" if split == "restval" else ""
        raise UnknownSplitError(f"unknown split {split!r}{hint}; valid splits are {list(SPLITS)}; "
                                f"{json_path.name} has splits {raw_present}")
    selected = [k for k, s in enumerate(file_splits) if s == split]
    if not selected:
        raise UnknownSplitError(f"split {split!r} has no images in {json_path}; valid splits are "
                                f"{list(SPLITS)}; the file has splits {raw_present} "
                                f"(loadable: {[s for s in present if s in SPLITS]})")

    image_paths, image_ids, image_meta, i2c = [], [], [], []
    captions, caption_ids, c2i, caption_meta = [], [], [], []
    for k in selected:
        entry = entries[k]
        filename = _require(entry, "filename", str, json_path, f"image entry {k}")
        imgid = _require(entry, "imgid", int, json_path, f"image entry {k} ({filename})")
        where = f"image imgid={imgid} ({filename})"
        image_id = _require(entry, "cocoid", int, json_path, where) if "cocoid" in entry else imgid
        filepath = entry.get("filepath") or ""
        if not isinstance(filepath, str):
            raise DataFormatError(f"{json_path}: {where} has filepath={filepath!r}, expected a string")
        sentences = _require(entry, "sentences", list, json_path, where)
        if not sentences:
            raise DataFormatError(f"{json_path}: {where} has no sentences")
        i = len(image_paths)
        rel = Path(filepath) / filename
        image_paths.append(rel if image_dir is None else image_dir / rel)
        image_ids.append(image_id)
        image_meta.append({key: v for key, v in entry.items() if key not in _IMAGE_KEYS})
        mine = []
        for j, sent in enumerate(sentences):
            sentid = _require(sent, "sentid", int, json_path, f"sentence {j} of {where}")
            raw = sent.get("raw")
            if raw is None and isinstance(sent.get("tokens"), list):
                raw = " ".join(map(str, sent["tokens"]))
            if not isinstance(raw, str):
                raise DataFormatError(f"{json_path}: sentence sentid={sentid} of {where} has no 'raw' text")
            raw = raw.strip()
            if not raw:
                raise EmptyCaptionError(f"{json_path}: empty caption for imgid={imgid} ({filename}), "
                                        f"sentid={sentid}")
            mine.append(len(captions))
            captions.append(raw)
            caption_ids.append(sentid)
            c2i.append(i)
            caption_meta.append({key: v for key, v in sent.items() if key not in _SENTENCE_KEYS})
        i2c.append(mine)

    if check_images:
        if image_dir is None or not image_dir.is_dir():
            raise DatasetNotFoundError(f"image folder not found: {image_dir} (images of {json_path.name}). "
                                       + _where_to_get(dataset))
        missing = [p for p in image_paths if not p.is_file()]
        if missing:
            raise ImageNotFoundError(
                f"{len(missing)} of {len(image_paths)} image files of {dataset} {split} are missing, "
                f"first: {missing[0]} (image folder {image_dir}). "
                "Pass check_images=False to load captions only. " + _where_to_get(dataset))

    return ImageTextSplit(
        dataset=dataset, split=split, image_paths=image_paths, image_ids=image_ids, captions=captions,
        caption_ids=caption_ids, caption_to_image=np.asarray(c2i, dtype=np.int64), image_to_captions=i2c,
        image_meta=image_meta, json_path=json_path, image_dir=image_dir, caption_meta=caption_meta)


# ---------------------------------------------------------------------------------- named data sets
def data_root() -> Path:
    """The folder holding the bundled data sets: ``$JSDLIB_DATA`` if set, else the repository's ``data/``."""
    env = os.environ.get("JSDLIB_DATA")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "data"


def emoji_paths() -> tuple[Path, Path]:
    """(JSON, image folder) of the bundled emoji set."""
    root = data_root() / "emoji"
    return root / "dataset_emoji.json", root / "images"


def load_emoji(split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """One split of the bundled emoji set (Noto Color Emoji images, CLDR captions)."""
    json_path, image_dir = emoji_paths()
    return load_karpathy(json_path, image_dir, split, dataset_name="emoji", check_images=check_images)


def load_flickr30k(root, split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """Flickr30k from ``root/dataset_flickr30k.json`` and ``root/flickr30k-images/``."""
    root = Path(root)
    return load_karpathy(root / "dataset_flickr30k.json", root / "flickr30k-images", split,
                         dataset_name="flickr30k", check_images=check_images)


def load_coco(root, split: str = "test", check_images: bool = True) -> ImageTextSplit:
    """MSCOCO from ``root/dataset_coco.json`` and ``root/{train2014,val2014}/``."""
    root = Path(root)
    return load_karpathy(root / "dataset_coco.json", root, split, dataset_name="coco",
                         check_images=check_images)


__all__ = [
    "SPLITS", "ImageTextSplit", "load_karpathy", "load_emoji", "emoji_paths", "data_root",
    "load_flickr30k", "load_coco", "DatasetNotFoundError", "ImageNotFoundError", "DataFormatError",
    "UnknownSplitError", "EmptyCaptionError", "ImageDecodeError",
]
