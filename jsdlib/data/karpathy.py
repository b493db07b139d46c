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
them, which is all the retrieval metrics (``jsdlib.common.metrics``) need. ``image_ids`` are COCO ids for MSCOCO
(``cocoid``) and Karpathy's ``imgid`` otherwise. Per-image keys beyond the standard ones (the emoji set's
``emoji``, ``codepoints``, ``base``, ``unseen_concept``) land in ``image_meta``; per-sentence keys beyond the
standard ones (the emoji set's ``kind``) land in ``caption_meta``.

Every failure names the file it is about and, for missing data, where to get it.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from jsdlib.data.errors import (DataFormatError, DatasetNotFoundError, EmptyCaptionError, ImageNotFoundError,
                                UnknownSplitError)
from jsdlib.data.paths import emoji_paths
from jsdlib.data.split import SPLITS, ImageTextSplit

SPLIT_ALIASES = {"restval": "train"}  # a split name in the JSON -> the split it is loaded as

KARPATHY_SPLITS_URL = "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip"
FLICKR30K_URL = "https://shannon.cs.illinois.edu/DenotationGraph/"
COCO_URL = "https://cocodataset.org/#download"

# Keys of Karpathy's format; anything else on an image (sentence) goes to image_meta (caption_meta).
_IMAGE_KEYS = frozenset({"filename", "filepath", "split", "imgid", "cocoid", "sentids", "sentences"})
_SENTENCE_KEYS = frozenset({"raw", "tokens", "imgid", "sentid"})


def _where_to_get(dataset: str | None) -> str:
    if dataset == "emoji":
        return ("The emoji set is bundled with the repository (data/emoji/); if it is missing, "
                "run `jsdlib data build-emoji` to build it.")
    return ("Flickr30k/MSCOCO: get the Karpathy splits (dataset_flickr30k.json/dataset_coco.json from "
            f"Karpathy's caption_datasets, {KARPATHY_SPLITS_URL}) and the images from the official sites "
            f"(Flickr30k: {FLICKR30K_URL} -> flickr30k-images/; MSCOCO: {COCO_URL} -> train2014/ and "
            "val2014/). The bundled emoji set: run `jsdlib data build-emoji`.")



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


def _confined(filepath: str, filename: str, json_path: Path, where: str) -> Path:
    """``filepath / filename`` as a normalised relative path that stays inside the image folder.

    Absolute paths, drive letters and ``..`` components that climb out of the image folder are refused with a
    :class:`DataFormatError` naming the entry (a crafted JSON must not make jsdlib read files elsewhere).
    """
    joined = os.path.join(filepath, filename) if filepath else filename
    if not filename or os.path.isabs(joined) or os.path.isabs(filename) or Path(joined).drive or \
            joined.startswith(("/", "\\")):
        raise DataFormatError(f"{json_path}: {where} has an absolute image path {joined!r}; filepath/filename must "
                              "be relative to the image folder")
    norm = os.path.normpath(joined.replace("\\", "/"))
    if norm == ".." or norm.startswith("../") or norm == ".":
        raise DataFormatError(f"{json_path}: {where} has image path {joined!r}, which leaves the image folder; "
                              "filepath/filename must stay inside it")
    return Path(norm)


def _selected_entries(entries: list, split: str, json_path: Path) -> list[int]:
    """Indices of the image entries in ``split`` (``restval`` counts as ``train``), or UnknownSplitError."""
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
    return selected


def _caption(sent, j: int, json_path: Path, where: str, imgid: int, filename: str) -> tuple[int, str]:
    """(sentid, caption) of sentence ``j``: ``raw`` (else its ``tokens`` joined), stripped, never empty."""
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
    return sentid, raw


def _image_entry(entry, k: int, json_path: Path) -> tuple[str, int, int, str, list]:
    """(where, imgid, image id, filepath, sentences) of image entry ``k``, checked."""
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
    return where, imgid, image_id, filepath, sentences


def _check_image_files(image_paths: list[Path], image_dir: Path | None, json_path: Path, dataset: str,
                       split: str) -> None:
    """The image folder exists and every listed image is a file inside it (no symbolic link out of it)."""
    if image_dir is None or not image_dir.is_dir():
        raise DatasetNotFoundError(f"image folder not found: {image_dir} (images of {json_path.name}). "
                                   + _where_to_get(dataset))
    missing = [p for p in image_paths if not p.is_file()]
    root = image_dir.resolve()
    outside = [p for p in image_paths if p.is_file() and not p.resolve().is_relative_to(root)]
    if outside:
        raise DataFormatError(f"{json_path}: image file {outside[0]} resolves to {outside[0].resolve()}, outside "
                              f"the image folder {root} (a symbolic link?); {len(outside)} such file(s)")
    if missing:
        raise ImageNotFoundError(
            f"{len(missing)} of {len(image_paths)} image files of {dataset} {split} are missing, "
            f"first: {missing[0]} (image folder {image_dir}). "
            "Pass check_images=False to load captions only. " + _where_to_get(dataset))


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
    image_paths, image_ids, image_meta, i2c = [], [], [], []
    captions, caption_ids, c2i, caption_meta = [], [], [], []
    seen_files: dict[Path, str] = {}
    for k in _selected_entries(entries, split, json_path):
        entry = entries[k]
        where, imgid, image_id, filepath, sentences = _image_entry(entry, k, json_path)
        i = len(image_paths)
        rel = _confined(filepath, entry["filename"], json_path, where)
        if rel in seen_files:
            raise DataFormatError(f"{json_path}: {where} and {seen_files[rel]} point to the same image file {rel}; "
                                  "each image may be listed once (merge their sentences into one entry)")
        seen_files[rel] = where
        image_paths.append(rel if image_dir is None else image_dir / rel)
        image_ids.append(image_id)
        image_meta.append({key: v for key, v in entry.items() if key not in _IMAGE_KEYS})
        mine = []
        for j, sent in enumerate(sentences):
            sentid, raw = _caption(sent, j, json_path, where, imgid, entry["filename"])
            mine.append(len(captions))
            captions.append(raw)
            caption_ids.append(sentid)
            c2i.append(i)
            caption_meta.append({key: v for key, v in sent.items() if key not in _SENTENCE_KEYS})
        i2c.append(mine)
    if check_images:
        _check_image_files(image_paths, image_dir, json_path, dataset, split)
    return ImageTextSplit(
        dataset=dataset, split=split, image_paths=image_paths, image_ids=image_ids, captions=captions,
        caption_ids=caption_ids, caption_to_image=np.asarray(c2i, dtype=np.int64), image_to_captions=i2c,
        image_meta=image_meta, json_path=json_path, image_dir=image_dir, caption_meta=caption_meta)


# ---------------------------------------------------------------------------------- named data sets
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


__all__ = ["SPLIT_ALIASES", "load_karpathy", "load_emoji", "load_flickr30k", "load_coco"]
